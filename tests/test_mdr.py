"""Multidimensional reconciliation: algebra, noiseless recovery, LLR statistics, leakage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from reconcile import mdr


def _cd_conj(x: np.ndarray) -> np.ndarray:
    if x.shape[-1] == 1:
        return x.copy()
    h = x.shape[-1] // 2
    return np.concatenate([_cd_conj(x[..., :h]), -x[..., h:]], axis=-1)


def _cd_mul(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Independent Cayley-Dickson recursion: (a,b)(c,d) = (ac - conj(d) b, da + b conj(c))."""
    if x.shape[-1] == 1:
        return x * y
    h = x.shape[-1] // 2
    a, b, c, d = x[..., :h], x[..., h:], y[..., :h], y[..., h:]
    return np.concatenate(
        [_cd_mul(a, c) - _cd_mul(_cd_conj(d), b), _cd_mul(d, a) + _cd_mul(b, _cd_conj(c))],
        axis=-1,
    )


@pytest.mark.parametrize("d", mdr.DIMENSIONS)
def test_product_matches_cayley_dickson(d: int) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 500, d))
    np.testing.assert_allclose(mdr.multiply(a, b), _cd_mul(a, b), atol=1e-12)
    # broadcast operands (the generic path) give the same numbers as equal shapes (the
    # row kernel)
    np.testing.assert_array_equal(mdr.multiply(a[0], b), mdr.multiply(np.tile(a[0], (500, 1)), b))


def test_product_on_basis_units_is_a_signed_permutation() -> None:
    e = np.eye(8)
    for i in range(8):
        for j in range(8):
            p = mdr.multiply(e[i], e[j])
            assert np.count_nonzero(p) == 1 and abs(p.sum()) == 1.0
    # e_i e_i = -1 for the imaginary units, and they anticommute
    for i in range(1, 8):
        np.testing.assert_array_equal(mdr.multiply(e[i], e[i]), -e[0])
        for j in range(1, 8):
            if i != j:
                np.testing.assert_array_equal(
                    mdr.multiply(e[i], e[j]), -mdr.multiply(e[j], e[i])
                )


@pytest.mark.parametrize("d", mdr.DIMENSIONS)
def test_norm_is_multiplicative_and_conj_inverts(d: int) -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2, 1000, d))
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(np.linalg.norm(mdr.multiply(a, b), axis=1), na * nb, rtol=1e-12)
    # (a conj(b)) b = a |b|^2 (alternativity), which is what makes alpha * y' = u
    lhs = mdr.multiply(mdr.multiply(a, mdr.conj(b)), b)
    np.testing.assert_allclose(lhs, a * (nb**2)[:, None], rtol=1e-10, atol=1e-10)


def test_octonions_are_not_associative() -> None:
    rng = np.random.default_rng(3)
    a, b, c = rng.normal(size=(3, 8))
    ab_c = mdr.multiply(mdr.multiply(a, b), c)
    a_bc = mdr.multiply(a, mdr.multiply(b, c))
    assert np.max(np.abs(ab_c - a_bc)) > 1e-3


@pytest.mark.parametrize("d", mdr.DIMENSIONS)
def test_noiseless_alice_recovers_u_exactly(d: int) -> None:
    rng = np.random.default_rng(4)
    y = rng.normal(size=4096 * d)
    bits = mdr.random_bits(y.size)
    alpha, norms = mdr.bob_encode(y, bits, d)
    v = mdr.alice_project(y, alpha, d)
    np.testing.assert_allclose(v, (1.0 - 2.0 * bits) / np.sqrt(d), atol=1e-12)
    llr = mdr.alice_llr(y, alpha, norms, d, sigma2=0.5)
    np.testing.assert_array_equal((llr < 0).astype(np.uint8), bits)


