"""Key-rate bounds: known limits, monotonicity, edge cases, validation, V_A optimisation."""

from __future__ import annotations

import decimal
import math

import numpy as np
import pytest

from reconcile import keyrate
from reconcile.holevo import thermal_entropy

CASES = [(det, dd) for det in ("homodyne", "heterodyne") for dd in ("trusted", "untrusted")]
LINK = {"eta": 0.7, "v_el": 0.1}


def _random_links(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "v_a": np.exp(rng.uniform(np.log(0.1), np.log(100.0), n)),
        "t": np.exp(rng.uniform(np.log(1e-4), 0.0, n)),
        "xi": rng.uniform(0.0, 0.2, n),
        "eta": rng.uniform(0.3, 1.0, n),
        "v_el": rng.uniform(0.0, 0.3, n),
        "beta": rng.uniform(0.8, 1.0, n),
    }


def _rate(
    g: dict[str, np.ndarray], detection: str, detector: str, **over: object,
) -> keyrate.AsymptoticRate:
    p = {**g, **over}
    return keyrate.asymptotic_rate(p["v_a"], p["t"], p["xi"], p["beta"], eta=p["eta"],
                                   v_el=p["v_el"], detection=detection, detector=detector)


# --- entropy function ------------------------------------------------------------------------

def _g_exact(x: float) -> float:
    """(x + 1) log2(x + 1) - x log2(x) in 400-digit decimal arithmetic (x < 1e300)."""
    with decimal.localcontext() as ctx:
        ctx.prec = 400
        d = decimal.Decimal(x)
        return float(((d + 1) * (d + 1).ln() - d * d.ln()) / decimal.Decimal(2).ln())


def test_thermal_entropy_against_high_precision() -> None:
    nu = np.concatenate([2 * np.logspace(-12, 250, 120) + 1, [1.0 + 2**-40, 3.0, 1e300]])
    x = (nu - 1) / 2  # the x that nu represents exactly
    exact = np.array([_g_exact(float(v)) for v in x])
    np.testing.assert_allclose(thermal_entropy(nu), exact, rtol=1e-13)
    assert thermal_entropy(1.0) < 1e-290 and thermal_entropy(1.0 - 1e-15) < 1e-290


# --- known limits ----------------------------------------------------------------------------

@pytest.mark.parametrize("t", [0.5, 0.1, 1e-3])
def test_ideal_homodyne_pure_loss_tends_to_half_plob(t: float) -> None:
    """Untrusted/ideal homodyne, xi = 0, beta = 1: K rises with V_A towards -1/2 log2(1 - T),
    half the PLOB bound (Pirandola et al., Rev. Mod. Phys. 92, 025002 (2020), Sec. 7)."""
    v_a = np.logspace(1, 8, 8)
    k = keyrate.asymptotic_rate(v_a, t, 0.0, 1.0, detection="homodyne",
                                detector="untrusted").k_raw
    half = 0.5 * keyrate.plob_bound(t)
    assert np.all(np.diff(k) > 0) and np.all(k < half)
    assert abs(k[-1] / half - 1) < 1e-6
    assert abs(k[0] / half - 1) > 1e-3  # the limit is approached, not reached at once


def test_ideal_heterodyne_pure_loss_beats_homodyne_but_not_plob() -> None:
    t = np.array([0.9, 0.5, 0.1, 1e-2])
    kw = {"detector": "untrusted"}
    het = keyrate.asymptotic_rate(1e6, t, 0.0, 1.0, detection="heterodyne", **kw).k
    hom = keyrate.asymptotic_rate(1e6, t, 0.0, 1.0, detection="homodyne", **kw).k
    assert np.all(het > hom) and np.all(het < keyrate.plob_bound(t))


