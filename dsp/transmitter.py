"""Alice's transmitter: one frame of the DAC waveform (int16 I/Q) and its secret symbols.

Frame layout (symbol slots at `sps` samples each; see docs/dsp.md):

    [guard G][preamble Lp][data N][postamble Lp][guard G]

- data: N complex Gaussian symbols, each quadrature N(0, V_A) in SNU, from ChaCha20(key);
- preamble / postamble: Zadoff-Chu sequences (different roots) at a higher power, public;
- guard: zero symbols, so that the circular pulse-shaping tails wrap into silence;
- every symbol is shaped by a unit-energy root-raised cosine (circularly, so that a cyclic
  player repeats the frame seamlessly) and the baseband is shifted to `signal_offset_hz`;
- continuous pilot tones are added; their frequencies (and the signal offset) are rounded to
  whole cycles per frame so that cyclic playback has no phase jump.

Units: the complex waveform s[n] is in "quadrature units per sample": a receiver that applies the
same unit-energy RRC as matched filter gets the symbols back in SNU, and vacuum noise of variance
1 per quadrature per sample comes out with variance 1. The int16 codes map back by
s[n] = (I[n] + j Q[n]) * meta["quad_per_lsb"].

DAC scaling: full scale (per I or Q component) = sum of pilot amplitudes (their worst-case
alignment) + k sigma_data, where sigma_data = sqrt(V_A / sps) is the data's per-component
standard deviation and k is chosen so that a Gaussian exceeds it with probability
`clip_probability` (two-sided); full scale is raised if the preamble's deterministic peak needs
more. Codes use the top `dac_bits` bits of int16.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numba as nb
import numpy as np
from scipy.special import erfcinv

from dsp.csprng_gauss import gaussian_symbols
from dsp.filters import rrc_taps
from dsp.preamble import zadoff_chu

FRAME_FORMAT = "cvqkd-dsp-frame/1"


@dataclass(frozen=True)
class Pilot:
    """A continuous pilot tone: frequency offset from the DAC carrier (Hz) and power in dB
    relative to the data's mean power per sample (2 V_A / sps, quadrature units)."""

    freq_hz: float
    power_db: float


@dataclass(frozen=True)
class TxConfig:
    """Transmitter settings. Rates in Hz, powers in dB, variances in SNU."""

    sample_rate_hz: float = 500e6  # DAC player complex rate (RFSoC 4x2: 4 GS/s / 8)
    symbol_rate_hz: float = 100e6
    rolloff: float = 0.2
    half_span: int = 32  # RRC truncated at +-half_span symbols
    v_a: float = 4.0  # modulation variance per quadrature, SNU
    signal_offset_hz: float = -75e6  # centre of the data band
    # Strong pilot: phase reference, far from the data band (its laser phase-noise skirt falls
    # into the band as 1/f^2). Weak pilot: with the strong one, a clock reference (the
    # difference of their phases is free of laser phase noise).
    pilots: tuple[Pilot, ...] = field(
        default_factory=lambda: (Pilot(125e6, 19.0), Pilot(45e6, 0.0))
    )
    preamble_len: int = 1021  # Zadoff-Chu length (odd; prime gives every root)
    preamble_roots: tuple[int, int] = (7, 11)  # preamble, postamble
    preamble_power_db: float = 16.0  # symbol power relative to data symbols (2 V_A)
    guard_symbols: int = 32
    dac_bits: int = 14
    clip_probability: float = 1e-9  # per data sample and component

    @property
    def sps(self) -> int:
        """Samples per symbol (the transmitter requires an integer ratio)."""
        r = self.sample_rate_hz / self.symbol_rate_hz
        if abs(r - round(r)) > 1e-9 or round(r) < 2:
            raise ValueError("sample_rate_hz / symbol_rate_hz must be an integer >= 2")
        return round(r)

    def validate(self) -> None:
        _ = self.sps
        if not 0 < self.rolloff <= 1:
            raise ValueError("rolloff must be in (0, 1]")
        if self.v_a <= 0:
            raise ValueError("v_a must be > 0 SNU")
        nyq = self.sample_rate_hz / 2
        edge = abs(self.signal_offset_hz) + self.symbol_rate_hz * (1 + self.rolloff) / 2
        if edge >= nyq:
            raise ValueError("data band exceeds the Nyquist band")
        if any(abs(p.freq_hz) >= nyq for p in self.pilots):
            raise ValueError("pilot beyond the Nyquist band")
        if not 2 <= self.dac_bits <= 16:
            raise ValueError("dac_bits must be in [2, 16]")
        if not 0 < self.clip_probability < 1:
            raise ValueError("clip_probability must be in (0, 1)")