def _channel(snr: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    rng = np.random.default_rng(seed)
    s, sigma2 = 1.0, 1.0 / snr  # Var(x) = 1, Var(z) = 1/SNR
    x = rng.normal(scale=np.sqrt(s), size=n)
    y = x + rng.normal(scale=np.sqrt(sigma2), size=n)
    return x, y, sigma2


@pytest.mark.parametrize("d", [1, 8])
def test_sign_error_rate_matches_prediction(d: int) -> None:
    """P(sign error | |y|) = Q(sqrt(SNR |y|^2 / (d (S + sigma2)))), |y|^2/(S+sigma2) ~ chi2_d.

    At low SNR this is the binary-input AWGN channel with SNR averaged over the chi-square
    fluctuation of |y|; for d = 8 it is close to Q(sqrt(SNR)).
    """
    snr, n = 0.05, 800_000
    x, y, sigma2 = _channel(snr, n, seed=5)
    bits = np.random.default_rng(6).integers(0, 2, n).astype(np.uint8)
    alpha, norms = mdr.bob_encode(y, bits, d)
    llr = mdr.alice_llr(x, alpha, norms, d, sigma2)
    measured = np.mean((llr < 0) != (bits == 1))
    pred, _ = integrate.quad(
        lambda q: stats.norm.sf(np.sqrt(snr * q / d)) * stats.chi2.pdf(q, d), 0, np.inf
    )
    tol = 5 * np.sqrt(pred * (1 - pred) / n)
    assert abs(measured - pred) < tol
    if d == 8:
        assert abs(pred - stats.norm.sf(np.sqrt(snr))) < 0.003


def test_llrs_are_calibrated() -> None:
    """E[1 - 2c | L] = tanh(L/2) when L is the true log-likelihood ratio (checks the factor)."""
    d, snr, n = 8, 0.2, 800_000
    x, y, sigma2 = _channel(snr, n, seed=7)
    bits = np.random.default_rng(8).integers(0, 2, n).astype(np.uint8)
    alpha, norms = mdr.bob_encode(y, bits, d)
    llr = mdr.alice_llr(x, alpha, norms, d, sigma2).astype(np.float64)
    edges = np.quantile(llr, np.linspace(0, 1, 21))
    which = np.clip(np.searchsorted(edges, llr) - 1, 0, 19)
    sgn = 1.0 - 2.0 * bits
    for b in range(20):
        sel = which == b
        got = sgn[sel].mean()
        want = np.tanh(llr[sel] / 2).mean()
        assert abs(got - want) < 5 / np.sqrt(sel.sum())


@pytest.mark.parametrize("d", [2, 8])
def test_alpha_is_independent_of_the_bits(d: int) -> None:
    """alpha is uniform on the sphere whatever u: its first coordinate t has
    (1 + t)/2 ~ Beta((d-1)/2, (d-1)/2), and no component correlates with any bit."""
    n = 200_000
    rng = np.random.default_rng(9)
    y = rng.normal(size=n)
    for bits in (np.zeros(n, np.uint8), np.ones(n, np.uint8), rng.integers(0, 2, n)):
        alpha, norms = mdr.bob_encode(y, bits.astype(np.uint8), d)
        a = alpha.reshape(-1, d)
        np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-12)
        beta_half = (d - 1) / 2
        for comp in range(d):
            p = stats.kstest((1 + a[:, comp]) / 2, stats.beta(beta_half, beta_half).cdf).pvalue
            assert p > 1e-4
    # correlation between every component of alpha and every bit in the same block
    bits = rng.integers(0, 2, n).astype(np.uint8)
    alpha, norms = mdr.bob_encode(y, bits, d)
    a = alpha.reshape(-1, d)
    s = (1.0 - 2.0 * bits).reshape(-1, d)
    corr = (a - a.mean(0)).T @ (s - s.mean(0)) / (a.std(0)[:, None] * s.std(0)[None, :])
    corr /= a.shape[0]
    assert np.max(np.abs(corr)) < 5 / np.sqrt(a.shape[0])
    # the published norms are a function of y alone: identical for any bits
    _, norms2 = mdr.bob_encode(y, 1 - bits, d)
    np.testing.assert_array_equal(norms, norms2)


def test_without_norms_the_llrs_keep_their_sign() -> None:
    x, y, sigma2 = _channel(0.1, 80_000, seed=10)
    bits = mdr.random_bits(y.size)
    alpha, norms = mdr.bob_encode(y, bits, 8)
    with_n = mdr.alice_llr(x, alpha, norms, 8, sigma2)
    without = mdr.alice_llr(x, alpha, None, 8, sigma2)
    np.testing.assert_array_equal(np.sign(with_n), np.sign(without))
    # both are LLRs of comparable size; the norm-less ones carry a little less information
    i_with = mdr.llr_mutual_information(with_n)
    i_without = mdr.llr_mutual_information(without)
    assert 0 < i_without <= i_with + 0.002


def test_llr_mutual_information_matches_biawgn_capacity() -> None:
    """For the BI-AWGN channel (+-1, noise variance s2, LLR 2y/s2) the estimate equals the
    capacity computed by quadrature."""
    s2 = 2.0
    rng = np.random.default_rng(11)
    y = 1.0 + rng.normal(scale=np.sqrt(s2), size=400_000)
    est = mdr.llr_mutual_information(2 * y / s2)
    cap, _ = integrate.quad(
        lambda t: stats.norm.pdf(t, 1, np.sqrt(s2)) * np.logaddexp(0, -2 * t / s2) / np.log(2),
        -40, 40,
    )
    assert est == pytest.approx(1 - cap, rel=0.01)


def test_random_bits_are_balanced() -> None:
    b = mdr.random_bits(100_001)
    assert b.shape == (100_001,) and set(np.unique(b)) <= {0, 1}
    assert abs(b.mean() - 0.5) < 5 * 0.5 / np.sqrt(b.size)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="dimension"):
        mdr.bob_encode(np.ones(6), np.zeros(6, np.uint8), 3)
    with pytest.raises(ValueError, match="divisible"):
        mdr.bob_encode(np.ones(6), np.zeros(6, np.uint8), 4)
    with pytest.raises(ValueError, match="one bit per sample"):
        mdr.bob_encode(np.ones(8), np.zeros(7, np.uint8), 8)
    with pytest.raises(ValueError, match="zero"):
        mdr.bob_encode(np.zeros(8), np.zeros(8, np.uint8), 8)
    with pytest.raises(ValueError, match="sigma2"):
        mdr.alice_llr(np.ones(8), np.ones(8), np.ones(1), 8, 0.0)
