"""Benchmarks of the reconciliation pieces around the decoder: MDR (d = 8) on 10^6 samples,
the verification hash of a 10^6-bit frame, building the 10^6-variable rate-0.02 MET code."""

from __future__ import annotations

import numpy as np
import pytest

from reconcile import ldpc_construct, mdr, met_codes, verify

N = 1_000_000


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=N)
    y = x + rng.normal(scale=6.0, size=N)
    bits = rng.integers(0, 2, N).astype(np.uint8)
    return x, y, bits


@pytest.mark.benchmark
def test_bench_mdr_bob_encode(benchmark, data) -> None:
    _, y, bits = data
    alpha, norms = benchmark(mdr.bob_encode, y, bits, 8)
    assert alpha.shape == (N,) and norms.shape == (N // 8,)


@pytest.mark.benchmark
def test_bench_mdr_alice_llr(benchmark, data) -> None:
    x, y, bits = data
    alpha, norms = mdr.bob_encode(y, bits, 8)
    llr = benchmark(mdr.alice_llr, x, alpha, norms, 8, 36.0)
    assert llr.dtype == np.float32 and llr.shape == (N,)


@pytest.mark.benchmark
def test_bench_verify_tag(benchmark, data) -> None:
    bits = data[2]
    t = benchmark(verify.tag, bytes(range(8)), bits)
    assert len(t) == 8


@pytest.mark.benchmark
def test_bench_build_met_code(benchmark) -> None:
    s = met_codes.spec("met_r0.02")
    code = benchmark(ldpc_construct.build, s.ensemble, N, s.seed)
    assert code.n == N and code.edges > 3_000_000
