"""`cvqkd bench ldpc`, and pytest-benchmark measurements of the LDPC decoder's speed.

Speed figures (`make bench`) are per edge of H per layered pass per frame: frames that never
converge (noise-only LLRs, random syndromes) run exactly `ITERATIONS` passes. Besides the wall
time, `extra_info` holds the CPU time per edge-iteration (all threads together), which a shared,
overloaded machine distorts much less.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from controller import cli
from controller.commands import bench_ldpc
from reconcile import ldpc_decoder as ld
from reconcile.standard_codes import standard_code

ITERATIONS = 10


def _run_json(capsys, *argv: str) -> dict:
    assert cli.main(["bench", "ldpc", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_bench_reports_fields_and_decodes_above_threshold_d1(capsys):
    rep = _run_json(
        capsys,
        "--code",
        "5gnr_bg2_z64",
        "--beta",
        "0.6",
        "--dim",
        "1",
        "--frames",
        "8",
        "--seed",
        "3",
    )
    code = standard_code("5gnr_bg2_z64")
    assert rep["code"]["family"] == "standard"
    assert rep["code"]["n"] == code.n and rep["code"]["k"] == code.k
    assert rep["code"]["edges"] == code.edges
    assert rep["beta"] == pytest.approx(0.6)
    assert rep["snr"] == pytest.approx(2 ** (2 * code.rate / 0.6) - 1)
    assert rep["fer"] == 0.0 and rep["undetected_errors"] == 0
    assert 0 < rep["avg_iterations"] < 200
    assert rep["mbps"] > 0 and rep["ns_per_edge_iteration"] > 0


def test_bench_d8_path_decodes_and_fails_gracefully_near_capacity(capsys):
    good = _run_json(capsys, "--code", "dvbs2_short_r1_3", "--beta", "0.7", "--frames", "8")
    assert good["dim"] == 8 and good["fer"] == 0.0
    bad = _run_json(
        capsys, "--code", "dvbs2_short_r1_3", "--beta", "0.995", "--frames", "8", "--max-iter", "20"
    )
    assert bad["fer"] == 1.0 and bad["avg_iterations"] == 20.0
    assert bad["undetected_errors"] == 0


def test_bench_uses_met_codes_at_low_rate(capsys):
    met = bench_ldpc._met()
    if met is None or "met_r0.02" not in met.specs():
        pytest.skip("MET code family not available")
    # beta 0.7: far from this short code's waterfall, so FER 0 does not hinge on its design
    rep = _run_json(capsys, "--rate", "0.02", "--beta", "0.7", "--n", "20000", "--frames", "8")
    assert rep["code"]["family"] == "met" and rep["code"]["n"] == 20000
    assert rep["code"]["edges_scheduled"] < rep["code"]["edges"]  # degree-one nodes folded
    assert rep["fer"] == 0.0 and rep["dim"] == 8


def test_text_output(capsys):
    assert (
        cli.main(
            [
                "bench",
                "ldpc",
                "--code",
                "5gnr_bg2_z64",
                "--beta",
                "0.5",
                "--dim",
                "2",
                "--frames",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    for key in (
        "code: 5gnr_bg2_z64",
        "beta:",
        "fer:",
        "avg_iterations:",
        "mbps:",
        "ns_per_edge_iteration:",
    ):
        assert key in out


def test_code_choice():
    code, family = bench_ldpc.choose_code(0.5, None, None)
    assert (code.name, family) == ("5gnr_bg2_z384_rows12", "standard")
    code, family = bench_ldpc.choose_code(0.3, None, None)
    assert family == "standard" and abs(code.rate - 0.3) < 0.02
    met = bench_ldpc._met()
    if met is not None and met.specs():
        spec = met.for_rate(0.02)
        if abs(spec.rate - 0.02) <= 0.002:
            code, family = bench_ldpc.choose_code(0.02, None, 40_000)
            assert family == "met" and code.rate == pytest.approx(spec.rate, rel=1e-6)
            assert code.n == met.nearest_n(spec.name, 40_000)


@pytest.mark.parametrize(
    "argv",
    [
        ["--rate", "0.5", "--beta", "0"],
        ["--rate", "0.5", "--beta", "1.2"],
        ["--rate", "1.5", "--beta", "0.9"],
        ["--beta", "0.9"],
        ["--code", "no_such_code", "--beta", "0.9"],
        ["--rate", "0.5", "--beta", "0.9", "--frames", "0"],
        ["--rate", "0.5", "--beta", "0.9", "--threads", "0"],
        ["--rate", "0.5", "--beta", "0.9", "--dim", "3"],
        ["--rate", "x", "--beta", "0.9"],
    ],
)
def test_bad_arguments_exit_2_without_traceback(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(cli.main(["bench", "ldpc", *argv]))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1


def _never_converging(code, frames: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    llr = (0.3 * rng.standard_normal((frames, code.n))).astype(np.float32)
    syn = rng.integers(0, 2, (frames, code.m), dtype=np.uint8)
    return llr, syn


def _speed(benchmark, code, frames: int, threads: int, simd: str = "auto") -> None:
    dec = ld.Decoder(code)
    llr, syn = _never_converging(code, frames)
    res = benchmark.pedantic(
        dec.decode,
        args=(llr, syn),
        kwargs={"max_iter": ITERATIONS, "threads": threads, "simd": simd},
        rounds=3,
        iterations=1,
        warmup_rounds=1,
    )
    assert np.all(res.iterations == ITERATIONS)
    work = code.edges * frames * ITERATIONS
    cpu = time.process_time()
    dec.decode(llr, syn, max_iter=ITERATIONS, threads=threads, simd=simd)
    benchmark.extra_info["cpu_ns_per_edge_iteration"] = (time.process_time() - cpu) * 1e9 / work
    benchmark.extra_info["code"] = code.name
    benchmark.extra_info["simd"] = ld.simd_level() if simd == "auto" else simd
    benchmark.extra_info["ns_per_edge_iteration_wall"] = benchmark.stats.stats.min * 1e9 / work
    benchmark.extra_info["per_core"] = benchmark.stats.stats.min * 1e9 * threads / work
    with open("/proc/loadavg") as f:
        benchmark.extra_info["loadavg"] = f.read().split()[:3]


@pytest.mark.benchmark(group="ldpc-decoder")
@pytest.mark.parametrize("threads", [1, 2])
def test_speed_dvbs2_normal_r1_2(benchmark, threads):
    _speed(benchmark, standard_code("dvbs2_normal_r1_2"), 16, threads)


@pytest.mark.benchmark(group="ldpc-decoder")
@pytest.mark.parametrize("simd", ["portable", "avx2"])
def test_speed_simd_paths(benchmark, simd):
    if ld.SIMD_PATHS[simd] > ld.SIMD_PATHS[ld.simd_level()]:
        pytest.skip(f"no {simd} on this CPU")
    _speed(benchmark, standard_code("dvbs2_normal_r1_2"), 16, 1, simd)


@pytest.mark.benchmark(group="ldpc-decoder")
@pytest.mark.parametrize("threads", [1, 2])
def test_speed_met_rate_002(benchmark, threads):
    met = bench_ldpc._met()
    if met is None or "met_r0.02" not in met.specs():
        pytest.skip("MET code family not available")
    n = met.nearest_n("met_r0.02", 200_000)
    _speed(benchmark, met.get_code("met_r0.02", n), 16, threads)