@dataclass
class TxFrame:
    """One frame: DAC codes (n, 2) int16, data symbols (SNU, complex128), and public metadata."""

    iq_int16: np.ndarray
    symbols: np.ndarray
    meta: dict


@nb.njit(cache=True, nogil=True)
def _shift_sample(re: float, im: float, r: int, tone_hi: np.ndarray, tone_lo: np.ndarray,
                  cycles: int) -> tuple[float, float]:
    """(re + j im) exp(j 2 pi r / n) for r = cycles * (sample index) mod n, unchanged for
    cycles = 0."""
    if cycles == 0:
        return re, im
    c, s = _tone(r, tone_hi, tone_lo)
    return re * c - im * s, re * s + im * c


@nb.njit(cache=True, nogil=True)
def _shape_sample(slots: np.ndarray, taps: np.ndarray, sps: int, n: int,
                  j: int) -> tuple[float, float]:
    """Sample j of the circular shaping, summed over the slots in increasing index order (the
    wrapped copies of the frame at -n, 0, +n samples included)."""
    n_slots = slots.size
    n_taps = taps.size
    c = (n_taps - 1) // 2
    re = 0.0
    im = 0.0
    for p in (j - n, j, j + n):
        lo = max(-((n_taps - 1 - p - c) // sps), 0)  # ceil((p + c - n_taps + 1) / sps)
        hi = min((p + c) // sps, n_slots - 1)
        m = p + c - lo * sps
        for k in range(lo, hi + 1):
            re += slots[k].real * taps[m]
            im += slots[k].imag * taps[m]
            m -= sps
    return re, im


@nb.njit(cache=True, nogil=True)
def _branch_block8(s_re: np.ndarray, s_im: np.ndarray, k: int, branch: np.ndarray,
                   out: np.ndarray) -> None:
    """out[b] = sum_i (s_re + j s_im)[k + i + b] branch[i], b = 0..7, each summed in
    increasing i (sixteen running sums in registers: one pass over the branch taps serves eight
    output samples)."""
    r0 = r1 = r2 = r3 = r4 = r5 = r6 = r7 = 0.0
    i0 = i1 = i2 = i3 = i4 = i5 = i6 = i7 = 0.0
    for i in range(branch.size):
        t = branch[i]
        m = k + i
        r0 += s_re[m] * t
        r1 += s_re[m + 1] * t
        r2 += s_re[m + 2] * t
        r3 += s_re[m + 3] * t
        r4 += s_re[m + 4] * t
        r5 += s_re[m + 5] * t
        r6 += s_re[m + 6] * t
        r7 += s_re[m + 7] * t
        i0 += s_im[m] * t
        i1 += s_im[m + 1] * t
        i2 += s_im[m + 2] * t
        i3 += s_im[m + 3] * t
        i4 += s_im[m + 4] * t
        i5 += s_im[m + 5] * t
        i6 += s_im[m + 6] * t
        i7 += s_im[m + 7] * t
    out[0] = complex(r0, i0)
    out[1] = complex(r1, i1)
    out[2] = complex(r2, i2)
    out[3] = complex(r3, i3)
    out[4] = complex(r4, i4)
    out[5] = complex(r5, i5)
    out[6] = complex(r6, i6)
    out[7] = complex(r7, i7)


@nb.njit(cache=True, nogil=True)
def _shape_scatter(slots: np.ndarray, taps: np.ndarray, sps: int, n: int, tone_hi: np.ndarray,
                   tone_lo: np.ndarray, cycles: int) -> tuple[np.ndarray, float]:
    """_shape_circular in the scatter form: each slot adds its pulse at k*sps - centre + m
    (mod n), slots in increasing order, taps in increasing order."""
    re = np.zeros(n)
    im = np.zeros(n)
    c = (taps.size - 1) // 2
    for k in range(slots.size):
        a = slots[k]
        if a == 0:
            continue
        base = k * sps - c
        for m in range(taps.size):
            j = (base + m) % n
            re[j] += a.real * taps[m]
            im[j] += a.imag * taps[m]
    out = np.empty(n, dtype=np.complex128)
    peak = 0.0
    for j in range(n):
        x, y = _shift_sample(re[j], im[j], (cycles * j) % n, tone_hi, tone_lo, cycles)
        out[j] = complex(x, y)
        peak = max(peak, abs(x), abs(y))
    return out, peak


@nb.njit(cache=True, nogil=True)
def _shape_circular(slots: np.ndarray, taps: np.ndarray, sps: int, n: int,
                    tone_hi: np.ndarray, tone_lo: np.ndarray,
                    cycles: int) -> tuple[np.ndarray, float]:
    """Circular pulse shaping, sum_k slots[k] taps[m] at sample k*sps + m - centre (mod n),
    times the frequency shift exp(j 2 pi cycles i / n) (skipped for cycles = 0).

    Returns (waveform, peak of max(|re|, |im|)). Each output sample is the same sum, in the
    same (increasing slot) order, as the scatter form: away from the frame's ends the samples
    of one polyphase branch (j = r mod sps) see the same taps taps[j + c - k sps] at
    k = j // sps + offset + i, so eight of them at a time are accumulated tap by tap; the few
    samples near the ends, where the circular wrap enters, are summed one by one. Frames
    shorter than two pulses (the pulse may wrap more than once) use the scatter form itself.
    `tone_hi`, `tone_lo`: _tone_tables(n).
    """
    n_slots = slots.size
    n_taps = taps.size
    c = (n_taps - 1) // 2
    if n < 2 * (n_taps + sps):
        return _shape_scatter(slots, taps, sps, n, tone_hi, tone_lo, cycles)
    out = np.empty(n, dtype=np.complex128)
    s_re = np.zeros(n_slots + 8)  # zero tail: the last group of 8 may run past the end
    s_im = np.zeros(n_slots + 8)
    s_re[:n_slots] = slots.real
    s_im[:n_slots] = slots.imag
    peak = 0.0
    j_a = min(c + sps, n)  # first sample summed by branch blocks
    j_b = max(n - c - sps, j_a)  # end of the branch-block range
    for j in range(j_a):
        re, im = _shape_sample(slots, taps, sps, n, j)
        re, im = _shift_sample(re, im, (cycles * j) % n, tone_hi, tone_lo, cycles)
        out[j] = complex(re, im)
        peak = max(peak, abs(re), abs(im))
    for j in range(j_b, n):
        re, im = _shape_sample(slots, taps, sps, n, j)
        re, im = _shift_sample(re, im, (cycles * j) % n, tone_hi, tone_lo, cycles)
        out[j] = complex(re, im)
        peak = max(peak, abs(re), abs(im))
    acc = np.empty(8, dtype=np.complex128)
    for r in range(sps):
        j_first = j_a + (r - j_a) % sps  # first sample of branch r in [j_a, j_b)
        if j_first >= j_b:
            continue
        lo = -((n_taps - 1 - j_first - c) // sps)
        hi = (j_first + c) // sps
        branch = np.empty(hi - lo + 1)
        for i in range(branch.size):
            branch[i] = taps[j_first + c - (lo + i) * sps]
        count = (j_b - j_first + sps - 1) // sps
        r_step = (cycles * sps) % n  # tone-table index advance per branch sample
        r_tone = (cycles * j_first) % n
        for q0 in range(0, count, 8):
            _branch_block8(s_re, s_im, lo + q0, branch, acc)
            for b in range(min(8, count - q0)):
                j = j_first + (q0 + b) * sps
                re, im = _shift_sample(acc[b].real, acc[b].imag, r_tone, tone_hi, tone_lo,
                                        cycles)
                r_tone += r_step
                if r_tone >= n:
                    r_tone -= n
                out[j] = complex(re, im)
                peak = max(peak, abs(re), abs(im))
    return out, peak


@nb.njit(cache=True, nogil=True)
def _tones_quantise(x: np.ndarray, tone_hi: np.ndarray, tone_lo: np.ndarray, cycles: np.ndarray,
                    amps: np.ndarray, lsb: float, step: int, limit: int,
                    out: np.ndarray) -> int:
    """Add the tones amps[p] exp(j 2 pi cycles[p] i / n), round to codes (multiples of
    `step`), clip to +-limit; return the number of clipped components."""
    n = x.size
    clipped = 0
    step_r = cycles % n  # table index advance per sample, in [0, n)
    r = np.zeros(cycles.size, dtype=np.int64)  # cycles * i mod n, kept exactly in integers
    for i in range(n):
        re = x[i].real
        im = x[i].imag
        for p in range(cycles.size):
            c, s = _tone(r[p], tone_hi, tone_lo)
            re += amps[p] * c
            im += amps[p] * s
            r[p] += step_r[p]
            if r[p] >= n:
                r[p] -= n
        for comp in range(2):
            v = re if comp == 0 else im
            q = np.round(v / (lsb * step)) * step
            if q > limit:
                q = limit
                clipped += 1
            elif q < -limit:
                q = -limit
                clipped += 1
            out[i, comp] = np.int16(q)
    return clipped


_TONE_LO_BITS = 11  # tone index r = (h << 11) + l: two tables of ~sqrt(n) entries


def _tone_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(cos, sin) of 2 pi r / n factored as r = h 2**11 + l: rows h of the first table and
    rows l of the second (float64, shape (m, 2)). Every tone of an n-sample frame on the
    frame's frequency grid is exp(j 2 pi r / n) at r = cycles * i mod n, the index kept exactly
    in integers; the product of two table entries is within a few 1e-16 of the direct cos/sin,
    and both tables stay in cache whatever the stride."""
    lo = np.arange(1 << _TONE_LO_BITS, dtype=np.float64)
    hi = np.arange(((n - 1) >> _TONE_LO_BITS) + 1, dtype=np.float64) * (1 << _TONE_LO_BITS)
    w = 2.0 * np.pi / n
    return (np.stack([np.cos(w * hi), np.sin(w * hi)], axis=1),
            np.stack([np.cos(w * lo), np.sin(w * lo)], axis=1))


@nb.njit(cache=True, nogil=True)
def _tone(r: int, tone_hi: np.ndarray, tone_lo: np.ndarray) -> tuple[float, float]:
    """(cos, sin) of 2 pi r / n from the tables of _tone_tables(n)."""
    h = r >> _TONE_LO_BITS
    m = r & ((1 << _TONE_LO_BITS) - 1)
    ch, sh = tone_hi[h, 0], tone_hi[h, 1]
    cl, sl = tone_lo[m, 0], tone_lo[m, 1]
    return ch * cl - sh * sl, sh * cl + ch * sl


def frame_layout(config: TxConfig, n_data: int) -> dict:
    """Symbol-slot indices of the frame parts and the frame length in samples."""
    g, lp = config.guard_symbols, config.preamble_len
    n_slots = 2 * g + 2 * lp + n_data
    return {
        "preamble_start_symbol": g,
        "data_start_symbol": g + lp,
        "postamble_start_symbol": g + lp + n_data,
        "n_slots": n_slots,
        "n_samples": n_slots * config.sps,
    }


def _grid_cycles(freq_hz: float, fs: float, n: int) -> int:
    """Frequency rounded to whole cycles per frame of n samples."""
    return round(freq_hz / fs * n)


def preamble_symbols(config: TxConfig, which: int) -> np.ndarray:
    """Preamble (which=0) or postamble (which=1) symbols, quadrature units (public)."""
    amp = np.sqrt(2 * config.v_a * 10 ** (config.preamble_power_db / 10))
    return amp * zadoff_chu(config.preamble_len, config.preamble_roots[which])


def build_frame(config: TxConfig, n_data: int, key: bytes, stream_id: int = 0) -> TxFrame:
    """Build one frame of `n_data` secret symbols drawn from ChaCha20(key, stream_id)."""
    config.validate()
    if n_data < 1:
        raise ValueError("n_data must be >= 1")
    sps, fs = config.sps, config.sample_rate_hz
    lay = frame_layout(config, n_data)
    n = lay["n_samples"]

    symbols = gaussian_symbols(key, stream_id, n_data, config.v_a)
    slots = np.zeros(lay["n_slots"], dtype=np.complex128)
    lp = config.preamble_len
    slots[lay["preamble_start_symbol"]:lay["preamble_start_symbol"] + lp] = preamble_symbols(
        config, 0)
    slots[lay["data_start_symbol"]:lay["data_start_symbol"] + n_data] = symbols
    slots[lay["postamble_start_symbol"]:lay["postamble_start_symbol"] + lp] = preamble_symbols(
        config, 1)

    taps = rrc_taps(sps, config.rolloff, config.half_span)
    tone_hi, tone_lo = _tone_tables(n)
    sig_cycles = _grid_cycles(config.signal_offset_hz, fs, n)
    wave, pre_peak = _shape_circular(slots, taps, sps, n, tone_hi, tone_lo, sig_cycles)
    del slots

    data_sigma = np.sqrt(config.v_a / sps)  # per component, quadrature units
    pilot_meta = []
    pilot_amp_sum = 0.0
    cycles, amps = [], []
    for p in config.pilots:
        cyc = _grid_cycles(p.freq_hz, fs, n)
        amp = float(np.sqrt(2 * config.v_a / sps * 10 ** (p.power_db / 10)))
        cycles.append(cyc)
        amps.append(amp)
        pilot_amp_sum += amp
        pilot_meta.append({"freq_hz": cyc * fs / n, "amplitude": amp, "power_db": p.power_db})

    k = float(np.sqrt(2.0) * erfcinv(config.clip_probability))
    full_scale = pilot_amp_sum + max(k * data_sigma, pre_peak)
    step = 1 << (16 - config.dac_bits)
    code_max = (1 << (config.dac_bits - 1)) - 1  # in dac_bits codes
    lsb = full_scale / (code_max * step)  # quadrature units per int16 unit
    iq = np.empty((n, 2), dtype=np.int16)
    clipped = _tones_quantise(wave, tone_hi, tone_lo, np.array(cycles, dtype=np.int64),
                              np.array(amps, dtype=np.float64), lsb, step, code_max * step, iq)
    del wave

    meta = {
        "format": FRAME_FORMAT,
        "config": _config_dict(config),
        "sps": sps,
        "n_data": n_data,
        **lay,
        "signal_offset_hz": sig_cycles * fs / n,
        "pilots": pilot_meta,
        "preamble_amplitude": float(np.sqrt(2 * config.v_a * 10 ** (config.preamble_power_db
                                                                  / 10))),
        "quad_per_lsb": lsb,
        "full_scale_quad": full_scale,
        "clip_sigma": k,
        "clipped_components": int(clipped),
        "stream_id": int(stream_id),
    }
    return TxFrame(iq_int16=iq, symbols=symbols, meta=meta)


def _config_dict(config: TxConfig) -> dict:
    d = asdict(config)
    d["pilots"] = [asdict(p) for p in config.pilots]
    d["preamble_roots"] = list(config.preamble_roots)
    return d


def config_from_dict(d: dict) -> TxConfig:
    """Inverse of the `config` entry of a frame's metadata."""
    d = dict(d)
    d["pilots"] = tuple(Pilot(**p) for p in d.get("pilots", []))
    if "preamble_roots" in d:
        d["preamble_roots"] = tuple(d["preamble_roots"])
    return TxConfig(**d)
