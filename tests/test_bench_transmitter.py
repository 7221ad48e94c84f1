"""CPU cost of Alice's waveform synthesis, `dsp.transmitter.build_frame` (pytest-benchmark;
`make bench`): one default frame of 2^20 symbols (500 MS/s, 5 samples/symbol), and its
ChaCha20 -> Box-Muller part alone. Figures in docs/performance.md ("Link model" and synthesis)."""

from __future__ import annotations

import time

import pytest

from dsp.csprng_gauss import gaussian_symbols
from dsp.transmitter import TxConfig, build_frame

N = 1 << 20
KEY = bytes(range(32))


def _timed(fn, cpu: list[float]):
    t0 = time.process_time()
    out = fn()
    cpu.append(time.process_time() - t0)
    return out


@pytest.mark.benchmark(group="transmitter")
def test_bench_build_frame(benchmark):
    cfg = TxConfig()
    build_frame(cfg, 1000, KEY, 0)  # compile / load the kernels
    cpu: list[float] = []
    frame = benchmark.pedantic(_timed, args=(lambda: build_frame(cfg, N, KEY, 1), cpu),
                               rounds=5, iterations=1)
    assert frame.symbols.size == N and frame.meta["clipped_components"] == 0
    benchmark.extra_info["cpu_s_min"] = min(cpu)
    benchmark.extra_info["cpu_us_per_symbol_min"] = min(cpu) / N * 1e6


@pytest.mark.benchmark(group="transmitter")
def test_bench_gaussian_symbols(benchmark):
    cpu: list[float] = []
    s = benchmark.pedantic(_timed, args=(lambda: gaussian_symbols(KEY, 1, N, 4.0), cpu),
                           rounds=5, iterations=1)
    assert s.size == N
    benchmark.extra_info["cpu_s_min"] = min(cpu)
