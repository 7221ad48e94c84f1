"""Benchmarks of the whole link (`make bench`): `controller.link.run_link` end to end on the
model; report symbols per second of processing and the stage times of both ends.

- `test_bench_link_block`: one PA block of 2^21 symbols (8 frames of 2^18) at 5 km, as
  `make run` does.
- `test_bench_link_25km_replay`: the 25 km defaults (frames of 2^20 symbols) with the model's
  waveform synthesis and capture taken out of the loop, as on a board where the DAC player and
  the ADC capture are hardware: Alice's first frame and Bob's first capture (and calibration)
  are computed once by the model, then replayed for every frame. Everything else (DSP,
  estimation, MDR encoding, decoding, verification, channel, PA, commit) runs per frame. The
  replayed frames repeat Alice's symbols: a measurement of processing speed only.
"""

import asyncio
import shutil
import time

import pytest

import controller.link as link
import controller.link_alice as link_alice
from controller.config import LinkConfig, config_from_dict
from controller.link import prepare_workdir, run_link
from controller.link_quantum import SimQuantumChannel

CFG = config_from_dict({"physics": {"distance_km": 5.0, "seed": 3},
                        "modulation": {"v_a": 1.6},  # as `make run`
                        "protocol": {"frame_symbols": 1 << 18, "block_symbols": 1 << 21}})
FRAMES = 8


@pytest.mark.benchmark
def test_bench_link_block(benchmark, tmp_path):
    def once():
        root = tmp_path / "w"
        shutil.rmtree(root, ignore_errors=True)
        return asyncio.run(run_link(CFG, prepare_workdir(CFG, root), FRAMES))

    once()  # numba caches, code construction
    report = benchmark.pedantic(once, rounds=2, iterations=1)
    s = report.summary()
    assert s["session_abort"] is None and s["keys_in_store_alice"] == s["keys_in_store_bob"]
    benchmark.extra_info.update({
        "symbols_per_s": FRAMES * (1 << 18) / benchmark.stats.stats.min,
        "secret_bits": s["secret_bits"], "stage_seconds_alice": s["stage_seconds_alice"],
        "stage_seconds_bob": s["stage_seconds_bob"]})


class ReplayChannel(SimQuantumChannel):
    """The model's first calibration and capture, returned again for every later frame."""

    def calibrate(self, n_samples):
        if not hasattr(self, "_cal"):
            self._cal = super().calibrate(n_samples)
        return self._cal

    def capture(self, em):
        if not hasattr(self, "_cap"):
            self._cap = super().capture(em)
        return self._cap


@pytest.mark.benchmark
def test_bench_link_25km_replay(benchmark, tmp_path, monkeypatch):
    cfg = LinkConfig()
    frames = 10
    first = {}
    build = link_alice.build_frame

    def build_once(tx, n, key, f):
        if "frame" not in first:
            first["frame"] = build(tx, n, key, f)
        return first["frame"]

    monkeypatch.setattr(link_alice, "build_frame", build_once)
    monkeypatch.setattr(link, "SimQuantumChannel", ReplayChannel)

    cpu = []

    def once():
        root = tmp_path / "w"
        shutil.rmtree(root, ignore_errors=True)
        t0 = time.process_time()
        report = asyncio.run(run_link(cfg, prepare_workdir(cfg, root), frames))
        cpu.append(time.process_time() - t0)
        return report

    once()  # numba caches, codes and decoders
    report = benchmark.pedantic(once, rounds=2, iterations=1)
    s = report.summary()
    assert s["session_abort"] is None and s["frames_ok"] == frames
    benchmark.extra_info.update({
        "symbols_per_s": frames * cfg.protocol.frame_symbols / benchmark.stats.stats.min,
        "process_cpu_s": [round(c, 2) for c in cpu[1:]],
        "stage_seconds_alice": s["stage_seconds_alice"],
        "stage_seconds_bob": s["stage_seconds_bob"]})
