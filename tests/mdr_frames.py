"""Test-only reconciliation data: Bob's random words MDR-encoded (d = 8) on simulated Gaussian
data, and Alice's decoder LLRs, for one adapted code at a given SNR per real dimension."""

from __future__ import annotations

import math

import numpy as np

from reconcile import mdr, rate_adapt
from reconcile.rate_adapt import Adaptation


def mdr_frames(a: Adaptation, snr: float, count: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray]:
    """(llr float32 (count, n), words uint8 (count, n)): per codeword, Bob's word (random
    free bits, shortened bits 0), x ~ N(0, 1), y = x + z with Var(z) = 1/snr, Bob's MDR message
    from y and Alice's LLRs from x (punctured 0, shortened +inf)."""
    code = a.code
    words = np.empty((count, code.n), np.uint8)
    llr = np.empty((count, code.n), np.float32)
    for i in range(count):
        words[i] = rate_adapt.bob_word(a, rng.integers(0, 2, code.n - a.shortened))
        x = rng.normal(size=a.transmitted.size)
        y = x + rng.normal(scale=math.sqrt(1 / snr), size=x.size)
        alpha, norms = mdr.bob_encode(y, words[i, a.transmitted], 8)
        llr[i] = rate_adapt.alice_llr(a, mdr.alice_llr(x, alpha, norms, 8, 1 / snr))
    return llr, words
