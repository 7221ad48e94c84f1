"""numba kernels of the receiver: one pass over samples each, no per-sample Python.

All kernels take int16 (n, 2) I/Q samples or complex128 arrays and a global sample index `n0`
of their first element, so that chunks of a long capture give the same result as one block.
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True)
def pair_blocks(iq: np.ndarray, n0: int, fdiff: float, block: int, out: np.ndarray) -> None:
    """out[m] += sum over the block's samples of |x[n]|^2 exp(-j 2 pi fdiff n).

    Blocks are aligned on global sample indices (block m covers [m*block, (m+1)*block)); `out`
    is indexed by global block number. |x|^2 holds the product of the two pilots, whose phase is
    free of laser phase noise; `fdiff` (cycles/sample) brings it near DC.
    """
    n = iq.shape[0]
    i = 0
    while i < n:
        g = n0 + i
        m = g // block
        end = min(n, (m + 1) * block - n0)
        # exact phasor at the segment start, then a rotation recurrence
        ph = -2.0 * np.pi * ((fdiff * g) % 1.0)
        rot = complex(np.cos(ph), np.sin(ph))
        step = complex(np.cos(-2.0 * np.pi * fdiff), np.sin(-2.0 * np.pi * fdiff))
        acc = 0j
        for j in range(i, end):
            re = float(iq[j, 0])
            im = float(iq[j, 1])
            acc += (re * re + im * im) * rot
            rot *= step
        out[m] += acc
        i = end


@nb.njit(cache=True)
def pilot_correct(iq: np.ndarray, n0: int, f1: float, a: float, knot_n: np.ndarray,
                  knot_ph: np.ndarray, rotate: bool, v: np.ndarray, pil: np.ndarray) -> None:
    """Pilot-referenced phase correction of one chunk.

    u[n] = x[n] exp(-j 2 pi f1 n) puts the phase-reference pilot at DC; its estimate p[n] is
    the two-sided exponential (Wiener) smoother with impulse response (1-a)/(1+a) a^|k|, run as
    a causal plus an anti-causal first-order recursion. Then

        v[n] = (u[n] - p[n]) conj(p[n]) / |p[n]| exp(j c(n)),

    where c(n) is the carrier phase offset between pilot and data band, given as piecewise-linear
    in n by knots (knot_n, knot_ph) (radians). Samples within ~log(1e-12)/log(a) of the chunk
    edges see a truncated smoother: callers overlap chunks by that margin. `pil` receives p.
    With rotate=False the pilot phase is not applied, v = (u - p) exp(j c(n)): calibration
    captures have no pilot, and rotating noise by the phase of its own smoothed version would
    reshape it.
    """
    n = iq.shape[0]
    b = 1.0 - a
    # forward pass: u -> v (temporarily), causal recursion -> pil
    ph = -2.0 * np.pi * ((f1 * n0) % 1.0)
    rot = complex(np.cos(ph), np.sin(ph))
    step = complex(np.cos(-2.0 * np.pi * f1), np.sin(-2.0 * np.pi * f1))
    s = 0j
    for i in range(n):
        if (i & 4095) == 0:  # renormalise the recurrence exactly
            ph = -2.0 * np.pi * ((f1 * (n0 + i)) % 1.0)
            rot = complex(np.cos(ph), np.sin(ph))
        u = complex(float(iq[i, 0]), float(iq[i, 1])) * rot
        rot *= step
        v[i] = u
        s = a * s + b * u
        pil[i] = s
    # backward pass: anti-causal recursion, combine; the weights actually summed near the chunk
    # edges, (1 - a^(i+1)) + (1 - a^(n-i)) - b, normalise exactly (steady state: 1 + a)
    s = 0j
    ab = 1.0
    for i in range(n - 1, -1, -1):
        u = v[i]
        s = a * s + b * u
        ab *= a  # a^(n-i)
        af = a ** (i + 1) if i < 4096 else 0.0
        pil[i] = (pil[i] + s - b * u) / ((1.0 - af) + (1.0 - ab) - b)
    # correction with the carrier offset c(n), piecewise linear between knots
    k = 0
    nk = knot_n.size
    i = 0
    while i < n:
        g = float(n0 + i)
        while k < nk - 2 and knot_n[k + 1] <= g:
            k += 1
        seg_end = n if k >= nk - 2 else min(n, int(np.ceil(knot_n[k + 1] - n0)))
        if seg_end <= i:
            seg_end = i + 1
        slope = (knot_ph[k + 1] - knot_ph[k]) / (knot_n[k + 1] - knot_n[k])
        c0 = knot_ph[k] + slope * (g - knot_n[k])
        rot = complex(np.cos(c0), np.sin(c0))
        step = complex(np.cos(slope), np.sin(slope))
        for j in range(i, seg_end):
            if ((j - i) & 4095) == 4095:
                c = c0 + slope * (j - i)
                rot = complex(np.cos(c), np.sin(c))
            p = pil[j]
            mag = abs(p)
            w = v[j] - p
            if not rotate:
                v[j] = w * rot
            elif mag > 0.0:
                v[j] = w * (p.conjugate() / mag) * rot
            else:
                v[j] = 0j
            rot *= step
        i = seg_end


@nb.njit(cache=True)
def mf_sample(v: np.ndarray, n0: int, pos: np.ndarray, table: np.ndarray, out: np.ndarray
              ) -> None:
    """Matched filter evaluated at fractional sample positions.

    out[k] = sum_m v[i + m - n0] table[j, m + half], i = floor(pos[k]), j = round(frac * P),
    with table from `dsp.filters.rrc_polyphase` (P + 1 rows, 2 half + 1 taps). Positions whose
    filter support leaves the chunk give NaN.
    """
    phases = table.shape[0] - 1
    taps = table.shape[1]
    half = (taps - 1) // 2
    n = v.size
    for k in range(pos.size):
        p = pos[k] - n0
        i = int(np.floor(p))
        j = int(np.round((p - i) * phases))
        start = i - half
        if start < 0 or start + taps > n:
            out[k] = complex(np.nan, np.nan)
            continue
        re = 0.0
        im = 0.0
        for m in range(taps):
            h = table[j, m]
            z = v[start + m]
            re += z.real * h
            im += z.imag * h
        out[k] = complex(re, im)


@nb.njit(cache=True)
def to_complex(iq: np.ndarray, out: np.ndarray) -> None:
    """int16 (n, 2) I/Q -> complex128."""
    for i in range(iq.shape[0]):
        out[i] = complex(float(iq[i, 0]), float(iq[i, 1]))
