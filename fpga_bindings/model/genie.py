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

import numba
import numpy as np
from scipy.signal import oaconvolve

from fpga_bindings.model.resample import PHASES, kernel_table

# The ideal receiver's noise projection evaluates the matched filter at each symbol's
# fractional position. The model's 16-tap resampler (resample.TABLE) has a gain ripple of about
# 1e-4 over the pulse band, which made the projection's norm depend on the fractional position
# (1 to 1.0002): the ideal receiver's noise read up to 2e-4 too high (the added-noise metric
# up to 0.002 SNU too low). This 64-tap table (Kaiser beta 12) keeps the norm within 1e-6.
_MF_TAPS = 64
_MF_HALF = _MF_TAPS // 2
_MF_TABLE = kernel_table(_MF_TAPS, PHASES, 12.0).astype(np.float64)

_MF_BLOCK = 1 << 20  # output samples per matched-filter block


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
    bridge: np.ndarray | None = None  # float32 per output sample: laser phase between the
    #   grid points (rad), recorded when a symbol grid was requested
    remote_tx_phase: np.ndarray | None = None  # two-board topology: Alice's laser phase per
    #   player sample (it travelled inside the field)

    @property
    def phase_fine(self) -> np.ndarray:
        """True beat phase at EVERY output sample, rad (float64; computed on demand). Between
        grid points the lasers' phase is a Brownian bridge that `phase_rad` interpolated
        linearly would miss."""
        if self.bridge is None:
            raise ValueError("phase_fine needs a capture with request_ground_truth(grid)")
        n = len(self.bridge)
        out = np.empty(n)
        if self.remote_tx_phase is not None:  # phase_rad holds it at the grid points only
            idx = np.arange(len(self.remote_tx_phase))
            tx_grid = np.interp(self.tx_position, idx, self.remote_tx_phase)
        for b in range(0, n, 1 << 20):
            k = np.arange(b, min(b + (1 << 20), n))
            out[k] = np.interp(k, self.sample_index, self.phase_rad) + self.bridge[k]
            if self.remote_tx_phase is not None:
                out[k] += (np.interp(self.u0 + self.du * k, idx, self.remote_tx_phase)
                           - np.interp(k, self.sample_index, tx_grid))
        return out


@numba.njit(cache=True, nogil=True)
def _project_kernel(fr: np.ndarray, fi: np.ndarray, halo: int, n: int, cyclic: bool,
                    pulse: np.ndarray, peaks: np.ndarray, subcarrier: float,
                    out: np.ndarray) -> None:
    c = pulse.shape[0] // 2
    rot = complex(math.cos(-2.0 * math.pi * subcarrier), math.sin(-2.0 * math.pi * subcarrier))
    for k in range(peaks.shape[0]):
        m0 = peaks[k] - c
        ph0 = -2.0 * math.pi * ((subcarrier * m0) % 1.0)
        car = complex(math.cos(ph0), math.sin(ph0))
        acc = 0j
        for j in range(pulse.shape[0]):
            m = m0 + j
            if cyclic:
                m %= n
            if 0 <= m < n:
                acc += pulse[j] * car * complex(fr[m + halo], fi[m + halo])
            car *= rot
        out[k] = acc


@numba.njit(cache=True, nogil=True)
def _interp_kernel(seq: np.ndarray, pos: np.ndarray, table: np.ndarray, out: np.ndarray
                   ) -> None:
    """out[k] = band-limited value of `seq` (complex, unpadded, zero outside) at position
    pos[k] (samples), with the windowed-sinc `table` (rows: fractional offsets)."""
    phases = table.shape[0] - 1
    taps = table.shape[1]
    half = taps // 2
    n = seq.shape[0]
    for k in range(pos.shape[0]):
        u = pos[k]
        i0 = int(np.floor(u))
        p = int((u - i0) * phases + 0.5)
        base = i0 - half + 1
        acc = 0j
        for i in range(taps):
            m = base + i
            if 0 <= m < n:
                acc += table[p, i] * seq[m]
        out[k] = acc


