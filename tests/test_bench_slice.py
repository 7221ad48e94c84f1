"""Benchmarks of slice reconciliation: Alice's exact slice LLRs (q = 4, top slice, so every
interval is summed) and a full multistage decode of 16 frames at SNR 3."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reconcile import slice_reconciliation as sr

N = 1_000_000
SNR = 3.0


@pytest.mark.benchmark
def test_bench_slice_llr(benchmark) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=N)
    b = sr.equiprobable_boundaries(4, 1 + 1 / SNR)
    lower = rng.integers(0, 2, (3, N)).astype(np.uint8)
    llr = benchmark(sr.slice_llr, x, 1 / SNR, b, 3, lower)
    assert llr.shape == (N,) and np.all(np.isfinite(llr))


@pytest.mark.benchmark
def test_bench_slice_multistage_decode(benchmark) -> None:
    plan = sr.design(SNR, 4, 384, (1.0, 0.02, 0.03, 0.05))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, plan.n_dims))
    y = x + math.sqrt(1 / SNR) * rng.standard_normal(x.shape)
    msg, _ = sr.bob_encode(plan, y, sim_rng=rng)
    res = benchmark.pedantic(
        sr.alice_decode, args=(plan, x, 1 / SNR, msg), kwargs={"threads": 2}, rounds=3
    )
    assert res.ok.mean() > 0.5