def test_noiseless_full_transmission_gives_eve_nothing() -> None:
    for det in ("homodyne", "heterodyne"):
        r = keyrate.asymptotic_rate(4.0, 1.0, 0.0, 1.0, detection=det, detector="untrusted")
        assert r.chi_be == pytest.approx(0.0, abs=1e-12)
        expect = (1.0 if det == "heterodyne" else 0.5) * math.log2(1 + (4 / 2 if det ==
                                                                       "heterodyne" else 4))
        assert r.i_ab == pytest.approx(expect, rel=1e-14)


@pytest.mark.parametrize(("detection", "detector"), CASES)
def test_rate_never_exceeds_plob(detection: str, detector: str) -> None:
    g = _random_links(3000, seed=11)
    r = _rate(g, detection, detector)
    assert np.all(r.k <= keyrate.plob_bound(g["t"]))
    assert np.all(r.k_raw <= g["beta"] * r.i_ab + 1e-15) and np.all(r.chi_be >= 0)


# --- monotonicity ----------------------------------------------------------------------------

@pytest.mark.parametrize(("detection", "detector"), CASES)
def test_rate_falls_as_excess_noise_rises(detection: str, detector: str) -> None:
    g = _random_links(400, seed=2)
    xi = np.linspace(0.0, 0.3, 31)[:, None]
    k = _rate(g, detection, detector, xi=xi).k_raw
    assert np.all(np.diff(k, axis=0) < 0)


@pytest.mark.parametrize(("detection", "detector"), CASES)
def test_rate_falls_with_distance(detection: str, detector: str) -> None:
    g = _random_links(400, seed=3)
    t = keyrate.fibre_transmittance(np.linspace(0.0, 200.0, 41))[:, None]
    r = _rate(g, detection, detector, t=t)
    step = np.diff(r.k, axis=0)
    assert np.all(step <= 0)
    assert np.all(step[r.k[:-1] > 0] < 0)  # strictly while there is key
    assert np.all(np.diff(r.i_ab, axis=0) < 0)
    # (K_raw itself is not monotone where negative: it climbs back towards 0 as T -> 0)


def test_trusted_detector_never_worse_than_untrusted() -> None:
    g = _random_links(3000, seed=4)
    for det in ("homodyne", "heterodyne"):
        trusted, untrusted = _rate(g, det, "trusted"), _rate(g, det, "untrusted")
        np.testing.assert_array_equal(trusted.i_ab, untrusted.i_ab)  # same Bob statistics
        assert np.all(trusted.chi_be <= untrusted.chi_be + 1e-12)


def test_heterodyne_mutual_information_at_least_homodyne() -> None:
    g = _random_links(3000, seed=5)
    assert np.all(_rate(g, "heterodyne", "trusted").i_ab >= _rate(g, "homodyne", "trusted").i_ab)


def test_untrusted_equals_ideal_detector_on_equivalent_channel() -> None:
    """Crediting eta, v_el to Eve = ideal detector behind T' = eta T, xi' = xi + k v_el/(eta T)."""
    t, xi, eta, v_el = 0.3, 0.03, 0.6, 0.08
    for det, k in (("homodyne", 1.0), ("heterodyne", 2.0)):
        a = keyrate.asymptotic_rate(4.0, t, xi, 0.95, eta=eta, v_el=v_el, detection=det,
                                    detector="untrusted")
        b = keyrate.asymptotic_rate(4.0, eta * t, xi + k * v_el / (eta * t), 0.95,
                                    detection=det, detector="trusted")
        assert a.k_raw == pytest.approx(float(b.k_raw), rel=1e-12)


# --- edge cases and validation ---------------------------------------------------------------

EDGES = [  # v_a, t, xi, eta, v_el
    (4.0, 1.0, 0.0, 1.0, 0.0),
    (4.0, 1.0, 0.02, 0.7, 0.1),
    (4.0, 1e-12, 0.02, 0.7, 0.1),
    (4.0, 1e-12, 0.0, 1.0, 0.0),
    (4.0, 0.5, 0.0, 1.0, 0.0),
    (1e-9, 0.5, 0.0, 1.0, 0.0),
    (1e9, 0.5, 0.01, 0.5, 0.1),
    (4.0, 1e-300, 0.0, 1.0, 0.0),
]