def _interp(seq: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Values of `seq` at real positions through the ideal receiver's 64-tap kernel, complex."""
    out = np.empty(len(pos), np.complex128)
    _interp_kernel(np.ascontiguousarray(seq, dtype=np.complex128),
                   np.ascontiguousarray(pos, dtype=np.float64), _MF_TABLE, out)
    return out


def _projections(fr: np.ndarray, fi: np.ndarray, halo: int, n: int, cyclic: bool,
                 pulse: np.ndarray, peaks: np.ndarray, subcarrier: float = 0.0) -> np.ndarray:
    """a_k = sum_j pulse[j] field[m] exp(-i 2 pi subcarrier m), m = peak_k - c + j (c = centre
    tap; field = fr + i fi, each padded by `halo`, length n; the index taken modulo n if
    cyclic, zero outside if one-shot; a cyclic waveform with a subcarrier must hold whole
    subcarrier cycles)."""
    out = np.empty(len(peaks), np.complex128)
    _project_kernel(fr, fi, int(halo), int(n), bool(cyclic),
                    np.ascontiguousarray(pulse, dtype=np.float64),
                    np.ascontiguousarray(peaks, dtype=np.int64), float(subcarrier), out)
    return out


def ideal_receiver(grid: SymbolGrid, fr: np.ndarray, fi: np.ndarray, halo: int,
                   n_field: int, cyclic: bool, zrot: np.ndarray,
                   u0: float, du: float, psi_index: np.ndarray, psi: np.ndarray,
                   detection: str, signal_gain: Callable[[np.ndarray], np.ndarray]
                   ) -> GenieSymbols:
    """The ideal receiver's quadratures for every symbol of `grid` captured completely.

    The emitted field is fr + i fi (float32, padded by `halo`, n_field samples); zrot is the
    de-rotated detection noise of the capture (complex64, SNU; modified in place)."""
    pulse = np.asarray(grid.pulse, dtype=np.float64)
    n_out = len(zrot)
    c = len(pulse) // 2
    half_mf = math.ceil((c + _MF_HALF) / du)
    margin = half_mf + _MF_HALF + 1
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
    a = _projections(fr, fi, halo, n_field, cyclic, pulse, peaks, grid.subcarrier)
    if grid.subcarrier:  # the noise back to baseband too (in place, in blocks: memory)
        for b in range(0, n_out, 1 << 20):
            k = np.arange(b, min(b + (1 << 20), n_out))
            zrot[b:b + len(k)] *= np.exp(-2j * np.pi * grid.subcarrier * (u0 + du * k)).astype(
                np.complex64)
    # matched filter on the output grid: the continuous pulse sampled every du player samples
    # (unit energy: sum h^2 = du sum p_c(c + du j)^2 = 1 for the band-limited pulse; normalised
    # exactly, as the noise must project with unit gain)
    taps = _interp(pulse, c + du * np.arange(-half_mf, half_mf + 1)).real
    taps = (taps / math.sqrt(float(np.sum(taps ** 2)))).astype(np.float32)
    z = np.full(len(pos), np.nan + 0j)
    overlap = half_mf + _MF_HALF + 2
    for b in range(0, n_out, _MF_BLOCK):  # in blocks with overlap: memory O(block)
        lo, hi = max(0, b - overlap), min(n_out, b + _MF_BLOCK + overlap)
        mf = oaconvolve(zrot[lo:hi].astype(np.complex64, copy=False), taps[::-1], mode="same")
        sel = valid & (pos >= b) & (pos < b + _MF_BLOCK)
        z[sel] = _interp(mf, pos[sel] - lo)
    angle = np.interp(pos, psi_index, psi)
    g = np.zeros(len(pos))
    g[valid] = signal_gain(pos[valid])
    if detection == "heterodyne":
        y = g * a + z
    else:
        y = (g * np.real(a * np.exp(1j * angle)) + z.real).astype(np.complex128)
    y[~valid] = np.nan
    return GenieSymbols(symbols=y, position=pos, angle_rad=angle)
