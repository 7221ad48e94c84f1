"""Throughput of the link model (pytest-benchmark; `make bench`). Target: >= 20 M complex
samples/s per core (docs/performance.md)."""

from __future__ import annotations

import time

import pytest
from model_support import waveform

from fpga_bindings.model.link import LinkConfig, LinkModel
from fpga_bindings.model.link_api import AdcSettings, FrontEnd, OpticalSwitch
from fpga_bindings.model.simple_tx import required_voa_db

N = 1 << 22


def _model(ppm: float, switch: OpticalSwitch) -> tuple[LinkModel, AdcSettings]:
    cfg = LinkConfig(seed=1, clock_ppm=ppm)
    model = LinkModel(cfg)
    wf = waveform(cfg, 100_000, pilot_snu=3.0)
    model.load_dac(wf.iq, cyclic=True)
    model.set_frontend(FrontEnd(switch=switch,
                                voa_db=required_voa_db(wf.quad_per_lsb, cfg.dac_fs_snu)))
    settings = AdcSettings(n_samples=N, nco_hz=cfg.if_hz, decimation=8)
    for _ in model.capture(AdcSettings(n_samples=4096, nco_hz=cfg.if_hz)):  # compile, warm
        pass
    return model, settings


def _drain(model: LinkModel, settings: AdcSettings, cpu: list[float]) -> int:
    t0 = time.process_time()
    total = 0
    for chunk in model.capture(settings):
        total += len(chunk)
    cpu.append(time.process_time() - t0)
    return total


@pytest.mark.benchmark(group="link-model")
@pytest.mark.parametrize("ppm,switch", [(2.0, OpticalSwitch.SIGNAL), (50.0, OpticalSwitch.SIGNAL),
                                        (0.0, OpticalSwitch.BLOCKED)])
def test_bench_capture_heterodyne_ddc(benchmark, ppm, switch):
    model, settings = _model(ppm, switch)
    cpu: list[float] = []
    total = benchmark.pedantic(_drain, args=(model, settings, cpu), rounds=5, iterations=1)
    assert total == N
    benchmark.extra_info["samples"] = N
    benchmark.extra_info["msps_wall_at_min"] = N / benchmark.stats.stats.min / 1e6
    benchmark.extra_info["msps_cpu_at_min"] = N / min(cpu) / 1e6  # CPU time: load-independent
