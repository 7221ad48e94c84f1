"""Slow pure-numpy sum-product syndrome decoder: the reference for small codes in tests.

Flooding schedule, float64, tanh rule; checks see their syndrome bit as a sign flip
(1 - 2 s_c). Not for production: the C decoder (reconcile.ldpc_decoder) is.
"""

from __future__ import annotations

import numpy as np

from reconcile.ldpc_code import LdpcCode


def decode(
    code: LdpcCode, llr: np.ndarray, syndrome: np.ndarray, max_iter: int = 200
) -> tuple[np.ndarray, bool, int]:
    """Decode one frame: returns (bits uint8, converged, iterations). LLR > 0 means bit 0."""
    llr = np.asarray(llr, dtype=np.float64)
    syndrome = np.asarray(syndrome, dtype=np.uint8)
    rows = np.repeat(np.arange(code.m), code.check_degrees())
    cols = code.var_idx
    sign_s = (1.0 - 2.0 * syndrome.astype(np.float64))
    v2c = llr[cols].copy()
    c2v = np.zeros_like(v2c)
    bits = (llr < 0).astype(np.uint8)
    if np.array_equal(code.syndrome(bits), syndrome):
        return bits, True, 0
    for it in range(1, max_iter + 1):
        t = np.tanh(np.clip(v2c, -40, 40) / 2.0)
        neg = t < 0
        mag = np.maximum(np.abs(t), 1e-300)
        log_all = np.bincount(rows, weights=np.log(mag), minlength=code.m)
        neg_all = np.bincount(rows, weights=neg.astype(np.float64), minlength=code.m) % 2
        prod = np.exp(log_all[rows] - np.log(mag))
        sgn = np.where((neg_all[rows] + neg) % 2 == 1, -1.0, 1.0) * sign_s[rows]
        c2v = 2.0 * np.arctanh(np.clip(sgn * prod, -1 + 1e-15, 1 - 1e-15))
        post = llr + np.bincount(cols, weights=c2v, minlength=code.n)
        bits = (post < 0).astype(np.uint8)
        if np.array_equal(code.syndrome(bits), syndrome):
            return bits, True, it
        v2c = post[cols] - c2v
    return bits, False, max_iter
