"""Standard LDPC codes (DVB-S2/S2X tables, 5G NR base graphs) built from package data."""

from __future__ import annotations

import numpy as np
import pytest

from reconcile import standard_codes as sc


def _ira_encode(code, info: np.ndarray) -> np.ndarray:
    """Encode with the DVB-S2 accumulator: p_r = p_(r-1) xor (information part of check r)."""
    word = np.concatenate([info, np.zeros(code.m, np.uint8)])
    partial = code.syndrome(word)  # information-bit parity of every check
    return np.concatenate([info, np.bitwise_xor.accumulate(partial)])


# (name, N, K, {variable degree: count} for the information bits) from ETSI EN 302 307-1
# Table 7a/7b (normal and short frames).
DVB_DEGREES = [
    ("dvbs2_normal_r1_4", 64800, 16200, {12: 5400, 3: 10800}),
    ("dvbs2_normal_r1_3", 64800, 21600, {12: 7200, 3: 14400}),
    ("dvbs2_normal_r2_5", 64800, 25920, {12: 8640, 3: 17280}),
    ("dvbs2_normal_r1_2", 64800, 32400, {8: 12960, 3: 19440}),
    ("dvbs2_short_r1_3", 16200, 5400, {12: 1800, 3: 3600}),
    ("dvbs2_short_r1_4nominal_k3240", 16200, 3240, {12: 1440, 3: 1800}),
]


@pytest.mark.parametrize("name,n,k,degrees", DVB_DEGREES)
def test_dvbs2_dimensions_and_degree_distribution(name, n, k, degrees):
    code = sc.dvbs2_code(name)
    assert (code.n, code.m, code.k) == (n, n - k, k)
    vdeg = code.var_degrees()
    info_hist = dict(zip(*np.unique(vdeg[:k], return_counts=True), strict=True))
    assert {int(d): int(c) for d, c in info_hist.items()} == degrees
    assert np.all(vdeg[k:-1] == 2) and vdeg[-1] == 1  # accumulator
    assert code.edges == sum(d * c for d, c in degrees.items()) + 2 * (n - k) - 1


@pytest.mark.parametrize("name", sc.dvbs2_names())
def test_every_dvb_table_builds_and_accumulator_encoding_gives_zero_syndrome(name):
    code = sc.dvbs2_code(name)
    k = code.n - code.m
    rng = np.random.default_rng(1)
    word = _ira_encode(code, rng.integers(0, 2, k, dtype=np.uint8))
    assert not code.syndrome(word).any()
    assert code.design_rate == pytest.approx(k / code.n)
    # the parity part is the dual diagonal: check r holds parity bits r and r - 1 only
    h_rows = np.repeat(np.arange(code.m), code.check_degrees())
    parity = code.var_idx >= k
    assert np.array_equal(
        np.sort(code.var_idx[parity] - k - h_rows[parity] + 1),
        np.repeat([0, 1], [code.m - 1, code.m]),
    )


def test_dvb_address_rule_for_one_information_bit():
    # bit i = 360 g + j joins checks (x + j q) mod (N - K) for x on line g
    code = sc.dvbs2_code("dvbs2_normal_r1_2")
    first_line = [54, 9318, 14392, 27561, 26909, 10219, 2534, 8597]  # table B.4, first row
    q = code.m // 360
    j = 5
    expected = sorted((x + j * q) % code.m for x in first_line)
    h_rows = np.repeat(np.arange(code.m), code.check_degrees())
    assert sorted(h_rows[code.var_idx == j].tolist()) == expected


@pytest.mark.parametrize("bg,z", [(1, 384), (2, 384), (1, 2), (2, 15), (2, 104)])
def test_5g_dimensions(bg, z):
    code = sc.nr5g_code(bg, z)
    m_b, n_b, kb = sc.NR_BASE[bg]
    assert (code.n, code.m) == (n_b * z, m_b * z)
    assert code.edges == {1: 316, 2: 197}[bg] * z
    assert np.array_equal(code.punctured, np.arange(2 * z))
    assert code.rate == pytest.approx(kb / (n_b - 2))
    assert np.all(code.check_degrees() >= 3)


def test_5g_circulant_shifts_follow_the_table():
    # BG1 row 0, column 1: V = 69, 19, 15, ... for iLS 0, 1, 2; Z = 384 = 3 * 2^7 is set 1
    code = sc.nr5g_code(1, 384)
    z, v = 384, 19
    h_rows = np.repeat(np.arange(code.m), code.check_degrees())
    for r in (0, 1, 200, 383):
        cols = code.var_idx[h_rows == r]
        assert z + (r + v) % z in cols
    # Z = 10 = 5 * 2: set 2, V = 15 mod 10 = 5
    small = sc.nr5g_code(1, 10)
    rows = np.repeat(np.arange(small.m), small.check_degrees())
    assert 10 + (3 + 5) % 10 in small.var_idx[rows == 3]


def test_5g_fewer_rows_give_higher_rates():
    code = sc.nr5g_code(2, 64, rows=12)
    assert (code.n, code.m) == (22 * 64, 12 * 64)
    assert code.rate == pytest.approx(10 / 20)
    assert code.name == "5gnr_bg2_z64_rows12"
    same = sc.standard_code("5gnr_bg2_z64_rows12")
    assert np.array_equal(same.var_idx, code.var_idx) and same.name == code.name


def test_cached_codes_are_read_only():
    code = sc.dvbs2_code("dvbs2_short_r1_3")
    with pytest.raises(ValueError):
        code.var_idx[0] = 1


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: sc.nr5g_code(1, 17), "lifting size"),
        (lambda: sc.nr5g_code(1, 768), "lifting size"),
        (lambda: sc.nr5g_code(3, 64), "base graph"),
        (lambda: sc.nr5g_code(2, 64, rows=3), "rows"),
        (lambda: sc.nr5g_code(2, 64, rows=43), "rows"),
        (lambda: sc.standard_code("dvbs2_normal_r9_10"), "unknown"),
        (lambda: sc.standard_code("../../etc/passwd"), "unknown"),
        (lambda: sc.closest_standard_code(1.5), "rate"),
    ],
)
def test_bad_requests_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_closest_standard_code():
    assert sc.closest_standard_code(0.5).name == "5gnr_bg2_z384_rows12"  # tie with DVB-S2 1/2
    assert sc.closest_standard_code(0.25).name == "5gnr_bg2_z384_rows32"
    assert sc.closest_standard_code(0.2).name == "5gnr_bg2_z384"
    assert sc.closest_standard_code(0.05).name == "5gnr_bg2_z384"
    assert sc.closest_standard_code(0.29).name == "dvbs2x_normal_r13_45"
    code = sc.closest_standard_code(0.6)
    assert code.name.startswith("5gnr_bg2_z384_rows") and abs(code.rate - 0.6) < 0.03


def test_package_data_has_provenance_and_licences():
    names = {p.name for p in sc.DATA_DIR.iterdir()}
    assert {
        "PROVENANCE.md",
        "LICENSE-xdsopl-LDPC-0BSD.txt",
        "LICENSE-sionna-Apache-2.0.txt",
    } <= names
    assert len(sc.dvbs2_names()) == 14
    assert all(name in sc.standard_names() for name in ("5gnr_bg1_z384", "dvbs2_short_r1_3"))
