"""Benchmark of the whole link (`make bench`): `controller.link.run_link` end to end on the
model, one PA block of 2^21 symbols (8 frames of 2^18) at 5 km, as `make run` does; reports
symbols per second of processing and the stage times of both ends."""

import asyncio
import shutil

import pytest

from controller.config import config_from_dict
from controller.link import prepare_workdir, run_link

CFG = config_from_dict({"physics": {"distance_km": 5.0, "seed": 3},
                        "modulation": {"v_a": 1.5},
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
