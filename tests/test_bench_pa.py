"""Privacy-amplification throughput (pytest-benchmark) and the `cvqkd bench pa` command."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from controller.cli import main
from controller.commands.bench_pa import link_output_bits
from reconcile import privacy_amp as pa

N_BENCH = 10**7
RATIO = 0.10  # conservative: the default 25 km link needs 0.03-0.045 (docs/performance.md)


@pytest.mark.benchmark
def test_bench_toeplitz_hash_1e7_bits(benchmark):
    n, m = N_BENCH, int(RATIO * N_BENCH)
    key = os.urandom(n // 8)
    seed = pa.new_seed(n, m)
    out = benchmark(pa.hash_packed, key, n, seed, m)
    assert len(out) == m // 8
    # one more run timed on the thread's CPU clock: the one-core figure on a shared machine
    c0 = time.thread_time()
    assert pa.hash_packed(key, n, seed, m) == out
    benchmark.extra_info["mbit_per_cpu_s"] = n / (time.thread_time() - c0) / 1e6
    benchmark.extra_info["load_average"] = os.getloadavg()[0]
    # the output of a uniform key is balanced (10^6 bits: 5 sigma = 2500)
    ones = int(np.unpackbits(np.frombuffer(out, np.uint8)).sum())
    assert abs(ones - m / 2) < 5 * np.sqrt(m / 4)


def test_cli_reports_throughput_as_json(capsys):
    assert main(["bench", "pa", "--bits", "200000", "--ratio", "0.05", "--repeat", "1",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_bits"] == 200_000 and res["m_bits"] == 10_000
    assert res["mbit_per_s"] == pytest.approx(res["n_bits"] / res["seconds"] / 1e6)
    assert res["kernel"] in pa.available_kernels() and res["family"] == "modified-toeplitz"
    assert res["scratch_bytes"] > 0


def test_cli_text_output_and_kernels(capsys):
    for kernel in pa.available_kernels():
        assert main(["bench", "pa", "--bits", "65536", "--kernel", kernel, "--family",
                     "toeplitz", "--repeat", "1"]) == 0
        assert "Mbit/s" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["--bits", "12.5"], ["--bits", "10"], ["--bits", "inf"], ["--bits", "nan"],
    ["--bits", "1e7", "--ratio", "0"], ["--bits", "1e7", "--ratio", "nan"],
    ["--bits", "1e7", "--ratio", "1.5"], ["--bits", "1e5", "--repeat", "0"],
    ["--bits", "1e5", "--distance-km", "-3"],
    ["--bits", "1e5", "--distance-km", "25"],  # too short a block for any key
])
def test_cli_rejects_bad_input(argv, capsys):
    assert main(["bench", "pa", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err


def test_link_output_length_of_a_25_km_link():
    """2 x 10^8 reconciled bits (10^8 key symbols): the LGG rate of the default link leaves an
    output/input ratio of about 0.03-0.045 (asymptotic rate / 2 bits per symbol = 0.044)."""
    n = 2 * 10**8
    m = link_output_bits(n, 25.0)
    assert 0.02 * n < m < 0.045 * n
    assert link_output_bits(n, 30.0) < m  # further: less key
