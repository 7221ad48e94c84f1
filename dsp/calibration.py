"""Shot-noise and electronic-noise calibration records and their variance through each frame's
receiver chain, computed once per calibration rather than once per frame.

The receiver's SNU is N0 = N_shot - N_el, where N_shot and N_el are the per-quadrature
variances of the two records (LO only; LO off) through the frame's linear chain (pilot-smoother
subtraction, carrier shift, matched filter at one position per symbol). The chain differs
slightly between frames (smoother coefficient a, pilot frequency f1, clock), so both are needed
per frame; running the records through the chain every frame cost as much as a main pass.

`Calibration` runs the records through the chain directly (`direct_variance`) on the first
frame that uses them, and for later frames carries that result over with the ratio of the
expected variances under the records' power spectral densities (Welch estimate over the whole
record, once per record):

    N(frame) = N_direct(reference) * Q(frame) / Q(reference),
    Q = sum_f S(f) (1 - H(f - f1))^2 |P(f - f1 + f_c)|^2,

H: the smoother's response (1-a)^2 / |1 - a exp(-j 2 pi nu)|^2, P: the matched filter (its
squared response averaged over the table's fractional phases), f_c: the carrier shift (cycles
per Bob sample). Q's own errors cancel in the ratio to first order, so the carried value stays
the direct pass's statistic (same samples, same positions) moved by the chain's expected change.
When the predicted change exceeds `tolerance` the frame gets a direct pass again and becomes
the reference (docs/dsp.md, "Calibration").
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.fft

from dsp import kernels
from dsp.chain import Chain, check_iq

PILOT_SHIFT_PER_ROOT_SAMPLE = 0.002 / np.sqrt(5.25e6)  # cycles per sample (Calibration)
PSD_NFFT = 512  # Welch segment: 1 MHz bins at 500 MS/s (the filter's roll-off spans 20 MHz)
PSD_MAX_SAMPLES = 1 << 24  # the whole record (a shorter part carried pilot shifts 3x worse)


_NO_SAMPLES = np.zeros((0, 2), dtype=np.int16)


@dataclass(frozen=True)
class Grid:
    """Positions of the direct pass: from `lo` to `hi` (samples), in chunks of `chunk` samples,
    each chunk's positions at chunk start + k * step."""

    lo: int
    hi: int
    step: float
    chunk: int = 1 << 16

    @classmethod
    def for_chain(cls, chain: Chain, n: int, step: float) -> Grid:
        """Every position whose filter and smoother support lies inside n samples."""
        taps = chain.table.shape[1]
        return cls(taps + chain.margin, n - taps - chain.margin, float(step))


def direct_variance(iq: np.ndarray, chain: Chain, grid: Grid) -> float:
    """Per-quadrature variance (ADC units^2) of a calibration record through the same chain as
    the signal: the pilot smoother's subtraction (a linear filter 1 - H that also scales the
    data band slightly: (1 - H) ~ 0.99 at 100 kHz linewidth), the carrier shift and the
    matched filter at the grid's positions (one per symbol), in chunks. The pilot-phase
    correction is left out: on the signal it is referenced to the pilot (independent of the
    noise in the data band); here there is no pilot, and rotating noise by its own smoothed
    phase reshapes it."""
    taps = chain.table.shape[1]
    cal = chain.on(iq)
    acc, acc2, cnt = 0j, 0.0, 0
    for lo in range(grid.lo, grid.hi, grid.chunk):
        hi = min(lo + grid.chunk, grid.hi)
        v, s0, _ = cal.corrected(lo - taps, hi + taps, rotate=False)
        pos = lo + np.arange(0.0, hi - lo, grid.step)
        y = cal.sample(pos, v, s0)
        acc += y.sum()
        acc2 += float(np.sum(y.real * y.real + y.imag * y.imag))  # no BLAS (see receiver)
        cnt += y.size
    mean = acc / cnt
    return float((acc2 / cnt - abs(mean) ** 2) / 2)


