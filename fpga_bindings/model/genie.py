"""Ground truth of a capture and the ideal ("genie") receiver. Tests and simulation only.

The ideal receiver knows the true clock (which DAC sample arrives at each ADC sample) and the
true beat phase. It de-rotates the record, applies the matched filter of the transmitter's
pulse and samples it at the symbol instants. Its output for symbol k (docs/model.md):
    heterodyne: y_k = g_k a_k + z_k              (complex, SNU)
    homodyne:   y_k = g_k Re(a_k e^{i psi_k}) + Re z_k
with g_k = sqrt(eta T k VOA) (k = 1/2 heterodyne, 1 homodyne) at the symbol's arrival time,
a_k the matched-filter projection of the field the modulator actually emitted (DAC
quantisation included; shifted back to baseband first if the symbols ride on a subcarrier) and
z_k the projection of the SAME detection-noise draws (shot, electronic, excess) that the capture
contains. Imperfections of the model's own waveform path (interpolation error,
ADC quantisation, clipping) are not in y_k.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.signal import oaconvolve

from fpga_bindings.model.resample import HALF, resample


@dataclass(frozen=True)
class SymbolGrid:
    """Where the symbols sit in the loaded DAC waveform."""

    pulse: np.ndarray  # real pulse taps at the player rate, centre tap len//2, unit energy
    sps: int  # player samples per symbol
    first_peak: int  # player-sample index of symbol 0's pulse centre in the waveform
    n_symbols: int
    subcarrier: float = 0.0  # the symbols ride on exp(i 2 pi subcarrier m), m the waveform
    #                          sample index (cycles per player sample; 0: baseband)

    def __post_init__(self) -> None:
        p = np.asarray(self.pulse)
        if p.ndim != 1 or len(p) % 2 != 1 or not np.isrealobj(p):
            raise ValueError("SymbolGrid: pulse must be real, 1-D, odd length")
        if self.sps < 1 or self.n_symbols < 1 or self.first_peak < 0:
            raise ValueError("SymbolGrid: need sps >= 1, n_symbols >= 1, first_peak >= 0")


@dataclass(frozen=True)
class GenieSymbols:
    symbols: np.ndarray  # complex128 (n_symbols,), SNU; NaN where not captured
    position: np.ndarray  # float64: output-sample position of each symbol centre
    angle_rad: np.ndarray  # float64: true beat phase at each symbol centre


@dataclass(frozen=True)
class GroundTruth:
    """Trajectories of one capture, at output samples `sample_index` (every phase_grid)."""

    sample_index: np.ndarray  # int64 output-sample indices
    phase_rad: np.ndarray  # float64 true beat phase there (unwrapped), rad
    tx_position: np.ndarray  # float64 DAC-waveform position arriving there, player samples
    u0: float  # tx position of output sample 0, player samples
    du: float  # player samples per output sample (clock ratio, includes clock_ppm)
    fs_out: float  # output sample rate on the DAC clock's time axis, samples/s
    trigger_time_s: float  # model time of the trigger
    genie: GenieSymbols | None = None
    phase_fine: np.ndarray | None = None  # true beat phase at EVERY output sample, rad
    #   (float64; only with ground truth requested: between grid points the lasers' phase
    #   is a Brownian bridge that `phase_rad` interpolated linearly would miss)


def _projections(field: np.ndarray, cyclic: bool, pulse: np.ndarray,
                 peaks: np.ndarray) -> np.ndarray:
    """a_k = sum_j pulse[j] field[peak_k - c + j] (c = centre tap), zero outside if one-shot."""
    n = len(field)
    c = len(pulse) // 2
    offs = np.arange(len(pulse)) - c
    out = np.empty(len(peaks), np.complex128)
    for b in range(0, len(peaks), 16384):
        idx = peaks[b:b + 16384, None] + offs[None, :]
        if cyclic:
            vals = field[idx % n]
        else:
            inside = (idx >= 0) & (idx < n)
            vals = np.where(inside, field[np.clip(idx, 0, n - 1)], 0)
        out[b:b + 16384] = vals @ pulse
    return out


def ideal_receiver(grid: SymbolGrid, field: np.ndarray, cyclic: bool, zrot: np.ndarray,
                   u0: float, du: float, psi_index: np.ndarray, psi: np.ndarray,
                   detection: str, signal_gain: Callable[[np.ndarray], np.ndarray]
                   ) -> GenieSymbols:
    """The ideal receiver's quadratures for every symbol of `grid` captured completely."""
    pulse = np.asarray(grid.pulse, dtype=np.float64)
    n_field = len(field)
    n_out = len(zrot)
    c = len(pulse) // 2
    half_mf = math.ceil((c + HALF) / du)
    margin = half_mf + HALF + 1
    peaks = grid.first_peak + grid.sps * np.arange(grid.n_symbols, dtype=np.int64)
    if cyclic:  # the first occurrence of each symbol that lies wholly inside the capture
        shift = np.ceil((u0 + margin * du - peaks) / n_field).astype(np.int64)
        peaks_abs = peaks + shift * n_field
        peaks = peaks % n_field
    else:
        peaks_abs = peaks
    pos = (peaks_abs - u0) / du
    valid = (pos >= margin) & (pos <= n_out - 1 - margin)
    if grid.subcarrier and detection != "heterodyne":
        raise ValueError("ideal receiver: a symbol subcarrier needs heterodyne detection")
    base = field.astype(np.complex128)
    if grid.subcarrier:  # back to baseband on the waveform's own sample index
        base *= np.exp(-2j * np.pi * grid.subcarrier * np.arange(n_field))
        zrot = zrot * np.exp(-2j * np.pi * grid.subcarrier * (u0 + du * np.arange(n_out)))
    a = _projections(base, cyclic, pulse, peaks)
    # matched filter on the output grid: the continuous pulse sampled every du player samples
    taps = resample(pulse, c + du * np.arange(-half_mf, half_mf + 1)).real.astype(np.float64)
    taps *= math.sqrt(du)
    mf = oaconvolve(zrot.astype(np.complex128), taps[::-1], mode="same")
    z = np.full(len(pos), np.nan + 0j)
    z[valid] = resample(mf, pos[valid])
    angle = np.interp(pos, psi_index, psi)
    g = np.zeros(len(pos))
    g[valid] = signal_gain(pos[valid])
    if detection == "heterodyne":
        y = g * a + z
    else:
        y = (g * np.real(a * np.exp(1j * angle)) + z.real).astype(np.complex128)
    y[~valid] = np.nan
    return GenieSymbols(symbols=y, position=pos, angle_rad=angle)
