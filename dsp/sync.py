"""Frame synchronisation: Zadoff-Chu correlation with fractional timing, and the symbol lag
confirmed against Alice's disclosed symbols.

Failures raise `SyncError` with a reason; the receiver never returns symbols from a frame it
could not synchronise.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

from dsp import kernels
from dsp.filters import rrc_taps


class SyncError(RuntimeError):
    """Synchronisation failed; `reason` says which check."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def preamble_template(symbols: np.ndarray, sps: int, rolloff: float, half_span: int
                      ) -> tuple[np.ndarray, int]:
    """RRC-shaped preamble and the index of its first symbol's centre in the template."""
    taps = rrc_taps(sps, rolloff, half_span)
    up = np.zeros((symbols.size - 1) * sps + 1, dtype=np.complex128)
    up[::sps] = symbols
    return np.convolve(up, taps), half_span * sps


def correlate(v: np.ndarray, template: np.ndarray) -> np.ndarray:
    """C[n] = sum_m v[n + m] conj(template[m]) for every full overlap ('valid')."""
    return fftconvolve(v, np.conj(template[::-1]), mode="valid")


def find_peak(c: np.ndarray, min_ratio: float) -> tuple[float, float, complex]:
    """Fractional index of the correlation peak (parabola through |C| at the peak and its two
    neighbours), the peak-to-median power ratio, and the complex value at the peak.

    Raises SyncError if the ratio is below `min_ratio` (no preamble)."""
    if c.size < 3:
        raise SyncError("search window shorter than the preamble")
    mag = np.abs(c)
    k = int(np.argmax(mag[1:-1])) + 1
    ratio = float(mag[k] ** 2 / np.median(mag * mag))
    if ratio < min_ratio:
        raise SyncError(f"preamble not found (peak/median {ratio:.1f} < {min_ratio:g})")
    return k + _fine_peak(c, k), ratio, complex(c[k])


def _fine_peak(c: np.ndarray, k: int, half: int = 32, up: int = 64) -> float:
    """Fractional offset of the peak of |c| near index k. The correlation of band-limited
    signals is band-limited (here to well below half the sample rate), so c(t) between samples
    is the windowed-sinc interpolation sum_j c[j] sinc(t - j) w(t - j) (Kaiser window, +-half
    samples); |c(t)| is evaluated on a 1/up grid over [k - 1, k + 1], then refined by a
    parabola. This avoids the bias of a parabola through three samples of a peak that is not a
    parabola (up to ~0.05 sample at 5 samples per symbol)."""
    t = k + np.arange(-up, up + 1) / up
    j = np.arange(max(0, k - half), min(c.size, k + half + 1))
    d = t[:, None] - j[None, :]
    w = np.kaiser(2 * half + 3, 8.0)
    ker = np.sinc(d) * np.interp(d, np.arange(-half - 1, half + 2), w)
    fine = np.abs(np.einsum("tj,j->t", ker, c[j]))  # no BLAS: see receiver._cdot
    i = int(np.argmax(fine))
    off = 0.0
    if 0 < i < fine.size - 1:
        a, b, e = fine[i - 1], fine[i], fine[i + 1]
        den = a - 2 * b + e
        off = 0.5 * (a - e) / den if den < 0 else 0.0
    return float(t[i] + off / up - k)


def confirm_lag(y: np.ndarray, idx: np.ndarray, x: np.ndarray, max_lag: int,
                min_z: float = 8.0) -> tuple[int, float]:
    """Confirm that Bob's symbol y[idx] carries Alice's x (lag 0) rather than y[idx + l].

    For each lag l in [-max_lag, max_lag] the normalised correlation
    rho_l = |sum y[idx+l] conj(x)| / sqrt(sum |y[idx+l]|^2 sum |x|^2) is computed; without
    signal sqrt(M) rho_l is Rayleigh with mean ~0.9. Returns (best lag, z = sqrt(M) rho_best);
    raises SyncError unless lag 0 is best and z >= min_z.
    """
    m = idx.size
    sums = np.zeros((2 * max_lag + 1, 5))
    kernels.lag_sums(y, np.asarray(idx, dtype=np.int64), np.asarray(x, dtype=np.complex128),
                     max_lag, sums)
    best, best_rho, rho0 = 0, -1.0, 0.0
    for li, (cr, ci, yy, xx, cnt) in enumerate(sums):
        if cnt == 0:
            continue
        rho = np.hypot(cr, ci) / np.sqrt(yy * xx)
        if li == max_lag:
            rho0 = rho
        if rho > best_rho:
            best, best_rho = li - max_lag, rho
    z = float(np.sqrt(m) * rho0)
    if best != 0:
        raise SyncError(f"symbol lag not confirmed: best lag {best}")
    if z < min_z:
        raise SyncError(f"symbol lag not confirmed: correlation z = {z:.1f} < {min_z:g}")
    return best, z
