"""Finite-size rates: LGG 2010 and the composable (Pirandola 2021) rate, FER accounted."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reconcile import finite_size, keyrate
from reconcile.estimation import worst_case_parameters

LINK = {"eta": 0.7, "v_el": 0.1}
T = keyrate.fibre_transmittance(np.array([0.0, 5.0, 20.0, 40.0]))


def test_lgg_penalty_by_hand() -> None:
    n, eps = 1e9, 1e-10
    expect = 7 * math.sqrt(math.log2(2 / eps) / n) + 2 / n * math.log2(1 / eps)
    assert finite_size.lgg_penalty(np.float64(n), np.float64(eps)) == pytest.approx(expect)


def test_composable_penalties_by_hand() -> None:
    p_ec, eps, bits = 0.9, 1e-10, 10
    d_aep, theta = finite_size.composable_penalties(np.float64(p_ec), np.float64(eps),
                                                    np.float64(eps), bits)
    assert d_aep == pytest.approx(4 * math.log2(2 * math.sqrt(2**bits) + 1)
                                  * math.sqrt(math.log2(18 / (p_ec**2 * eps**4))))
    assert theta == pytest.approx(math.log2(p_ec * (1 - eps**2 / 3))
                                  + 2 * math.log2(math.sqrt(2) * eps))


@pytest.mark.parametrize("detection", ["homodyne", "heterodyne"])
@pytest.mark.parametrize("detector", ["trusted", "untrusted"])
def test_finite_below_asymptotic_and_converging(detection: str, detector: str) -> None:
    kw = {**LINK, "detection": detection, "detector": detector}
    asym = keyrate.asymptotic_rate(4.0, T, 0.02, 0.95, **kw).k
    n_tot = np.logspace(7, 17, 11)[:, None]
    r = finite_size.finite_size_rate(4.0, T, 0.02, 0.95, n_total=n_tot, pe_fraction=0.1,
                                     fer=0.0, **kw)
    ceiling = 0.9 * asym  # n/N = 0.9 of the block carries key
    assert np.all(r.k_finite <= ceiling + 1e-15) and np.all(r.k_composable <= ceiling + 1e-15)
    assert np.all(np.diff(r.k_finite, axis=0) >= 0) and np.all(np.diff(r.k_composable, axis=0) >= 0)
    live = asym > 0.01
    np.testing.assert_allclose(r.k_finite[-1][live], ceiling[live], rtol=2e-3)
    np.testing.assert_allclose(r.k_composable[-1][live], ceiling[live], rtol=2e-3)
    assert np.all(r.t_min <= T) and np.all(r.xi_max >= 0.02)


def test_frame_errors_scale_the_rate() -> None:
    base = finite_size.finite_size_rate(4.0, T, 0.02, 0.95, n_total=1e10, fer=0.0, **LINK)
    lossy = finite_size.finite_size_rate(4.0, T, 0.02, 0.95, n_total=1e10, fer=0.2, **LINK)
    pos = base.k_finite > 0
    np.testing.assert_allclose(lossy.k_finite[pos], 0.8 * base.k_finite[pos], rtol=1e-12)
    # composable: p_EC multiplies, and also enters Delta_AEP and Theta (so it loses more)
    assert np.all(lossy.k_composable < 0.8 * base.k_composable + 1e-15)


def test_worst_case_parameters_are_the_estimators() -> None:
    """The rate uses estimation.worst_case_parameters on the expected t, sigma2 (heterodyne:
    t = sqrt(eta T / 2), sigma2 = 1 + v_el + eta T xi / 2, m = 2 x PE symbols)."""
    t, xi, eta, v_el, n = 0.25, 0.03, 0.7, 0.1, 1e9
    r = finite_size.finite_size_rate(4.0, t, xi, 0.95, n_total=n, pe_fraction=0.2, epsilon=1e-9,
                                     eta=eta, v_el=v_el)
    t_min, xi_max = worst_case_parameters(math.sqrt(eta * t / 2), 1 + v_el + eta * t * xi / 2,
                                          2 * 0.2 * n, 4.0, eta, v_el, 1e-9, "heterodyne")
    assert r.t_min == pytest.approx(float(t_min)) and r.xi_max == pytest.approx(float(xi_max))
    assert r.n_key == 0.8 * n and r.m_pe == 0.4 * n
    chi = keyrate.asymptotic_rate(4.0, t_min, xi_max, 0.95, eta=eta, v_el=v_el).chi_be
    assert r.chi_be_worst == pytest.approx(float(chi), rel=1e-12)


def test_tiny_blocks_give_zero_not_nan() -> None:
    r = finite_size.finite_size_rate(4.0, T, 0.02, 0.95, n_total=200, **LINK)
    assert np.all(r.k_finite == 0) and np.all(r.k_composable == 0)
    assert not np.any(np.isnan(r.k_finite_raw)) and not np.any(np.isnan(r.k_composable_raw))


@pytest.mark.parametrize(("name", "value"), [
    ("n_total", 0.0), ("pe_fraction", 0.0), ("pe_fraction", 1.0), ("epsilon", 0.0),
    ("epsilon", 1.0), ("fer", 1.0), ("fer", -0.1),
])
def test_invalid_finite_size_inputs(name: str, value: float) -> None:
    p = {"n_total": 1e9, "pe_fraction": 0.1, "epsilon": 1e-10, "fer": 0.1, **{name: value}}
    with pytest.raises(ValueError, match=name):
        finite_size.finite_size_rate(4.0, 0.5, 0.02, 0.95, **p, **LINK)


def test_too_few_pe_samples() -> None:
    with pytest.raises(ValueError, match="PE samples"):
        finite_size.finite_size_rate(4.0, 0.5, 0.02, 0.95, n_total=10, pe_fraction=0.01)


def test_rate_from_measured_estimate_matches_plan() -> None:
    """Simulated heterodyne PE data (fixed seed): the rate from the measured estimate uses the
    estimate's own worst case, and lands close to the planned rate for the same link."""
    from reconcile.estimation import estimate_channel

    t, xi, eta, v_el, v_a, n_sym = 0.316, 0.02, 0.7, 0.1, 4.0, 1_000_000
    rng = np.random.default_rng(2024)
    x = rng.normal(0, np.sqrt(v_a), (n_sym, 2)) @ np.array([1.0, 1j])
    noise = rng.normal(0, np.sqrt(1 + v_el + eta * t * xi / 2), (n_sym, 2)) @ np.array([1.0, 1j])
    y = np.sqrt(eta * t / 2) * x + noise
    est = estimate_channel(x, y, eta=eta, v_el=v_el, detection="heterodyne", eps_pe=1e-10)
    n_total = 1000 * n_sym
    got = finite_size.finite_size_rate_from_estimate(est, 0.95, n_total=n_total, eta=eta,
                                                     v_el=v_el, fer=0.1)
    assert got.m_pe == 2 * n_sym and got.n_key == n_total - n_sym
    chi = keyrate.asymptotic_rate(est.v_a, est.transmittance_min, est.excess_noise_max, 0.95,
                                  eta=eta, v_el=v_el).chi_be
    assert got.chi_be_worst == pytest.approx(float(chi), rel=1e-12)
    # planning with the estimated values reproduces it exactly (same t, sigma2, m, V_A, SNR)
    same = finite_size.finite_size_rate(est.v_a, est.transmittance, est.excess_noise, 0.95,
                                        n_total=n_total, pe_fraction=1e-3, eta=eta, v_el=v_el,
                                        fer=0.1)
    assert got.k_finite == pytest.approx(float(same.k_finite), rel=1e-9)
    assert got.k_composable == pytest.approx(float(same.k_composable), rel=1e-9)
    # and the true link's plan is close: 1e6 symbols pin xi only to ~0.01 SNU (1 sigma)
    plan = finite_size.finite_size_rate(v_a, t, xi, 0.95, n_total=n_total, pe_fraction=1e-3,
                                        eta=eta, v_el=v_el, fer=0.1)
    assert 0 < got.k_finite == pytest.approx(float(plan.k_finite), rel=0.25)
    assert 0 < got.k_composable == pytest.approx(float(plan.k_composable), rel=0.25)
    with pytest.raises(ValueError, match="no key symbols"):
        finite_size.finite_size_rate_from_estimate(est, 0.95, n_total=n_sym, eta=eta, v_el=v_el)
