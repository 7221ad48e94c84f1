"""pytest-benchmark: decoding one batch of the link's reconciliation operating points.

For the points `reconcile.operating_point.choose` returns at the 25 km link's SNR (0.40 per
quadrature, one 2^20-symbol frame after 10 % PE), one round decodes one decoder call of
simulated data at the point's beta and cap: 8 codewords (one group), or two frames' 16
codewords in one thread's group (lane refill). `extra_info` holds the CPU per real (all
threads), the table's predicted figure, the group passes per codeword, the errors and the load
average.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest
from mdr_frames import mdr_frames

from reconcile import operating_point
from reconcile.ldpc_decoder import Decoder

SNR = 0.4
REALS = 2 * (2**20 - math.floor(0.1 * 2**20))


def _batch(point: operating_point.OperatingPoint, seed: int, count: int = 8):
    a = point.adaptation()
    llr, words = mdr_frames(a, SNR, count, np.random.default_rng(seed))
    return a.code, llr, a.code.syndrome(words), words


@pytest.mark.benchmark(group="operating-point")
@pytest.mark.parametrize("budget,frames", [(math.inf, 4), (500.0, 1)])
def test_decode_one_batch_of_the_chosen_point(benchmark, budget, frames):
    """8 codewords per call (one group: 4 frames of 2, or one frame of 8), 2 threads."""
    point = operating_point.choose(SNR, REALS, budget, max_frames_per_batch=frames)
    assert point.frames_per_batch * point.codewords_per_frame == 8
    code, llr, syn, words = _batch(point, seed=7)
    dec = Decoder(code)
    cpu = time.process_time()
    res = benchmark.pedantic(dec.decode, args=(llr, syn), rounds=2, iterations=1,
                             kwargs={"max_iter": point.max_iter, "threads": 2})
    cpu_per_round = (time.process_time() - cpu) / 2
    errors = int(8 - np.sum(res.converged & np.all(res.bits == words, axis=1)))
    benchmark.extra_info.update({
        "point": f"{point.mother} n={point.n} n_tx={point.n_tx} beta={point.beta:.4f} "
                 f"cap={point.max_iter}",
        "cpu_ns_per_real": cpu_per_round * 1e9 / (8 * point.n_tx),
        "predicted_ns_per_real": point.decode_ns_per_real,
        "passes_of_the_group": int(res.iterations.max()),
        "errors_of_8": errors,
        "loadavg": os.getloadavg(),
    })


@pytest.mark.benchmark(group="operating-point")
def test_decode_two_frames_per_call_with_refill(benchmark):
    """The link's 25 km point (8 codewords per frame), two frames (16 codewords) per call
    decoded by one thread: the lanes refill, so the call costs ~mean passes per codeword plus
    a tail, not the slowest of each 8."""
    point = operating_point.choose(SNR, REALS, 500.0, max_frames_per_batch=2)
    words_per_call = point.frames_per_batch * point.codewords_per_frame
    code, llr, syn, words = _batch(point, seed=8, count=words_per_call)
    dec = Decoder(code)
    cpu = time.process_time()
    res = benchmark.pedantic(dec.decode, args=(llr, syn), rounds=2, iterations=1,
                             kwargs={"max_iter": point.max_iter, "threads": 1})
    cpu_per_round = (time.process_time() - cpu) / 2
    errors = int(words_per_call - np.sum(res.converged & np.all(res.bits == words, axis=1)))
    benchmark.extra_info.update({
        "point": f"{point.mother} n={point.n} n_tx={point.n_tx} beta={point.beta:.4f} "
                 f"cap={point.max_iter} codewords={words_per_call}",
        "cpu_ns_per_real": cpu_per_round * 1e9 / (words_per_call * point.n_tx),
        "predicted_ns_per_real": point.decode_ns_per_real,
        "group_passes_per_codeword": res.group_passes * 8 / words_per_call,
        "predicted_passes_per_codeword": point.source.passes_per_codeword(words_per_call),
        "errors": errors,
        "loadavg": os.getloadavg(),
    })