def record_psd(iq: np.ndarray, nfft: int = PSD_NFFT, max_samples: int = PSD_MAX_SAMPLES,
               batch: int = 512) -> np.ndarray:
    """Welch estimate of a complex record's power spectral density (Hann window, segments
    without overlap) over its first `max_samples` samples, at frequencies k / nfft cycles per
    sample (FFT order); the scale is arbitrary (only ratios are used)."""
    nseg = min(iq.shape[0], max_samples) // nfft
    if nseg < 1:
        raise ValueError("calibration record shorter than one PSD segment")
    win = np.hanning(nfft)
    acc = np.zeros(nfft)
    buf = np.empty(batch * nfft, dtype=np.complex128)
    for s in range(0, nseg, batch):
        e = min(nseg, s + batch)
        z = buf[:(e - s) * nfft]
        kernels.to_complex(np.ascontiguousarray(iq[s * nfft:e * nfft]), z)
        z = z.reshape(e - s, nfft)
        z *= win
        z = scipy.fft.fft(z, axis=1, overwrite_x=True)
        acc += np.sum(z.real * z.real + z.imag * z.imag, axis=0)
    return acc / nseg


def filter_power_response(table: np.ndarray, shift: float, nfft: int) -> np.ndarray:
    """|P(k / nfft + shift)|^2, k = 0..nfft-1, of the matched filter (frequencies in cycles per
    sample), averaged over the table's fractional-delay rows (every 16th; the last row repeats
    the first, shifted): the rows' mean autocorrelation, modulated by the shift, then one FFT."""
    rows = table[:-1:16]
    taps = rows.shape[1]
    m = 1 << int(np.ceil(np.log2(2 * taps)))
    acf = np.fft.irfft(np.mean(np.abs(np.fft.rfft(rows, m, axis=1)) ** 2, axis=0), m)
    lags = np.arange(-(taps - 1), taps)
    g = np.zeros(nfft, dtype=np.complex128)
    g[lags % nfft] = acf[lags % m] * np.exp(-2j * np.pi * shift * lags)
    return np.fft.fft(g).real


def chain_gain(psd: np.ndarray, chain: Chain) -> float:
    """Expected output power Q of the chain for a record of PSD `psd` (arbitrary scale)."""
    f = np.arange(psd.size) / psd.size
    a = chain.a
    h = (1 - a) ** 2 / (1 + a * a - 2 * a * np.cos(2 * np.pi * (f - chain.f1)))
    f_c = chain.cw * chain.track.ratio / (2 * np.pi)  # carrier shift, cycles per Bob sample
    p2 = filter_power_response(chain.table, f_c - chain.f1, psd.size)
    return float(np.sum(psd * (1 - h) ** 2 * p2))


@dataclass
class _Reference:
    """The chain of the last direct pass and its results."""

    chain: Chain
    variances: tuple[float, float | None]
    gains: tuple[float, float | None] | None = None  # Q under each record's PSD


