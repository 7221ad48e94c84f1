"""reconcile.operating_point: the measured table, the cost model and the choice."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from mdr_frames import mdr_frames
from scipy import stats

from reconcile import met_codes, operating_point
from reconcile.finite_size import finite_size_rate
from reconcile.keyrate import fibre_transmittance
from reconcile.ldpc_decoder import Decoder
from reconcile.met_design import capacity_awgn

LINK_SNR = 0.4  # 25 km defaults, per quadrature
LINK_REALS = 2 * (2**20 - math.floor(0.1 * 2**20))  # one 2^20-symbol frame after 10 % PE


def test_fer_upper_bound_is_the_clopper_pearson_limit() -> None:
    # 0 errors: (1 - p)^n = 0.05 exactly
    assert operating_point.fer_upper_bound(0, 64) == pytest.approx(1 - 0.05 ** (1 / 64))
    # k errors: P(X <= k | p_up) = 0.05
    for k, n in ((1, 16), (5, 64), (30, 64)):
        p = operating_point.fer_upper_bound(k, n)
        assert stats.binom.cdf(k, n, p) == pytest.approx(0.05, abs=1e-9)
    assert operating_point.fer_upper_bound(8, 8) == 1.0
    with pytest.raises(ValueError):
        operating_point.fer_upper_bound(3, 2)


def test_expected_group_max_against_simulation() -> None:
    rng = np.random.default_rng(3)
    passes = rng.integers(10, 300, 50)
    draws = rng.choice(passes, size=(200_000, 8)).max(axis=1)
    se = draws.std() / math.sqrt(draws.size)
    assert operating_point.expected_group_max(passes) == pytest.approx(draws.mean(), abs=5 * se)
    assert operating_point.expected_group_max(np.array([7, 7, 7])) == pytest.approx(7.0)
    assert operating_point.expected_group_max(np.array([1, 2]), group=1) == pytest.approx(1.5)


def test_frames_per_batch_is_the_callers_bound_up_to_64_codewords() -> None:
    for c in range(1, 40):
        for cap in (1, 2, 4, 8, 100):
            f = operating_point.frames_per_batch(c, cap)
            assert 1 <= f <= cap
            assert f == cap or (f * c >= 64 and (f - 1) * c < 64)
    assert operating_point.frames_per_batch(2) == 8
    assert operating_point.frames_per_batch(8) == 8
    assert operating_point.frames_per_batch(8, 2) == 2
    assert operating_point.frames_per_batch(31) == 3
    with pytest.raises(ValueError):
        operating_point.frames_per_batch(0)


def test_refill_group_passes_follows_list_scheduling() -> None:
    # equal codewords: ceil(words / 8) rounds of the same length, exactly
    for words in (1, 8, 9, 12, 16, 17, 64):
        assert operating_point.refill_group_passes(np.array([10.0]), words) == \
            10.0 * math.ceil(words / 8)
    # 8 codewords: one of each lane, the group's passes are the largest draw
    rng = np.random.default_rng(5)
    passes = rng.integers(10, 100, 64)
    mc = operating_point.refill_group_passes(passes, 8, trials=100_000, seed=1)
    assert mc == pytest.approx(operating_point.expected_group_max(passes), rel=0.01)
    # many codewords: the group's passes per codeword tend to the mean (the tail thins out)
    per_word = [operating_point.refill_group_passes(passes, w) * 8 / w for w in (8, 16, 64, 256)]
    assert all(a > b for a, b in itertools.pairwise(per_word))
    assert per_word[-1] == pytest.approx(passes.mean(), rel=0.05)


def test_passes_per_codeword_interpolates_the_measured_refill() -> None:
    for r in operating_point.measured_points():
        assert len(r.refill_passes) == len(operating_point.REFILL_SIZES)
        assert hash(r) == hash(operating_point.MeasuredPoint(**r.__dict__))  # frozen, hashable
        assert r.refill_passes[0] == r.group_passes
        assert r.mean_passes <= r.refill_passes[-1] + 1e-9
        assert r.mean_iterations <= r.mean_passes + 1e-9 or r.errors > 0
        for w, v in zip(operating_point.REFILL_SIZES, r.refill_passes, strict=True):
            assert r.passes_per_codeword(w) == pytest.approx(v)
        assert r.passes_per_codeword(4) == pytest.approx(2 * r.group_passes)
        grid = [4, 8, 12, 16, 24, 32, 48, 64, 128, 1e6]
        ppc = [r.passes_per_codeword(w) for w in grid]
        assert all(a >= b - 0.05 for a, b in itertools.pairwise(ppc))  # MC noise
        assert ppc[-1] == pytest.approx(r.mean_passes, abs=0.01)
        assert r.ns_per_real == pytest.approx(
            operating_point.NS_PER_EDGE_PASS * r.edges_per_real * r.group_passes)


def test_cost_counts_codewords_per_call() -> None:
    """Two frames of 8 codewords per call refill the lanes: cheaper per real than one frame
    per call, by the refill passes measured for 16 codewords."""
    one = operating_point.candidates(LINK_SNR, LINK_REALS, max_frames_per_batch=1)
    two = operating_point.candidates(LINK_SNR, LINK_REALS, max_frames_per_batch=2)
    for a, b in zip(one, two, strict=True):
        assert (a.n, a.n_tx, a.max_iter) == (b.n, b.n_tx, b.max_iter)
        assert b.frames_per_batch == 2
        assert b.decode_ns_per_real == pytest.approx(
            a.source.ns_per_real_at(2 * a.codewords_per_frame))
        assert b.decode_ns_per_real <= a.decode_ns_per_real + 1e-9
        if a.codewords_per_frame == 8:
            assert a.decode_ns_per_real == pytest.approx(a.source.ns_per_real)
            if a.source.refill_passes[1] < a.source.group_passes:  # not all at the cap
                assert b.decode_ns_per_real < a.decode_ns_per_real


def test_adapted_code_sends_n_tx_reals_at_the_requested_rate() -> None:
    rate = 0.93 * capacity_awgn(LINK_SNR)
    a = operating_point.adapted_code("met_r0.212", 58976, rate)
    assert a.transmitted.size == 58976
    assert a.code.n % 1000 == 0 and a.shortened == 0
    assert a.punctured == a.code.n - 58976
    # k moves in steps of 212 bits per 1000 of n: the rate is within half a step
    assert abs(a.rate - rate) <= 0.5 * 212 / 58976 + 1e-12
    with pytest.raises(ValueError, match="below"):
        operating_point.adapted_code("met_r0.225", 58976, 0.2)
    with pytest.raises(ValueError, match="multiple"):
        operating_point.adapted_code("met_r0.212", 58977, rate)


def test_measured_table_is_consistent() -> None:
    rows = operating_point.measured_points()
    assert rows
    for r in rows:
        assert r.mother in met_codes.specs()
        assert 0 <= r.errors <= r.frames and r.frames >= 32
        assert r.fer_upper >= r.fer
        assert 0 <= r.punctured_fraction < 0.6
        assert 0 < r.group_passes <= r.max_iter
        assert r.mean_iterations <= r.group_passes + 1e-9
        # puncturing the measured fraction of the mother gives the measured beta
        rate = met_codes.spec(r.mother).rate / (1 - r.punctured_fraction)
        assert rate / capacity_awgn(r.snr) == pytest.approx(r.beta, abs=2e-4)


@pytest.mark.parametrize("snr", [0.3, LINK_SNR, 0.5])
def test_choice_respects_budget_and_rules(snr: float) -> None:
    best = operating_point.choose(snr, LINK_REALS)
    cands = operating_point.candidates(snr, LINK_REALS)
    assert best in cands
    ok = [c for c in cands if c.fer_upper <= 0.25]
    assert best.beta * (1 - best.fer_upper) == max(c.beta * (1 - c.fer_upper) for c in ok)
    for c in cands:
        spec = met_codes.spec(c.mother)
        assert c.codewords_per_frame * c.n_tx <= LINK_REALS
        assert c.n_tx >= c.source.n_tx - 8 and c.n_tx % 8 == 0
        assert c.beta <= c.source.beta + operating_point.BETA_SLACK + 1e-12
        # puncturing at this SNR is no more than measured (+ the documented 0.5 % slack)
        assert c.punctured / c.n <= c.source.punctured_fraction + 0.005 + spec.base_n / c.n
        k = c.n // spec.base_n * (spec.base_n - spec.ensemble.base_m)
        assert c.beta == pytest.approx(k / c.n_tx / capacity_awgn(snr), rel=1e-12)
    for c in {c.n: c for c in cands if c.n <= 300_000}.values():  # build the short ones
        a = c.adaptation()
        assert a.transmitted.size == c.n_tx
        assert a.beta(snr) == pytest.approx(c.beta, rel=1e-12)
        # per frame: same code, beta held at a slightly lower estimated SNR with fewer
        # punctured bits, i.e. longer codewords
        b = c.adapt_to(snr - 0.005)
        assert b.code.n == c.n and b.punctured < c.punctured
        assert b.beta(snr - 0.005) == pytest.approx(c.beta, abs=2e-4)
    cheapest = min(c.decode_ns_per_real for c in ok)
    # a budget between the cheapest and the unconstrained choice is respected
    budget = 0.5 * (cheapest + best.decode_ns_per_real)
    if budget > cheapest:
        tight = operating_point.choose(snr, LINK_REALS, budget)
        assert tight.decode_ns_per_real <= budget
    with pytest.raises(ValueError, match="no measured"):
        operating_point.choose(snr, LINK_REALS, 0.5 * cheapest)
    with pytest.raises(ValueError, match="no measured"):
        operating_point.choose(5.0, LINK_REALS)  # far outside the measured SNRs
    # the mother code chosen is the one designed nearest this SNR
    assert best.mother == {0.3: "met_r0.165", LINK_SNR: "met_r0.212", 0.5: "met_r0.255"}[snr]


def test_choice_with_the_25km_finite_size_rate_maximises_bits_per_cpu_second() -> None:
    t = float(fibre_transmittance(25.0))

    def key_rate(beta: float, fer: float, n_total: float = 1e7) -> float:
        r = finite_size_rate(4.0, t, 0.02, beta, n_total=n_total, fer=fer, eta=0.7, v_el=0.1)
        return float(r.k_finite)

    for n_total in (1e7, 3e7):
        def kr(beta: float, fer: float, n: float = n_total) -> float:
            return key_rate(beta, fer, n)

        best = operating_point.choose(LINK_SNR, LINK_REALS, key_rate=kr)
        ok = [c for c in operating_point.candidates(LINK_SNR, LINK_REALS) if c.fer_upper <= 0.25]
        per_cpu = [kr(c.beta, c.fer_upper) / (operating_point.OTHER_NS_PER_REAL
                                             + c.decode_ns_per_real) for c in ok]
        assert kr(best.beta, best.fer_upper) / (
            operating_point.OTHER_NS_PER_REAL + best.decode_ns_per_real) == max(per_cpu)


def _decode_errors(point: operating_point.OperatingPoint, snr: float, frames: int,
                   seed: int) -> int:
    """Codewords of `point` that fail at its cap on fresh simulated data (as the sweep)."""
    a = point.adaptation()
    code = a.code
    llr, words = mdr_frames(a, snr, frames, np.random.default_rng(seed))
    res = Decoder(code).decode(llr, code.syndrome(words), max_iter=point.max_iter, threads=2)
    return int(frames - np.sum(res.converged & np.all(res.bits == words, axis=1)))


def _allowed(point: operating_point.OperatingPoint, frames: int) -> int:
    """Errors that a code at the promised FER (its 95 % upper bound) exceeds with < 0.1 %."""
    return int(stats.binom.ppf(0.999, frames, point.fer_upper))


def test_cheapest_link_point_decodes_at_its_promised_fer() -> None:
    cands = operating_point.candidates(LINK_SNR, LINK_REALS)
    point = min((c for c in cands if c.fer_upper <= 0.25), key=lambda c: c.decode_ns_per_real)
    assert _decode_errors(point, LINK_SNR, 16, seed=101) <= _allowed(point, 16)


@pytest.mark.slow
def test_chosen_link_point_decodes_at_its_promised_fer() -> None:
    point = operating_point.choose(LINK_SNR, LINK_REALS)
    frames = 32
    errors = _decode_errors(point, LINK_SNR, frames, seed=102)
    print(f"{point.mother} n={point.n} n_tx={point.n_tx} beta={point.beta:.4f} "
          f"cap={point.max_iter}: {errors}/{frames} (measured {point.source.errors}/"
          f"{point.source.frames})")
    assert errors <= _allowed(point, frames)


def test_used_fraction_and_points_without_a_key() -> None:
    """Each candidate's `used_fraction` is the share of the frame its codewords carry; with
    a key rate that is <= 0 everywhere (block too short), the choice falls back to the most
    reconciled information per CPU second, and a point with a key beats every one without."""
    cands = [c for c in operating_point.candidates(LINK_SNR, LINK_REALS, max_frames_per_batch=1)
             if c.fer_upper <= 0.25]
    assert any(c.used_fraction < 1 for c in cands)  # the next-length option exists here
    for c in cands:
        assert c.frames_per_batch == 1
        assert c.used_fraction == pytest.approx(c.codewords_per_frame * c.n_tx / LINK_REALS)
        assert 0.9 < c.used_fraction <= 1.0

    def cost(c: operating_point.OperatingPoint) -> float:
        return operating_point.OTHER_NS_PER_REAL + c.decode_ns_per_real

    none = operating_point.choose(LINK_SNR, LINK_REALS, key_rate=lambda b, f: -1.0,
                                  max_frames_per_batch=1)
    assert none.beta * (1 - none.fer_upper) / cost(none) == max(
        c.beta * (1 - c.fer_upper) / cost(c) for c in cands)
    lucky = min(cands, key=lambda c: c.beta)  # the only point given a key
    one = operating_point.choose(LINK_SNR, LINK_REALS, max_frames_per_batch=1,
                                 key_rate=lambda b, f: 1.0 if b == lucky.beta else -1.0)
    assert one.beta == lucky.beta
