"""Alice's clock as seen from Bob's samples, from the phase of the pilot-pair product.

With pilots at nu1, nu2 (cycles per Alice sample), the product p1 conj(p2) has phase
2 pi (nu1 - nu2) a(n) + const, where a(n) is Alice's sample index at Bob's sample n: laser phase
noise and LO offset cancel. Block sums of |x|^2 exp(-j 2 pi fdiff n) (`kernels.pair_blocks`)
sample that phase once per block; unwrapped, they give a(n) up to a whole number of periods
1/(nu1 - nu2), which the preamble resolves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClockTrack:
    """a(n) at knots n (Bob sample index, float) -> Alice sample index (float)."""

    knot_n: np.ndarray
    knot_a: np.ndarray
    ratio: float  # mean da/dn: Alice samples per Bob sample
    residual_rms: float  # rms of the per-block timing estimates about the track, Alice samples

    def alice(self, n: np.ndarray | float) -> np.ndarray:
        return np.interp(n, self.knot_n, self.knot_a, left=np.nan, right=np.nan)

    def bob(self, a: np.ndarray | float) -> np.ndarray:
        return np.interp(a, self.knot_a, self.knot_n, left=np.nan, right=np.nan)

    def shifted(self, da: float) -> ClockTrack:
        return ClockTrack(self.knot_n, self.knot_a + da, self.ratio, self.residual_rms)

    def ppm(self) -> float:
        """Bob's ADC clock relative to Alice's DAC clock, parts per million (+ = Bob faster)."""
        return (1.0 / self.ratio - 1.0) * 1e6


def track_from_blocks(sums: np.ndarray, block: int, fdiff: float, nu_diff: float,
                      n_total: int | None = None, smooth_blocks: int = 0, degree: int = 2
                      ) -> ClockTrack:
    """Clock track from pilot-pair block sums (global blocks of `block` samples).

    `n_total` (samples in the capture) extends the track to the capture's end. Blocks without
    a clear pilot pair (|sum| outside [1/2, 2] times the typical lit block, e.g. before the
    frame in a one-shot capture, or during a fault) are dropped. The track is a
    polynomial fit of degree `degree` (a constant clock offset and a linear drift of it), plus,
    if `smooth_blocks` > 0, a centred moving average of the residuals over +-smooth_blocks to
    follow faster wander. Every sample of noise left in the track moves the data band's carrier
    phase by 2 pi (nu1 - nu_s) per sample of timing error, so the default is the smooth fit.
    """
    mag = np.abs(sums)
    # typical level of a lit block: the median of the upper half (robust both to dark blocks
    # before a one-shot frame and to a minority of saturated blocks)
    ref = float(np.median(mag[mag >= np.median(mag)])) if mag.size else 0.0
    good = np.flatnonzero((mag > 0.5 * ref) & (mag < 2.0 * ref))
    if good.size < 3 or ref == 0.0:
        raise ValueError("clock pilot pair not found")
    # runs of good blocks (the frame; a fault may interrupt it): unwrap each run, then join the
    # runs one by one to the longest, choosing the whole number of turns across each gap that
    # the clock fitted so far predicts (a gap of 1e5 samples needs the slope to ~1e-6)
    runs = np.split(good, np.flatnonzero(np.diff(good) > 1) + 1)
    runs.sort(key=len, reverse=True)
    if len(runs[0]) < 3:
        raise ValueError("clock pilot pair present in fewer than 3 consecutive blocks")
    idx = runs[0]
    ph = np.unwrap(np.angle(sums[idx])) + 2 * np.pi * fdiff * ((idx + 0.5) * block - 0.5)
    for run in runs[1:]:
        c_all = (idx + 0.5) * block - 0.5
        coef = np.polyfit(c_all, ph, 1)
        c_run = (run + 0.5) * block - 0.5
        ph_run = np.unwrap(np.angle(sums[run])) + 2 * np.pi * fdiff * c_run
        turns = np.round(np.mean(np.polyval(coef, c_run) - ph_run) / (2 * np.pi))
        idx = np.concatenate((idx, run))
        ph = np.concatenate((ph, ph_run + 2 * np.pi * turns))
        order = np.argsort(idx)
        idx, ph = idx[order], ph[order]
    good = idx
    centres = (good + 0.5) * block - 0.5
    a = ph / (2 * np.pi * nu_diff)
    deg = int(min(degree, good.size - 2))
    coef = np.polyfit(centres, a, deg)
    res = a - np.polyval(coef, centres)
    if smooth_blocks > 0 and good.size > 2 * smooth_blocks + 1:
        k = np.ones(2 * smooth_blocks + 1) / (2 * smooth_blocks + 1)
        pad = np.pad(res, smooth_blocks, mode="reflect", reflect_type="odd")
        res_s = np.convolve(pad, k, mode="valid")
    else:
        res_s = np.zeros_like(res)
    knot_a = np.polyval(coef, centres) + res_s
    # extend the knots (polynomial) to a block beyond the capture, or beyond the blocks used
    end = max(centres[-1], (n_total or 0) - 1) + block
    n_ext = np.concatenate(([min(centres[0], 0.0) - block], centres, [end]))
    a_ext = np.concatenate((np.polyval(coef, n_ext[:1]), knot_a, np.polyval(coef, n_ext[-1:])))
    slope = float(np.mean(np.polyval(np.polyder(coef), centres)))
    rms = float(np.std(res - res_s)) if res.size > 1 else 0.0
    if not np.all(np.diff(a_ext) > 0):
        raise ValueError("clock track not monotonic")
    return ClockTrack(n_ext, a_ext, slope, rms)