@pytest.mark.parametrize(("detection", "detector"), CASES)
def test_edge_cases_are_finite_and_quiet(detection: str, detector: str) -> None:
    v_a, t, xi, eta, v_el = (np.array(c) for c in zip(*EDGES, strict=True))
    with np.errstate(all="raise"):
        r = keyrate.asymptotic_rate(v_a, t, xi, 0.95, eta=eta, v_el=v_el, detection=detection,
                                    detector=detector)
    for arr in (r.i_ab, r.chi_be, r.k_raw, r.k):
        assert np.all(np.isfinite(arr))
    assert np.all(r.k >= 0) and np.all(r.chi_be >= 0)
    assert np.all(r.k[[0, 4]] > 0)  # noiseless links give key


@pytest.mark.parametrize(("name", "value"), [
    ("transmittance", 0.0), ("transmittance", 1.0000001), ("transmittance", -0.1),
    ("v_a", 0.0), ("v_a", -1.0), ("eta", 0.0), ("eta", 1.5), ("v_el", -0.01),
    ("xi", -1e-3), ("beta", 0.0), ("beta", 1.01), ("xi", float("nan")),
    ("v_a", float("inf")),
])
def test_impossible_inputs_raise_naming_the_parameter(name: str, value: float) -> None:
    p = {"v_a": 4.0, "transmittance": 0.5, "xi": 0.01, "beta": 0.95, "eta": 0.7, "v_el": 0.1}
    p[name] = value
    with pytest.raises(ValueError, match=name):
        keyrate.asymptotic_rate(p["v_a"], p["transmittance"], p["xi"], p["beta"], eta=p["eta"],
                                v_el=p["v_el"])


def test_bad_enumerations_raise() -> None:
    with pytest.raises(ValueError, match="detection"):
        keyrate.asymptotic_rate(4, 0.5, 0.01, 0.95, detection="direct")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="detector"):
        keyrate.asymptotic_rate(4, 0.5, 0.01, 0.95, detector="maybe")  # type: ignore[arg-type]


def test_broadcasting_shapes() -> None:
    r = keyrate.asymptotic_rate(np.array([2.0, 4.0, 8.0])[:, None], np.array([0.1, 0.5])[None],
                                0.01, 0.95, **LINK)
    assert r.k.shape == (3, 2)
    for i, va in enumerate((2.0, 4.0, 8.0)):
        for j, t in enumerate((0.1, 0.5)):
            assert r.k[i, j] == keyrate.asymptotic_rate(va, t, 0.01, 0.95, **LINK).k
    assert keyrate.asymptotic_rate(4.0, 0.5, 0.01, 0.95).k.shape == ()


def test_plob_and_fibre() -> None:
    assert keyrate.plob_bound(0.5) == pytest.approx(1.0)
    assert np.isinf(keyrate.plob_bound(1.0))
    assert keyrate.plob_bound(1e-12) == pytest.approx(1e-12 / math.log(2), rel=1e-9)
    assert keyrate.fibre_transmittance(50.0) == pytest.approx(0.1)
    assert keyrate.fibre_transmittance(100.0, 0.16) == pytest.approx(10 ** -1.6)
    with pytest.raises(ValueError, match="distance_km"):
        keyrate.fibre_transmittance(-1.0)


# --- optimal modulation ----------------------------------------------------------------------

