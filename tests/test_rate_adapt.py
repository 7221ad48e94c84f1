"""Rate adaptation by puncturing and shortening degree-one variables of a MET code."""

from __future__ import annotations

import numpy as np
import pytest

from reconcile import mdr, met_codes, rate_adapt
from reconcile.ldpc_decoder import Decoder
from reconcile.met_design import capacity_awgn, snr_for_beta


@pytest.fixture(scope="module")
def code():
    return met_codes.get_code("met_r0.02", 20_000)


@pytest.mark.parametrize("target", [0.017, 0.019, 0.02, 0.021, 0.024])
def test_effective_rate_and_layout(code, target: float) -> None:
    a = rate_adapt.for_rate(code, target, d=8)
    n, k = code.n, code.n - code.m
    p, s = a.punctured, a.shortened
    assert a.rate == pytest.approx((k - s) / (n - p - s))
    assert abs(a.rate - target) < 8 / n  # within a few bits of the target
    assert (p == 0) or (s == 0)
    assert (p > 0) == (target > 0.02 + 1e-9) or p + s <= 8
    assert a.transmitted.size == n - p - s and a.transmitted.size % 8 == 0
    deg = code.var_degrees()
    assert np.all(deg[a.code.punctured] == 1) and np.all(deg[a.code.shortened] > 1)
    assert np.intersect1d(a.code.punctured, a.code.shortened).size == 0
    assert np.intersect1d(a.transmitted, a.code.punctured).size == 0


def test_choices_are_nested_and_deterministic(code) -> None:
    small = rate_adapt.with_counts(code, 100, 0)
    large = rate_adapt.with_counts(code, 400, 0)
    assert np.all(np.isin(small.code.punctured, large.code.punctured))
    s1 = rate_adapt.with_counts(code, 0, 100)
    s2 = rate_adapt.with_counts(code, 0, 400)
    assert np.all(np.isin(s1.code.shortened, s2.code.shortened))
    again = rate_adapt.with_counts(code, 400, 0)
    np.testing.assert_array_equal(large.code.punctured, again.code.punctured)


def test_candidate_order_cache_follows_the_graph(code) -> None:
    """The cached order (per graph and seed) equals a fresh computation, is read-only, serves
    the adapted codes that share the mother's graph, and is never served to another graph."""
    from reconcile.ldpc_construct import random_u64

    def fresh(c, seed: int, core: bool) -> np.ndarray:
        deg = c.var_degrees()
        cand = np.flatnonzero(deg > 1) if core else np.flatnonzero(deg == 1)
        return cand[np.argsort(random_u64(seed, 5001 if core else 5000, cand.size),
                               kind="stable")]

    for seed, core in ((0, False), (0, True), (3, False)):
        order = rate_adapt.candidate_order(code, seed, core)
        np.testing.assert_array_equal(order, fresh(code, seed, core))
        assert not order.flags.writeable
        adapted = rate_adapt.with_counts(code, 50, 0).code
        assert rate_adapt.candidate_order(adapted, seed, core) is order
    other = met_codes.get_code("met_r0.10", 20_000)  # same n, another graph
    np.testing.assert_array_equal(rate_adapt.candidate_order(other), fresh(other, 0, False))


def test_for_snr_hits_the_target_efficiency(code) -> None:
    for snr in (0.026, 0.03, 0.034):
        a = rate_adapt.for_snr(code, snr, beta=0.9)
        assert a.beta(snr) == pytest.approx(0.9, abs=8 / code.n / capacity_awgn(snr))


def test_limits_and_bad_input(code) -> None:
    with pytest.raises(ValueError, match="another code"):
        rate_adapt.for_rate(code, 0.05, max_fraction=0.3)
    with pytest.raises(ValueError, match="rate must be"):
        rate_adapt.for_rate(code, 1.5)
    with pytest.raises(ValueError, match="cannot puncture"):
        rate_adapt.with_counts(code, code.n, 0)
    with pytest.raises(ValueError, match="cannot puncture"):
        rate_adapt.with_counts(code, 0, code.n)
    with pytest.raises(ValueError, match="random bits"):
        rate_adapt.bob_word(rate_adapt.with_counts(code, 0, 10), np.zeros(5, np.uint8))


@pytest.mark.parametrize("target", [0.0185, 0.022])
def test_adapted_code_reconciles_end_to_end(code, target: float) -> None:
    """Bob's word (random + shortened zeros), MDR on the transmitted positions only, Alice's
    layout (0 punctured, inf shortened), C decoder: every frame decodes to Bob's word at a
    comfortable efficiency, and the effective efficiency is what `beta` says."""
    a = rate_adapt.for_rate(code, target, d=8)
    beta = 0.7
    snr = snr_for_beta(a.rate, beta)
    assert a.beta(snr) == pytest.approx(beta)
    rng = np.random.default_rng(5)
    frames = 4
    words, llrs = [], []
    for _ in range(frames):
        word = rate_adapt.bob_word(a, rng.integers(0, 2, code.n - a.shortened, dtype=np.uint8))
        assert np.all(word[a.code.shortened] == 0)
        x = rng.normal(size=a.transmitted.size)
        y = x + rng.normal(scale=np.sqrt(1 / snr), size=x.size)
        alpha, norms = mdr.bob_encode(y, word[a.transmitted], 8)
        llr = rate_adapt.alice_llr(a, mdr.alice_llr(x, alpha, norms, 8, 1 / snr))
        assert np.all(llr[a.code.punctured] == 0) and np.all(np.isinf(llr[a.code.shortened]))
        words.append(word)
        llrs.append(llr)
    words_arr = np.array(words)
    res = Decoder(a.code).decode(np.array(llrs), a.code.syndrome(words_arr), max_iter=300)
    assert res.converged.all()
    np.testing.assert_array_equal(res.bits, words_arr)


def test_select_punctures_the_next_lower_family_member() -> None:
    for snr in (0.05, 0.12, 0.2, 0.3):
        a = rate_adapt.select(snr, 0.9, 20_000)
        assert a.beta(snr) == pytest.approx(0.9, abs=0.002)
        assert a.shortened == 0
        mother_rate = 1 - a.code.m / a.code.n
        assert mother_rate <= a.rate + 1e-9
        others = [s.rate for s in met_codes.specs().values()]
        assert not any(mother_rate + 1e-9 < r <= a.rate for r in others)
