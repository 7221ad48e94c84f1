"""Slice (multilevel) reconciliation: quantiser, exact LLRs, codes, multistage decoding."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from reconcile import slice_reconciliation as sr
from reconcile import standard_codes


@pytest.mark.parametrize("q", [1, 3, 5])
def test_boundaries_are_equiprobable(q):
    var_y = 2.7
    b = sr.equiprobable_boundaries(q, var_y)
    assert b.shape == (2**q - 1,) and np.all(np.diff(b) > 0)
    cdf = stats.norm.cdf(np.concatenate(([-np.inf], b, [np.inf])), scale=math.sqrt(var_y))
    np.testing.assert_allclose(np.diff(cdf), 2.0**-q, atol=1e-12)
    y = np.random.default_rng(3).normal(0, math.sqrt(var_y), 200_000)
    counts = np.bincount(sr.quantise(y, b), minlength=2**q)
    # Multinomial counts: each within 5 standard deviations of 200000 / 2^q.
    p = 2.0**-q
    assert np.all(np.abs(counts - 200_000 * p) < 5 * math.sqrt(200_000 * p * (1 - p)))
    assert sr.quantised_entropy(b, var_y) == pytest.approx(q, abs=1e-9)


def test_slice_bits_are_natural_binary_lsb_first():
    bits = sr.slice_bits(np.array([0, 1, 6, 7]), 3)
    np.testing.assert_array_equal(bits, [[0, 1, 0, 1], [0, 0, 1, 1], [0, 0, 1, 1]])


def _llr_by_quadrature(x, sigma2, b, level, lower):
    """ln P(S=0|x, lower)/P(S=1|x, lower) by integrating the Gaussian density directly."""
    edges = np.concatenate(([-np.inf], b, [np.inf]))
    s = math.sqrt(sigma2)
    mass = [0.0, 0.0]
    for j in range(len(b) + 1):
        if any(((j >> i) & 1) != lower[i] for i in range(level)):
            continue
        lo, hi = max(edges[j], x - 40 * s), min(edges[j + 1], x + 40 * s)
        if lo >= hi:
            continue
        # Integrate exp(-(y-x)^2/2s^2) scaled by the largest value on the interval, so that
        # tail intervals keep their relative precision; add the log scale back afterwards.
        near = min(max(x, lo), hi)
        scale = -((near - x) ** 2) / (2 * sigma2)
        def density(y, x=x, scale=scale):
            return math.exp(-((y - x) ** 2) / (2 * sigma2) - scale)

        val, _ = integrate.quad(density, lo, hi, epsabs=0, epsrel=1e-11, limit=200)
        mass[(j >> level) & 1] += val * math.exp(scale)
    return math.log(mass[0]) - math.log(mass[1])


@pytest.mark.parametrize("sigma2", [1.0, 1 / 3, 0.05])
def test_llrs_match_direct_integration(sigma2):
    q = 3
    b = sr.equiprobable_boundaries(q, 1 + sigma2)
    rng = np.random.default_rng(7)
    xs = np.concatenate((rng.normal(0, 1, 12), [-3.1, 0.0, 2.4]))
    for level in range(q):
        lower = rng.integers(0, 2, (level, xs.size)).astype(np.uint8)
        got = sr.slice_llr(xs, sigma2, b, level, lower if level else None)
        for k, x in enumerate(xs):
            want = _llr_by_quadrature(x, sigma2, b, level, lower[:, k])
            assert got[k] == pytest.approx(want, rel=1e-6, abs=1e-6), (level, x)


def test_capacities_add_up_to_quantised_mutual_information():
    """sum_i C_i = I(X; Q(Y)) for equiprobable slices, computed here independently as
    H(Q) - E_x H(Q | x) with Gauss-Hermite quadrature over x."""
    snr, q = 3.0, 4
    sigma2 = 1 / snr
    b = sr.equiprobable_boundaries(q, 1 + sigma2)
    caps = sr.slice_capacities(sigma2, b)
    xg, wg = np.polynomial.hermite_e.hermegauss(150)
    wg = wg / wg.sum()
    edges = np.concatenate(([-np.inf], b, [np.inf]))
    p = np.diff(stats.norm.cdf((edges[None, :] - xg[:, None]) / math.sqrt(sigma2)), axis=1)
    h_cond = -(np.where(p > 0, p * np.log2(np.where(p > 0, p, 1)), 0)).sum(axis=1)
    i_xq = q - float(wg @ h_cond)
    assert caps.sum() == pytest.approx(i_xq, abs=2e-4)
    assert i_xq < 0.5 * math.log2(1 + snr)
    assert np.all(caps > 0) and np.all(np.diff(caps) > 0)  # LSB noisiest


def test_nr5g_slice_code_rows_and_leak():
    z, n_dims = 16, 24 * 16
    checks = 9 * z + 5
    sc = sr.nr5g_slice_code(checks, n_dims, z)
    assert sc.transmitted.size == n_dims
    assert sc.leak == pytest.approx((checks - 2 * z) / n_dims)
    full = standard_codes.nr5g_code(1, z, 10).to_dense()[:checks]
    used = np.flatnonzero(full.any(axis=0))
    np.testing.assert_array_equal(sc.code.to_dense(), full[:, used])
    assert sc.code.rate == pytest.approx(1 - sc.leak)
    with pytest.raises(ValueError):
        sr.nr5g_slice_code(3 * z, n_dims, z)


def test_noiseless_case_decodes_without_iterations():
    z = 16
    plan = sr.design(1e6, 3, z, margin=0.05)
    assert all(c is not None for c in plan.codes)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((8, plan.n_dims))
    msg, words = sr.bob_encode(plan, x, sim_rng=rng)
    res = sr.alice_decode(plan, x, 1e-9, msg)
    assert res.ok.all()
    for i, w in enumerate(words):
        np.testing.assert_array_equal(res.words[i], w)
        assert np.all(res.iterations[i] <= 1)  # one pass fills the punctured bits


def test_end_to_end_short_5g_code_at_high_snr():
    snr, q, z, frames = 15.0, 4, 64, 16
    sigma2 = 1 / snr
    plan = sr.design(snr, q, z, margin=(1.0, 0.08, 0.06, 0.06))
    assert plan.codes[0] is None and all("5gnr" in c.code.name for c in plan.codes[1:])
    rng = np.random.default_rng(5)
    x = rng.standard_normal((frames, plan.n_dims))
    y = x + math.sqrt(sigma2) * rng.standard_normal(x.shape)
    msg, words = sr.bob_encode(plan, y, sim_rng=rng)
    res = sr.alice_decode(plan, x, sigma2, msg, max_iter=100)
    assert res.ok.all()
    for i, w in enumerate(words):
        np.testing.assert_array_equal(res.words[i], w)
    # Independent count: key bits = q bits per symbol (equiprobable) + Bob's random bits at
    # punctured positions; disclosed = raw slices + syndromes.
    key = q * plan.n_dims + sum(c.code.punctured.size for c in plan.codes if c is not None)
    shown = sum(plan.n_dims if c is None else c.code.m for c in plan.codes)
    beta = (key - shown) / (plan.n_dims * 0.5 * math.log2(1 + snr))
    assert plan.beta(1.0, sigma2) == pytest.approx(beta, rel=1e-12)
    # Below the quantised bound I(X;Q)/I(X;Y).
    caps = sr.slice_capacities(sigma2, plan.boundaries)
    assert 0.7 < beta < caps.sum() / (0.5 * math.log2(1 + snr))


def test_met_slice_code_punctures_to_the_frame():
    sc = sr.met_slice_code(0.87, 9216)
    assert sc.transmitted.size == 9216
    assert sc.leak == pytest.approx(1 - sc.code.k / 9216)
    assert abs(sc.leak - 0.87) < 0.02
    assert np.array_equal(np.sort(sc.filled), np.sort(sc.code.punctured))


def test_cli_bench_ldpc_slice_method(capsys):
    import json

    from controller import cli

    argv = ["bench", "ldpc", "--method", "slice", "--snr", "15", "--z", "64", "--frames", "8"]
    assert cli.main([*argv, "--margins", "1,0.1,0.1,0.1", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["method"] == "slice" and rep["fer"] == 0.0 and rep["undetected_errors"] == 0
    plan = sr.design(15.0, 4, 64, (1.0, 0.1, 0.1, 0.1))
    assert rep["beta"] == pytest.approx(plan.beta(1.0, 1 / 15))
    for bad in (["--margins", "1,0.1"], ["--margins", "a,b,c,d"], ["--snr", "-1"]):
        with pytest.raises(SystemExit) as exc:
            raise SystemExit(cli.main([*argv, *bad]))
        assert exc.value.code == 2
        assert "Traceback" not in capsys.readouterr().err
