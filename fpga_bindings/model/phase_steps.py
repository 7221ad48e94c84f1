"""Per-sample laser phase steps whose random walk has the UNALIASED Wiener spectrum.

A Wiener phase sampled every output sample (white steps of variance q = 2 pi linewidth / fs)
has the power spectrum q / (4 sin^2(pi f)) (f in cycles per sample): the sum over every
Nyquist zone of the continuous q / (2 pi f)^2, so a strong tone's Lorentzian skirt reads
(pi f / sin(pi f))^2 too high (1.75x at f = 0.4). A receiver's decimation filter removes the
phase noise beyond its pass band before sampling, so the band-limited phase is the right one:
its steps have the spectrum q |sin(pi f) / (pi f)|^2, i.e. white steps through a filter with
amplitude response sinc(f) on |f| <= 1/2. Then the walk has q sinc^2(f) / (4 sin^2(pi f))
= q / (2 pi f)^2 exactly (docs/model.md, "Beat phase").

`STEP_TAPS` is that filter: a symmetric FIR of 2 M + 1 taps fitted by least squares to sinc(f)
on [0, 0.47] (weight 1) and (0.47, 0.5] (weight 0.05), scaled to unit DC gain (so the long-term
diffusion is unchanged). The walk's spectrum is within 0.3 % of q / (2 pi f)^2 up to 0.45
cycles per sample, 1 % up to 0.47 and 5 % up to 0.49 (tests/test_model_phase_noise.py).
"""

from __future__ import annotations

import numba
import numpy as np

STEP_M = 8  # the filter has 2 STEP_M + 1 taps


def step_taps(m: int = STEP_M) -> np.ndarray:
    """The symmetric FIR (float32, 2 m + 1 taps) whose response approximates sinc(f), DC 1."""
    f = np.linspace(0.0, 0.5, 4001)
    k = np.arange(m + 1)
    basis = np.cos(2.0 * np.pi * np.outer(f, k))
    basis[:, 1:] *= 2.0
    w = np.where(f <= 0.47, 1.0, 0.05)
    a = np.linalg.lstsq(basis * w[:, None], np.sinc(f) * w, rcond=None)[0]
    a /= (basis @ a)[0]
    return np.concatenate([a[:0:-1], a]).astype(np.float32)


STEP_TAPS = step_taps()


_BLOCK = 1024  # outputs per pass over the taps (they stay in L1)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _colour(u: np.ndarray, tail: np.ndarray, taps: np.ndarray, out: np.ndarray) -> None:
    """out[j] = sum_i taps[i] v[j + i], v = (tail, u - 1/2); tail <- the last len(tail) of v.
    The taps are symmetric: pairs share a multiply. Tap by tap over blocks of outputs (the
    loop over outputs vectorises)."""
    nt = tail.shape[0]
    n = u.shape[0]
    half = nt // 2
    v = np.empty(n + nt, np.float32)
    v[:nt] = tail
    for j in range(n):
        v[nt + j] = u[j] - np.float32(0.5)
    for j0 in range(0, n, _BLOCK):
        m = min(_BLOCK, n - j0)
        o = out[j0:j0 + m]
        centre = taps[half]
        for j in range(m):
            o[j] = centre * v[j0 + j + half]
        for i in range(half):
            t = taps[i]
            a = v[j0 + i:j0 + i + m]
            b = v[j0 + nt - i:j0 + nt - i + m]
            for j in range(m):
                o[j] += t * (a[j] + b[j])
    tail[:] = v[n:]


class StepSource:
    """Band-limited phase steps from a generator: zero-mean float32 values with the variance
    spectrum (1/12) sinc^2(f) (uniforms on [-1/2, 1/2) through `STEP_TAPS`), continuous from
    one `draw` to the next (the filter's history is kept)."""

    def __init__(self, rng: np.random.Generator):
        self._rng = rng
        self._tail = (rng.random(len(STEP_TAPS) - 1, dtype=np.float32) - np.float32(0.5))

    def draw(self, n: int) -> np.ndarray:
        u = self._rng.random(n, dtype=np.float32)
        out = np.empty(n, np.float32)
        _colour(u, self._tail, STEP_TAPS, out)
        return out
