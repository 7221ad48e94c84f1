"""Pilot tones at the receiver: coarse frequency search, pilot SNR, linewidth and the optimal
phase-smoother coefficient.

Phase model (per sample): the pilot's phase is a Wiener process, increments of variance
q = 2 pi dnu / fs (dnu: combined linewidth of transmitter laser and LO, Hz), observed in white
noise of phase variance r = sigma^2 / (2 A^2) per sample (A: pilot amplitude, sigma^2: complex
noise power per sample). The minimum-variance (Wiener) smoother of a random walk in white noise
is the two-sided exponential h[k] = (1-a)/(1+a) a^|k| with a + 1/a = 2 + q/r, and its error
variance is sqrt(q r)/2 for q << r (e.g. Van Trees, Detection, Estimation and Modulation Theory
I, ch. 6; the steady-state Rauch-Tung-Striebel smoother of the same model gives the same
response). The causal Kalman filter (a PLL) has error sqrt(q r): twice as much.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft

from dsp import kernels


@dataclass(frozen=True)
class PilotEstimate:
    """Pilot frequencies at the receiver (cycles/sample) and statistics of the phase pilot."""

    f1: float  # phase-reference pilot
    f2: float  # clock pilot
    amp2_1: float  # |A1|^2, ADC units^2 per sample
    noise: float  # complex noise power per sample around the pilot (everything but A1)
    q: float  # phase diffusion per sample, rad^2 (2 pi dnu / fs)
    peak_ratio: float  # pilot-1 periodogram peak over the median bin


def _peak(spec: np.ndarray, lo: int, hi: int) -> tuple[int, float]:
    """Index of the largest bin in spec[lo:hi] (wrapping) and its parabolic offset (bins)."""
    n = spec.size
    idx = np.arange(lo, hi) % n
    k = idx[int(np.argmax(spec[idx]))]
    la, lb, lc = np.log(spec[(k - 1) % n]), np.log(spec[k]), np.log(spec[(k + 1) % n])
    den = la - 2 * lb + lc
    off = 0.5 * (la - lc) / den if den < 0 else 0.0
    return int(k), float(off)


@lru_cache(maxsize=4)
def _hann(n: int) -> np.ndarray:
    w = np.hanning(n)
    w.flags.writeable = False
    return w


def coarse_frequencies(x: np.ndarray, nu1: float, nu2: float, max_offset: float,
                       max_ppm: float) -> tuple[float, float, float]:
    """Find the two pilots in a block of complex samples (frequencies in cycles/sample).

    The strong pilot is the largest periodogram peak within nu1 +- max_offset; the weak one is
    searched where the strong one predicts it, +- the clock tolerance. Returns (f1, f2, peak
    ratio of the strong pilot over the median bin). Hann window, parabolic interpolation of the
    log periodogram.
    """
    n = x.size
    z = scipy.fft.fft(x * _hann(n))
    spec = z.real * z.real + z.imag * z.imag + 1e-300
    def band(centre: float, half: float) -> tuple[int, int]:
        return int(np.floor((centre - half) * n)), int(np.ceil((centre + half) * n)) + 1
    k1, o1 = _peak(spec, *band(nu1, max_offset))
    f1 = ((k1 + o1) / n + 0.5) % 1.0 - 0.5
    pred2 = f1 - (nu1 - nu2)
    k2, o2 = _peak(spec, *band(pred2, abs(nu1 - nu2) * max_ppm * 1e-6 + 4.0 / n))
    f2 = ((k2 + o2) / n + 0.5) % 1.0 - 0.5
    return f1, f2, float(spec[k1] / np.median(spec))


A_MAX = 0.998  # longest smoother: time constant 500 samples (1 us at 500 MS/s)


def smoother_coefficient(q: float, r: float) -> float:
    """a of the optimal two-sided exponential smoother for diffusion q and noise r per sample,
    at most A_MAX (below ~20 Hz linewidth, residual LO drift matters more)."""
    lam = max(q, 1e-30) / r
    return float(min(1.0 + lam / 2 - np.sqrt(lam + lam * lam / 4), A_MAX))


def phase_statistics(x: np.ndarray, f1: float, avg: int = 16) -> tuple[float, float, float]:
    """Pilot power A^2, noise power per sample, and phase diffusion q per sample (rad^2).

    x is shifted by f1, averaged in blocks of `avg` samples (only the longest run of blocks
    where the pilot is present is used); the structure function of the block phases
    D(L) = var(phi[m+L] - phi[m]) = q avg L + 2 r_b is fitted over lags L = 4..64 blocks in
    each of 8 segments, and the median slope taken.
    """
    pb = np.empty(x.size // avg, dtype=np.complex128)
    kernels.shifted_block_means(np.ascontiguousarray(x, dtype=np.complex128), f1, avg, pb)
    # keep the longest run of blocks where the pilot is on (a one-shot player starts after the
    # capture, so the first samples may be noise only, whose phase is not the pilot's; a fault
    # may darken or saturate a stretch)
    pw = np.abs(pb) ** 2
    on = (pw > 0.25 * np.median(pw)) & (pw < 4 * np.median(pw))  # not dark, not saturated
    edges = np.flatnonzero(np.diff(np.concatenate(([0], on.astype(np.int8), [0]))))
    starts, ends = edges[0::2], edges[1::2]
    j = int(np.argmax(ends - starts))
    pb = pb[starts[j]:ends[j]]
    xs = x[starts[j] * avg:ends[j] * avg]
    # mean |pb|^2 = A^2 + sigma^2 / avg (white noise), mean |x|^2 = A^2 + sigma^2
    m_pb, m_x = float(np.mean(np.abs(pb) ** 2)), float(np.mean(np.abs(xs) ** 2))
    a2 = max((avg * m_pb - m_x) / (avg - 1), 1e-30)
    noise = max(m_x - a2, 1e-30)
    # D(L) in 8 segments, the median of their slopes: a segment with a frequency step (an LO
    # unlock) or a burst would otherwise inflate the whole estimate
    lags = np.array([4, 8, 16, 24, 32, 48, 64])
    slopes = []
    for seg in np.array_split(pb, 8):
        ph = np.unwrap(np.angle(seg))
        ls = lags[lags < ph.size // 4]
        if ls.size < 3:
            continue
        d = np.array([np.var(ph[lag:] - ph[:-lag]) for lag in ls])
        slopes.append(np.polyfit(ls * avg, d, 1)[0])
    if not slopes:
        raise ValueError("too few pilot samples for the phase statistics")
    slope = float(np.median(slopes))
    return a2, noise, float(max(slope, 0.0))
