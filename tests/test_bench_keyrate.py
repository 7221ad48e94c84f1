"""Benchmark: vectorised asymptotic key rate, parameter points per second (one core: numpy's
element-wise ufuncs are single-threaded). Target >= 10^6 points/s (issue 2)."""

from __future__ import annotations

import numpy as np
import pytest

from reconcile import keyrate

N_POINTS = 1_000_000
TARGET_POINTS_PER_S = 1e6


@pytest.mark.benchmark
@pytest.mark.parametrize(("detection", "detector"), [
    ("heterodyne", "trusted"), ("homodyne", "trusted"), ("heterodyne", "untrusted"),
])
def test_bench_asymptotic_rate(benchmark, detection: str, detector: str) -> None:
    rng = np.random.default_rng(0)
    v_a = rng.uniform(1.0, 20.0, N_POINTS)
    t = keyrate.fibre_transmittance(rng.uniform(0.0, 150.0, N_POINTS))
    xi = rng.uniform(0.0, 0.1, N_POINTS)
    eta = rng.uniform(0.5, 0.9, N_POINTS)
    v_el = rng.uniform(0.0, 0.2, N_POINTS)
    result = benchmark(keyrate.asymptotic_rate, v_a, t, xi, 0.95, eta=eta, v_el=v_el,
                       detection=detection, detector=detector)
    assert result.k.shape == (N_POINTS,) and np.all(np.isfinite(result.k_raw))
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None when run with --benchmark-disable (the default test run)
        rate = N_POINTS / stats.stats.min
        benchmark.extra_info["points_per_second"] = rate
        assert rate >= TARGET_POINTS_PER_S