class Calibration:
    """The shot-noise record (LO only) and the electronic-noise record (LO off, may be None) of
    one calibration, int16 (n, 2) I/Q each, and their variances through the frames' chains.

    Build one per calibration and pass it to `dsp.receiver.receive(..., calibration=...)` for
    every frame until the next calibration. The records are kept read-only (in place if they
    own their memory, else as copies: `_frozen`), so results can never come from records
    changed after construction.
    A frame's chain gets a direct pass (and becomes the reference) unless the predicted
    relative change of both variances from the reference is within `tolerance` and its pilot
    frequency within `max_pilot_shift` (cycles per sample) of the reference's: a shift moves
    the band over other samples' spectrum, and the carried value then departs from the direct
    pass by that spectrum's own fluctuation, which grows with the shift and falls as
    1/sqrt(samples) (measured on 5.3 M-sample model records: 2e-5 of N0 and v_el at 0.002,
    4e-5 / 6e-5 at 0.005, 4e-4 / 7e-4 at 0.02 cycles per sample; smoother changes carry within
    2e-7). The default max_pilot_shift, PILOT_SHIFT_PER_ROOT_SAMPLE sqrt(n), is 0.002 cycles
    per sample (1 MHz at 500 MS/s) for 5.3 M samples. Thread-safe."""

    def __init__(self, shot_iq: np.ndarray, elec_iq: np.ndarray | None = None,
                 tolerance: float = 2e-3, max_pilot_shift: float | None = None, *,
                 copy: bool = True) -> None:
        """copy=False keeps writeable records as they are: only for a calibration used once
        and dropped (the receiver's own, when it is given the arrays)."""
        self._records = tuple(None if r is None else _frozen(r, name, copy) for r, name in
                              ((shot_iq, "shot-noise capture"),
                               (elec_iq, "electronic-noise capture")))
        if max_pilot_shift is None:
            max_pilot_shift = PILOT_SHIFT_PER_ROOT_SAMPLE * np.sqrt(self.shot.shape[0])
        if not (tolerance >= 0 and max_pilot_shift >= 0):
            raise ValueError("tolerance and max_pilot_shift must be >= 0")
        self.tolerance, self.max_pilot_shift = float(tolerance), float(max_pilot_shift)
        self._psds: tuple[np.ndarray, np.ndarray | None] | None = None
        self._ref: _Reference | None = None
        self._lock = threading.Lock()
        self.direct_passes = 0  # how many frames needed a direct pass

    @property
    def shot(self) -> np.ndarray:
        return self._records[0]

    @property
    def elec(self) -> np.ndarray | None:
        return self._records[1]

    def variances(self, chain: Chain, step: float) -> tuple[tuple[float, float | None], dict]:
        """(N_shot, N_el) per quadrature (ADC units^2; N_el None without the record) through
        `chain` with one position every `step` samples, and a JSON-serialisable note of how
        they were obtained ("direct" pass or "carried" with the factors Q(frame)/Q(ref))."""
        with self._lock:
            ref = self._ref
            shift = None if ref is None else abs((chain.f1 - ref.chain.f1 + 0.5) % 1.0 - 0.5)
            if (ref is not None and shift <= self.max_pilot_shift
                    and _same_structure(ref.chain, chain)):
                factors = self._factors(ref, chain)
                if max(abs(f - 1) for f in factors if f is not None) <= self.tolerance:
                    out = tuple(None if v is None else v * f
                                for v, f in zip(ref.variances, factors, strict=True))
                    return out, {"method": "carried", "factors": list(factors),
                                 "pilot_shift": shift}
            grids = tuple(None if r is None else _grid(r, chain, step, name) for r, name in
                          zip(self._records, ("shot-noise capture", "electronic-noise capture"),
                              strict=True))
            # keep the chain's parameters, not its frame's samples (a frame-long array)
            self._ref = _Reference(chain.on(_NO_SAMPLES), self._direct(chain, grids))
            self.direct_passes += 1
            return self._ref.variances, {"method": "direct"}

    def _direct(self, chain: Chain, grids: tuple[Grid, Grid | None]
                ) -> tuple[float, float | None]:
        shot, elec = self._records
        if elec is None:
            return direct_variance(shot, chain, grids[0]), None
        # independent passes through the same (read-only) chain; the kernels release the GIL
        with ThreadPoolExecutor(max_workers=1) as pool:
            n_el = pool.submit(direct_variance, elec, chain, grids[1])
            return direct_variance(shot, chain, grids[0]), n_el.result()

    def _factors(self, ref: _Reference, chain: Chain) -> tuple[float, float | None]:
        if self._psds is None:
            self._psds = tuple(None if r is None else record_psd(r) for r in self._records)
        if ref.gains is None:
            ref.gains = tuple(None if p is None else chain_gain(p, ref.chain)
                              for p in self._psds)
        return tuple(None if p is None else chain_gain(p, chain) / g
                     for p, g in zip(self._psds, ref.gains, strict=True))


def _frozen(iq: np.ndarray, name: str, copy: bool) -> np.ndarray:
    """The record, read-only: as it is if neither it nor any array it views is writeable (e.g.
    a read-only memory map); made read-only in place if it owns its memory (no copy of a
    frame-long record; the caller's array becomes read-only too); else a read-only copy (a
    view of a buffer someone may overwrite). copy=False: the array as it is."""
    check_iq(iq, name)
    if not copy:
        return iq
    base = iq
    while isinstance(base, np.ndarray) and not base.flags.writeable:
        base = base.base
    if not isinstance(base, np.ndarray):
        return iq
    if iq.base is None:
        iq.flags.writeable = False
        return iq
    iq = np.array(iq)
    iq.flags.writeable = False
    return iq


def _grid(iq: np.ndarray, chain: Chain, step: float, name: str) -> Grid:
    n, taps = iq.shape[0], chain.table.shape[1]
    if n < 10 * taps + 2 * chain.margin:
        raise ValueError(f"{name} too short")
    return Grid.for_chain(chain, n, step)


def _same_structure(a: Chain, b: Chain) -> bool:
    """Chains whose variances may be carried over: same filter length and pilot-to-data
    carrier (the frame layout), clock within 100 ppm."""
    return (a.table.shape == b.table.shape and a.cw == b.cw
            and abs(a.track.ratio / b.track.ratio - 1) < 1e-4)
