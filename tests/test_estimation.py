"""Parameter estimation against simulated Gaussian channels (fixed seeds)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from reconcile import estimation
from reconcile.estimation import estimate_channel, worst_case_parameters

ETA, VEL, T_TRUE, XI_TRUE, VA = 0.7, 0.1, 0.316, 0.02, 4.0


def simulate(rng: np.random.Generator, n: int, detection: str, T: float = T_TRUE,
             xi: float = XI_TRUE) -> tuple[np.ndarray, np.ndarray]:
    """n symbols through the trusted-detector channel model, SNU (see estimation docstring)."""
    if detection == "homodyne":
        x = rng.normal(0.0, np.sqrt(VA), n)
        z = rng.normal(0.0, np.sqrt(1 + VEL + ETA * T * xi), n)
        return x, np.sqrt(ETA * T) * x + z
    x = rng.normal(0.0, np.sqrt(VA), (n, 2)) @ np.array([1, 1j])
    z = rng.normal(0.0, np.sqrt(1 + VEL + ETA * T * xi / 2), (n, 2)) @ np.array([1, 1j])
    return x, np.sqrt(ETA * T / 2) * x + z


@pytest.mark.parametrize("detection", ["homodyne", "heterodyne"])
def test_matches_least_squares_fit(detection: str) -> None:
    """T and xi equal an independent least-squares fit computed with numpy.linalg."""
    x, y = simulate(np.random.default_rng(1), 5000, detection)
    xr = np.column_stack([x.real, x.imag]).ravel() if detection == "heterodyne" else x
    yr = np.column_stack([y.real, y.imag]).ravel() if detection == "heterodyne" else y
    (t,), res, *_ = np.linalg.lstsq(xr[:, None], yr, rcond=None)
    sigma2 = res[0] / (xr.size - 1)
    k = 2.0 if detection == "heterodyne" else 1.0
    est = estimate_channel(x, y, eta=ETA, v_el=VEL, detection=detection)
    assert est.m == xr.size
    assert est.transmittance == pytest.approx(k * t * t / ETA, rel=1e-12)
    assert est.excess_noise == pytest.approx(k * (sigma2 - 1 - VEL) / (ETA * est.transmittance),
                                             rel=1e-9)
    assert est.snr == pytest.approx(t * t * np.mean(xr**2) / sigma2, rel=1e-12)


@pytest.mark.parametrize("detection", ["homodyne", "heterodyne"])
def test_unbiased(detection: str) -> None:
    """Across 200 independent blocks the mean estimates agree with the truth within 4 standard
    errors (standard error measured from the spread of the blocks themselves)."""
    rng = np.random.default_rng(2 if detection == "homodyne" else 3)
    ests = [estimate_channel(*simulate(rng, 20000, detection), eta=ETA, v_el=VEL,
                             detection=detection) for _ in range(200)]
    for name, truth in (("transmittance", T_TRUE), ("excess_noise", XI_TRUE)):
        vals = np.array([getattr(e, name) for e in ests])
        se = vals.std(ddof=1) / np.sqrt(vals.size)
        assert abs(vals.mean() - truth) < 4 * se, (name, vals.mean(), truth, se)


@pytest.mark.parametrize("detection", ["homodyne", "heterodyne"])
def test_worst_case_bounds_hold_with_promised_confidence(detection: str) -> None:
    """P(T_min > T or xi_max < xi) <= eps_PE: checked over 3000 blocks at eps_PE = 0.05 with a
    3-sigma binomial allowance, and the bounds are not vacuous (both violate sometimes)."""
    eps, trials = 0.05, 3000
    rng = np.random.default_rng(4 if detection == "homodyne" else 5)
    t_viol = xi_viol = either = 0
    for _ in range(trials):
        e = estimate_channel(*simulate(rng, 2000, detection), eta=ETA, v_el=VEL,
                             detection=detection, eps_pe=eps)
        tv, xv = e.transmittance_min > T_TRUE, e.excess_noise_max < XI_TRUE
        t_viol += tv
        xi_viol += xv
        either += tv or xv
    allowance = 3 * np.sqrt(eps * (1 - eps) / trials)
    assert either / trials <= eps + allowance
    assert t_viol > 0 and xi_viol > 0  # the bounds are tight enough to fail sometimes


def test_worst_case_formula_and_edges() -> None:
    """LGG formulas by hand at one point; t_min <= 0 certifies nothing; broadcasting."""
    t, s2, m, z = 0.4, 1.2, 1e6, estimation.confidence_z(1e-10)
    T_min, xi_max = worst_case_parameters(t, s2, m, VA, ETA, VEL, 1e-10, "homodyne")
    t_min = t - z * np.sqrt(s2 / (m * VA))
    s2_max = s2 + z * s2 * np.sqrt(2 / m)
    assert T_min == pytest.approx(t_min**2 / ETA, rel=1e-14)
    assert xi_max == pytest.approx((s2_max - 1 - VEL) / (ETA * t_min**2 / ETA), rel=1e-12)
    T_min, xi_max = worst_case_parameters([0.4, 1e-6], 1.2, 100, VA, ETA, VEL, 1e-10,
                                          "heterodyne")
    assert T_min.shape == (2,) and T_min[1] == 0.0 and np.isinf(xi_max[1])
    assert np.isfinite(xi_max[0]) and 0 < T_min[0] < 1
    assert estimation.confidence_z(0.05) == pytest.approx(1.959963984540054, rel=1e-12)


def test_chunked_accumulation_and_dtypes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk boundaries and single-precision inputs do not change the result."""
    x, y = simulate(np.random.default_rng(6), 10007, "heterodyne")
    ref = estimate_channel(x, y, eta=ETA, v_el=VEL, detection="heterodyne")
    monkeypatch.setattr(estimation, "_CHUNK", 999)
    chunked = estimate_channel(x, y, eta=ETA, v_el=VEL, detection="heterodyne")
    assert chunked.transmittance == pytest.approx(ref.transmittance, rel=1e-12)
    single = estimate_channel(x.astype(np.complex64), y.astype(np.complex64), eta=ETA,
                              v_el=VEL, detection="heterodyne")
    assert single.excess_noise == pytest.approx(ref.excess_noise, abs=1e-5)


def test_no_copy_of_large_inputs() -> None:
    """Peak extra memory stays at a few chunks, far below the size of the inputs."""
    x, y = simulate(np.random.default_rng(7), 1 << 21, "heterodyne")  # 2 x 32 MiB
    x, y = x.astype(np.complex64), y.astype(np.complex64)  # 2 x 16 MiB
    tracemalloc.start()
    estimate_channel(x, y, eta=ETA, v_el=VEL, detection="heterodyne")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 * estimation._CHUNK * 8 + (1 << 20)  # two float64 chunk copies + slack


@pytest.mark.parametrize(
    ("x", "y", "kwargs", "msg"),
    [
        (np.ones(3), np.ones(4), {}, "differ in size"),
        (np.array([1.0, np.nan]), np.ones(2), {}, "non-finite"),
        (np.ones(3), np.ones(3), {"detection": "bogus"}, "detection"),
        (np.zeros(3), np.ones(3), {}, "non-zero x"),
        (np.arange(1.0, 4.0), 2 * np.arange(1.0, 4.0), {}, "noiseless"),
    ],
)
def test_bad_input(x: np.ndarray, y: np.ndarray, kwargs: dict, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        estimate_channel(x, y, **{"eta": ETA, "v_el": VEL, "detection": "homodyne", **kwargs})
