"""Benchmarks: one link frame's capture through the overlay drivers (controller.link_quantum)
against the same link-model calls made directly, at the default frame (2^20 symbols at 100
MBd: 5.25e6 DAC samples, 5.27e6 capture samples). `driver layer` runs the driver path over a
physics that does no work (ready-made chunks), so it measures what the drivers, pynq's MMIO and
DMA classes and the register/DMA model add per frame: the waveform load (staging + MM2S), the
registers, the S2MM copies into the capture buffer."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

from controller.config import LinkConfig
from controller.link_quantum import GUARD_S, Emission, SimQuantumChannel, model_config, voa_for
from dsp.transmitter import TxConfig, build_frame
from fpga_bindings.model.link import LinkModel
from fpga_bindings.model.link_api import AdcSettings, FrontEnd, LinkStatus
from fpga_bindings.overlay import open_model

pytestmark = pytest.mark.benchmark


class NoWorkPhysics:
    """A LinkPhysics that does no work: captures are one ready-made chunk repeated."""

    def __init__(self) -> None:
        self._block = np.ones((1 << 20, 2), np.int16)

    def load_dac(self, iq: np.ndarray, cyclic: bool) -> None:
        """The waveform arrives (after the staging buffer and the MM2S DMA) and is dropped."""

    def set_frontend(self, frontend: FrontEnd) -> None:
        """No optics."""

    def advance(self, seconds: float) -> None:
        """No model time."""

    def capture(self, settings: AdcSettings, chunk: int = 1 << 20) -> Iterator[np.ndarray]:
        left = settings.n_samples
        while left:
            k = min(chunk, left, len(self._block))
            yield self._block[:k]
            left -= k

    def status(self) -> LinkStatus:
        return LinkStatus(lo_locked=True, beat_hz=1e9, monitor_power_w=1e-6, clip_count=0,
                          overflow=False, trigger_sample=0)

    def inject(self, fault: str, **params: float) -> None:
        raise ValueError("no faults")

    def clear_faults(self) -> None:
        """Nothing injected."""


@pytest.fixture(scope="module")
def setup() -> tuple[LinkConfig, Emission]:
    cfg = LinkConfig()
    mcfg = model_config(cfg)
    tx = TxConfig(sample_rate_hz=mcfg.player_sps, symbol_rate_hz=cfg.modulation.symbol_rate_hz,
                  v_a=cfg.modulation.v_a, dac_bits=mcfg.profile.dac_bits)
    fr = build_frame(tx, cfg.protocol.frame_symbols, os.urandom(32), 0)
    return cfg, Emission(0, fr.iq_int16, fr.meta["quad_per_lsb"], fr.meta)


def _record(benchmark, n_samples: int) -> None:
    benchmark.extra_info["capture_samples"] = n_samples
    benchmark.extra_info["load_avg_1min"] = os.getloadavg()[0]


def test_bench_frame_driver_layer(benchmark, setup) -> None:
    cfg, em = setup
    qc = SimQuantumChannel(cfg, overlay=open_model(physics=NoWorkPhysics()))
    qc.capture(em)  # the player model's buffer has grown to a frame
    cap = benchmark.pedantic(qc.capture, args=(em,), rounds=5, iterations=1)
    assert cap.iq.shape == (qc.capture_samples(em), 2) and cap.status.lo_locked
    _record(benchmark, cap.iq.shape[0])


def test_bench_frame_through_drivers(benchmark, setup) -> None:
    cfg, em = setup
    qc = SimQuantumChannel(cfg)
    qc.capture(em)
    cap = benchmark.pedantic(qc.capture, args=(em,), rounds=5, iterations=1)
    _record(benchmark, cap.iq.shape[0])


def test_bench_frame_direct_model_calls(benchmark, setup) -> None:
    cfg, em = setup
    mcfg = model_config(cfg)
    model = LinkModel(mcfg)
    n = SimQuantumChannel(cfg).capture_samples(em)
    settings = AdcSettings(n_samples=n, nco_hz=mcfg.if_hz,
                           decimation=mcfg.profile.default_decimation)

    def capture() -> np.ndarray:
        model.set_frontend(FrontEnd(voa_db=voa_for(em, mcfg.dac_fs_snu)))
        model.load_dac(em.iq, cyclic=False)
        model.advance(mcfg.delay_s - GUARD_S)
        out = np.empty((n, 2), np.int16)
        pos = 0
        for chunk in model.capture(settings):
            out[pos:pos + len(chunk)] = chunk
            pos += len(chunk)
        return out

    out = benchmark.pedantic(capture, rounds=5, iterations=1)
    assert out.shape == (n, 2)
    _record(benchmark, n)
