"""numba kernels of the receiver: one pass over samples each, no per-sample Python.

All kernels take int16 (n, 2) I/Q samples or complex128 arrays and a global sample index `n0`
of their first element, so that chunks of a long capture give the same result as one block.
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True, fastmath=True)
def pair_blocks(iq: np.ndarray, n0: int, fdiff: float, block: int, out: np.ndarray) -> None:
    """out[m] += sum over the block's samples of |x[n]|^2 exp(-j 2 pi fdiff n).

    Blocks are aligned on global sample indices (block m covers [m*block, (m+1)*block)); `out`
    is indexed by global block number. |x|^2 holds the product of the two pilots, whose phase is
    free of laser phase noise; `fdiff` (cycles/sample) brings it near DC. The phasor is a table
    of exp(-j 2 pi fdiff k), k < 4096, times an exact phasor at each 4096-sample segment's start
    (no recurrence: the sums vectorise, and the phase error does not grow along a block).
    """
    n = iq.shape[0]
    seg = min(block, 4096)
    tr = np.empty(seg)
    ti = np.empty(seg)
    for k in range(seg):
        ph = -2.0 * np.pi * ((fdiff * k) % 1.0)
        tr[k] = np.cos(ph)
        ti[k] = np.sin(ph)
    i = 0
    while i < n:
        m = (n0 + i) // block
        end = min(n, (m + 1) * block - n0)
        acc = 0j
        s = i
        while s < end:
            e = min(end, s + seg)
            sr = 0.0
            si = 0.0
            for j in range(s, e):
                re = float(iq[j, 0])
                im = float(iq[j, 1])
                pw = re * re + im * im
                sr += pw * tr[j - s]
                si += pw * ti[j - s]
            ph = -2.0 * np.pi * ((fdiff * (n0 + s)) % 1.0)
            acc += complex(sr, si) * complex(np.cos(ph), np.sin(ph))
            s = e
        out[m] += acc
        i = end


@nb.njit(cache=True, nogil=True)
def _carrier(knot_n: np.ndarray, knot_ph: np.ndarray, g: float) -> tuple[float, float]:
    """Phase c(g) (rad) and its slope (rad/sample) on the piecewise-linear knots at sample g."""
    k = np.searchsorted(knot_n, g, side="right") - 1
    k = min(max(k, 0), knot_n.size - 2)
    slope = (knot_ph[k + 1] - knot_ph[k]) / (knot_n[k + 1] - knot_n[k])
    return knot_ph[k] + slope * (g - knot_n[k]), slope


@nb.njit(cache=True, nogil=True, fastmath=True)
def pilot_correct(iq: np.ndarray, n0: int, f1: float, a: float, knot_n: np.ndarray,
                  knot_ph: np.ndarray, rotate: bool, v: np.ndarray, pil: np.ndarray) -> None:
    """Pilot-referenced phase correction of one chunk.

    u[n] = x[n] exp(-j 2 pi f1 n) puts the phase-reference pilot at DC; its estimate p[n] is
    the two-sided exponential (Wiener) smoother with impulse response (1-a)/(1+a) a^|k|, run as
    a causal plus an anti-causal first-order recursion (near the chunk edges normalised by the
    weights actually summed). Then

        v[n] = (u[n] - p[n]) conj(p[n]) / |p[n]| exp(j c(n)),

    where c(n) is the carrier phase offset between pilot and data band, piecewise-linear in n
    on knots (knot_n, knot_ph) (radians). Callers overlap chunks by the smoother's memory.
    `pil` receives p. With rotate=False the pilot phase is not applied,
    v = (u - p) exp(j c(n)): calibration captures have no pilot, and rotating noise by the
    phase of its own smoothed version would reshape it.
    """
    n = iq.shape[0]
    b = 1.0 - a
    tw = -2.0 * np.pi * f1
    step = complex(np.cos(tw), np.sin(tw))
    s = 0j
    rot = 0j
    for i in range(n):  # forward: shift to the pilot, causal recursion
        if (i & 4095) == 0:  # exact phasor every 4096 samples
            ph = -2.0 * np.pi * ((f1 * (n0 + i)) % 1.0)
            rot = complex(np.cos(ph), np.sin(ph))
        u = complex(float(iq[i, 0]), float(iq[i, 1])) * rot
        rot *= step
        v[i] = u
        s = a * s + b * u
        pil[i] = s
    edge = min(n, int(np.log(1e-16) / np.log(a)) + 1) if a > 0.0 else 1
    inv_mid = 1.0 / (1.0 + a)
    s = 0j
    top = n - 1
    while top >= 0:  # backward, in blocks [4096 m, top]: anti-causal recursion, combine, correct
        low = top - (top & 4095)
        c, sl = _carrier(knot_n, knot_ph, float(n0 + top))  # exact carrier phasor per block
        crot = complex(np.cos(c), np.sin(c))
        cstep = complex(np.cos(sl), -np.sin(sl))
        for i in range(top, low - 1, -1):
            u = v[i]
            s = a * s + b * u
            if i < edge or n - 1 - i < edge:
                inv = 1.0 / ((1.0 - a ** (i + 1)) + (1.0 - a ** (n - i)) - b)
            else:
                inv = inv_mid
            p = (pil[i] + s - b * u) * inv
            pil[i] = p
            v[i] = (u - p) * crot
            crot *= cstep
        top = low - 1
    if rotate:
        _unit_phase(v.view(np.float64), pil.view(np.float64))


@nb.njit(cache=True, nogil=True, fastmath=True)
def _unit_phase(w: np.ndarray, p: np.ndarray) -> None:
    """w[i] *= conj(p[i]) / |p[i]| (0 where p[i] = 0) on complex arrays viewed as interleaved
    float64 pairs: a separate loop without a carried dependency, so that the compiler
    vectorises the square roots and divisions (7x faster than inside the recursion)."""
    for i in range(w.size // 2):
        pr = p[2 * i]
        pi = p[2 * i + 1]
        r = 1.0 / np.sqrt(max(pr * pr + pi * pi, 1e-300))
        wr = w[2 * i]
        wi = w[2 * i + 1]
        w[2 * i] = (wr * pr + wi * pi) * r
        w[2 * i + 1] = (wi * pr - wr * pi) * r


@nb.njit(cache=True, nogil=True, fastmath=True)
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


@nb.njit(cache=True, nogil=True)
def to_complex(iq: np.ndarray, out: np.ndarray) -> None:
    """int16 (n, 2) I/Q -> complex128."""
    for i in range(iq.shape[0]):
        out[i] = complex(float(iq[i, 0]), float(iq[i, 1]))


@nb.njit(cache=True, nogil=True, fastmath=True)
def rotate_linear(y: np.ndarray, c0: float, slope: float, gain: float) -> None:
    """y[k] *= gain exp(j (c0 + slope k)) in place: an exact phasor at the start of each
    4096-element segment times a table of exp(j slope m), m < 4096 (no recurrence, so the
    products vectorise)."""
    seg = min(y.size, 4096)
    tab = np.empty(seg, dtype=np.complex128)
    for m in range(seg):
        tab[m] = complex(np.cos(slope * m), np.sin(slope * m))
    for k0 in range(0, y.size, seg):
        ph = c0 + slope * k0
        r0 = gain * complex(np.cos(ph), np.sin(ph))
        for k in range(k0, min(y.size, k0 + seg)):
            y[k] *= r0 * tab[k - k0]


@nb.njit(cache=True, nogil=True)
def run_power(pil: np.ndarray, pos: np.ndarray, s0: int, run: int) -> np.ndarray:
    """Mean |pil|^2 at the samples nearest to `pos` (global indices; pil starts at s0), over
    consecutive runs of `run` positions."""
    nrun = (pos.size + run - 1) // run
    out = np.zeros(nrun)
    for k in range(pos.size):
        z = pil[int(np.round(pos[k])) - s0]
        out[k // run] += z.real * z.real + z.imag * z.imag
    for r in range(nrun):
        out[r] /= min(run, pos.size - r * run)
    return out


@nb.njit(cache=True, nogil=True)
def lag_sums(y: np.ndarray, idx: np.ndarray, x: np.ndarray, max_lag: int, out: np.ndarray
             ) -> None:
    """For each lag l in [-max_lag, max_lag] (row l + max_lag of `out`): sum conj(x) y[idx + l]
    (real, imaginary), sum |y[idx + l]|^2, sum |x|^2 and the count, over the k with idx[k] + l
    inside y and y there finite. One walk over idx, all lags at once (y[idx[k] - max_lag ...
    idx[k] + max_lag] is contiguous), each lag's terms summed in the order of k."""
    nl = 2 * max_lag + 1
    acc = np.zeros((nl, 5))
    for k in range(idx.size):
        xr = x[k].real
        xi = x[k].imag
        for li in range(nl):
            j = idx[k] + li - max_lag
            if j < 0 or j >= y.size:
                continue
            z = y[j]
            if not (np.isfinite(z.real) and np.isfinite(z.imag)):
                continue
            acc[li, 0] += xr * z.real + xi * z.imag
            acc[li, 1] += xr * z.imag - xi * z.real
            acc[li, 2] += z.real * z.real + z.imag * z.imag
            acc[li, 3] += xr * xr + xi * xi
            acc[li, 4] += 1
    out[:, :] = acc