@pytest.mark.parametrize(("detection", "detector"), CASES)
def test_optimal_modulation_matches_brute_force(detection: str, detector: str) -> None:
    t = keyrate.fibre_transmittance(np.array([1.0, 10.0, 30.0, 60.0, 100.0]))
    kw = {"eta": 0.7, "v_el": 0.05, "detection": detection, "detector": detector}
    v_opt, best = keyrate.optimal_modulation(t, 0.01, 0.95, **kw)
    grid = np.logspace(-2, 3, 20001)[:, None]
    k_grid = keyrate.asymptotic_rate(grid, t, 0.01, 0.95, **kw).k_raw
    assert np.all(best.k_raw >= k_grid.max(axis=0) - 1e-12)
    # and the argmax agrees with the grid's to within its spacing where the peak is sharp
    interior = (v_opt > 0.011) & (v_opt < 990)
    g_arg = grid[k_grid.argmax(axis=0), 0]
    assert np.all(np.abs(np.log(v_opt[interior] / g_arg[interior])) < 0.05)
    assert np.all(best.k_raw >= keyrate.asymptotic_rate(4.0, t, 0.01, 0.95, **kw).k_raw)


# --- floating-point accuracy at tiny transmittance -------------------------------------------

def _chi_decimal(v_a: float, t: float, xi: float, eta: float, v_el: float, het: bool) -> float:
    """The closed form of chi_BE (Lodewyck/Fossier, as in docs/security-model.md) evaluated in
    80-digit decimal arithmetic, with the textbook (cancelling) expressions."""
    with decimal.localcontext() as ctx:
        ctx.prec = 80
        d = decimal.Decimal
        v_a_, t_, xi_, eta_, v_el_ = (d(x) for x in (v_a, t, xi, eta, v_el))
        v = v_a_ + 1
        chi_line = 1 / t_ - 1 + xi_
        a_ = v * v * (1 - 2 * t_) + 2 * t_ + t_ * t_ * (v + chi_line) ** 2
        b_ = t_ * t_ * (v * chi_line + 1) ** 2
        nus = [((a_ + s * (a_ * a_ - 4 * b_).sqrt()) / 2).sqrt() for s in (1, -1)]
        chi_det = (2 - eta_ + 2 * v_el_) / eta_ if het else (1 + v_el_) / eta_ - 1
        den = t_ * (v + chi_line + chi_det / t_)
        if het:
            c_ = (a_ * chi_det**2 + b_ + 1 + 2 * chi_det * (v * b_.sqrt() + t_ * (v + chi_line))
                  + 2 * t_ * (v * v - 1)) / den**2
            d_ = (v + b_.sqrt() * chi_det) ** 2 / den**2
        else:
            c_ = (v * b_.sqrt() + t_ * (v + chi_line) + a_ * chi_det) / den
            d_ = b_.sqrt() * (v + b_.sqrt() * chi_det) / den
        disc = max(c_ * c_ - 4 * d_, d(0)).sqrt()
        nus += [((c_ + s * disc) / 2).sqrt() for s in (1, -1)]

        def g(nu: decimal.Decimal) -> decimal.Decimal:
            x = (nu - 1) / 2
            return ((x + 1) * (x + 1).ln() - x * x.ln()) / d(2).ln() if x > 0 else d(0)

        return float(g(nus[0]) + g(nus[1]) - g(nus[2]) - g(nus[3]))


@pytest.mark.parametrize("het", [False, True])
@pytest.mark.parametrize("t", [1e-3, 1e-6, 1e-9, 1e-12])
def test_holevo_absolute_accuracy_at_tiny_transmittance(het: bool, t: float) -> None:
    """chi_BE ~ T here while the entropies inside it are ~1 bit: the float result must stay
    within a few ulps of 1 bit of the exact value (and so K is finite and meaningful down to
    K ~ 1e-14)."""
    for v_a, xi, eta, v_el in ((4.0, 0.02, 0.7, 0.1), (4.0, 0.0, 1.0, 0.0), (10.0, 0.05, 0.5, 0.2)):
        exact = _chi_decimal(v_a, t, xi, eta, v_el, het)
        got = keyrate.asymptotic_rate(v_a, t, xi, 1.0, eta=eta, v_el=v_el,
                                      detection="heterodyne" if het else "homodyne").chi_be
        assert abs(float(got) - exact) < 2e-14
