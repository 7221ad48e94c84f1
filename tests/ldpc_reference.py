"""Slow, independent reference decoders for the LDPC decoder tests (float64, pure numpy)."""

from __future__ import annotations

import numpy as np

from reconcile.ldpc_code import LdpcCode


def layered_sum_product(
    code: LdpcCode, llr: np.ndarray, syndrome: np.ndarray, iterations: int
) -> np.ndarray:
    """Posterior LLRs (float64) after `iterations` layered passes in check order.

    Exact tanh rule in double precision, every variable kept in the graph (no folding).
    Checks are processed in index order; messages r_(c->v) start at 0.
    """
    post = np.array(llr, dtype=np.float64)
    post[code.punctured] = 0.0
    msg = np.zeros(code.edges)
    for _ in range(iterations):
        for c in range(code.m):
            lo, hi = code.check_ptr[c], code.check_ptr[c + 1]
            vs = code.var_idx[lo:hi]
            t = post[vs] - msg[lo:hi]
            th = np.tanh(t / 2.0)
            new = np.empty(hi - lo)
            for i in range(hi - lo):
                prod = np.prod(np.delete(th, i)) * (1.0 - 2.0 * syndrome[c])
                new[i] = 2.0 * np.arctanh(np.clip(prod, -1 + 1e-16, 1 - 1e-16))
            msg[lo:hi] = new
            post[vs] = t + new
    return post


def random_code(n: int, dv: int, dc: int, seed: int, name: str = "random") -> LdpcCode:
    """A random (dv, dc)-regular code (socket permutation; repeated edges cancel mod 2)."""
    rng = np.random.default_rng(seed)
    m = n * dv // dc
    sockets = np.repeat(np.arange(n), dv)
    rng.shuffle(sockets)
    h = np.zeros((m, n), np.uint8)
    for i, v in enumerate(sockets):
        h[i // dc, v] ^= 1
    h = h[h.any(axis=1)]
    return LdpcCode.from_dense(name, h)