@nb.njit(cache=True, nogil=True)
def interp_increasing(xq: np.ndarray, xp: np.ndarray, fp: np.ndarray, out: np.ndarray) -> None:
    """out = np.interp(xq, xp, fp, left=nan, right=nan) for increasing xq and xp (one walk over
    the knots instead of a binary search per point)."""
    k = 0
    m = xp.size
    for i in range(xq.size):
        q = xq[i]
        if q < xp[0] or q > xp[m - 1] or not np.isfinite(q):
            out[i] = np.nan
            continue
        while k < m - 2 and xp[k + 1] <= q:
            k += 1
        while k > 0 and xp[k] > q:
            k -= 1
        slope = (fp[k + 1] - fp[k]) / (xp[k + 1] - xp[k])
        out[i] = fp[k] + slope * (q - xp[k])


@nb.njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "nsz", "arcp"})
def disclosed_sums(v: np.ndarray, n0: int, pos: np.ndarray, table: np.ndarray, y: np.ndarray,
                   xc: np.ndarray, blk: np.ndarray, s3: np.ndarray, counts: np.ndarray,
                   yy: np.ndarray, xx: np.ndarray) -> None:
    """Data-aided block sums of the disclosed symbols of one chunk: for each k (block blk[k]),
    s3[b, 0] += y(pos[k] - 1/2) xc[k], s3[b, 2] += y(pos[k] + 1/2) xc[k] (matched filter at
    half a sample either side, as `mf_sample`), s3[b, 1] += y[k] xc[k] (each only if finite),
    counts[b] += 1, yy[b] += |y[k]|^2, xx[b] += |xc[k]|^2. xc: conjugated disclosed values."""
    phases = table.shape[0] - 1
    taps = table.shape[1]
    half = (taps - 1) // 2
    n = v.size
    for k in range(pos.size):
        b = blk[k]
        for col in (0, 2):
            p = pos[k] - n0 + (col - 1) * 0.5
            i = int(np.floor(p))
            j = int(np.round((p - i) * phases))
            start = i - half
            if start < 0 or start + taps > n:
                continue
            re = 0.0
            im = 0.0
            for m in range(taps):
                h = table[j, m]
                z = v[start + m]
                re += z.real * h
                im += z.imag * h
            s3[b, col] += complex(re, im) * xc[k]
        z = y[k] * xc[k]
        if np.isfinite(z.real) and np.isfinite(z.imag):
            s3[b, 1] += z
        counts[b] += 1
        yy[b] += y[k].real * y[k].real + y[k].imag * y[k].imag
        xx[b] += xc[k].real * xc[k].real + xc[k].imag * xc[k].imag


@nb.njit(cache=True, nogil=True)
def shifted_block_means(x: np.ndarray, f: float, avg: int, out: np.ndarray) -> None:
    """out[m] = mean of x[n] exp(-j 2 pi f n) over n in [m avg, (m + 1) avg) (phasor
    recurrence, exact every 4096 samples)."""
    tw = -2.0 * np.pi * f
    step = complex(np.cos(tw), np.sin(tw))
    rot = 0j
    for m in range(out.size):
        acc = 0j
        for n in range(m * avg, (m + 1) * avg):
            if (n & 4095) == 0 or n == m * avg:
                ph = -2.0 * np.pi * ((f * n) % 1.0)
                rot = complex(np.cos(ph), np.sin(ph))
            acc += x[n] * rot
            rot *= step
        out[m] = acc / avg
