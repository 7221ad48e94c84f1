"""Benchmarks: captures through the drivers, pynq's DMA driver and the register/DMA model.

`register/DMA path` uses a physics that yields ready-made chunks, so it measures the overlay
model's own cost (register accesses, S2MM copies into the caller's buffer); `end to end` adds
the link model (fpga_bindings.model.link.LinkModel) producing the waveforms.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from link_double import GaussianLinkDouble  # tests/ test double of LinkPhysics

from fpga_bindings.model.link import LinkConfig, LinkModel
from fpga_bindings.model.link_api import AdcSettings
from fpga_bindings.overlay import open_model

N = 1 << 22  # complex samples per capture


class ReadyChunks(GaussianLinkDouble):
    """Yields one preallocated chunk repeatedly: no waveform generation cost."""

    def capture(self, settings: AdcSettings, chunk: int = 1 << 20) -> Iterator[np.ndarray]:
        block = np.ones((chunk, 2), np.int16)
        left = settings.n_samples
        while left:
            k = min(chunk, left)
            yield block[:k]
            left -= k


@pytest.mark.benchmark
def test_bench_capture_register_dma_path(benchmark):
    ol = open_model(physics=ReadyChunks())
    out = ol.adc_capture.capture(N).samples  # reuse the destination buffer
    cap = benchmark(lambda: ol.adc_capture.capture(N, out=out))
    assert cap.samples.shape == (N, 2) and (np.asarray(cap.samples[-5:]) == 1).all()
    benchmark.extra_info["msamples_per_s"] = N / benchmark.stats.stats.min / 1e6


@pytest.mark.benchmark
def test_bench_capture_end_to_end_link_model(benchmark):
    ol = open_model(physics=LinkModel(LinkConfig(seed=1)))
    ol.frontend.enable(laser=True, lo=True)
    ol.frontend.set_switch("SIGNAL")
    ol.frontend.set_voa_db(30.0)
    rng = np.random.default_rng(0)
    ol.dac_player.load(np.rint(rng.standard_normal((1 << 14, 2)) * 8000).astype(np.int16))
    ol.dac_player.play()
    ol.adc_capture.capture(1024)
    beat = ol.frontend.lo_status()[1]
    out = ol.adc_capture.capture(N, nco_hz=beat).samples
    cap = benchmark(lambda: ol.adc_capture.capture(N, nco_hz=beat, out=out))
    assert cap.samples.shape == (N, 2)
    benchmark.extra_info["msamples_per_s"] = N / benchmark.stats.stats.min / 1e6
