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


_FIR_BLOCK = 256  # outputs of one polyphase branch per FIR pass (accumulators stay in L1)


@nb.njit(cache=True, nogil=True)
def _branch_fir(s_re: np.ndarray, s_im: np.ndarray, k: int, branch: np.ndarray,
                out_r: np.ndarray, out_i: np.ndarray) -> None:
    """out[b] = sum_i (s_re + j s_im)[k + b + i] branch[i], b < len(out), each summed from 0.0
    in increasing i. Four taps per pass over the outputs, each output still summed in the
    same order ((a + x_i t_i) + x_i+1 t_i+1) + ...: the loop over b vectorises without
    reassociating any sum (no fastmath, no fused multiply-add)."""
    m = out_r.shape[0]
    nt = branch.shape[0]
    for b in range(m):
        out_r[b] = 0.0
        out_i[b] = 0.0
    i = 0
    while i + 4 <= nt:
        t0 = branch[i]
        t1 = branch[i + 1]
        t2 = branch[i + 2]
        t3 = branch[i + 3]
        xr = s_re[k + i:k + i + m + 3]
        xi = s_im[k + i:k + i + m + 3]
        for b in range(m):
            out_r[b] = (((out_r[b] + xr[b] * t0) + xr[b + 1] * t1) + xr[b + 2] * t2
                        ) + xr[b + 3] * t3
            out_i[b] = (((out_i[b] + xi[b] * t0) + xi[b + 1] * t1) + xi[b + 2] * t2
                        ) + xi[b + 3] * t3
        i += 4
    while i < nt:
        t = branch[i]
        xr = s_re[k + i:k + i + m]
        xi = s_im[k + i:k + i + m]
        for b in range(m):
            out_r[b] += xr[b] * t
            out_i[b] += xi[b] * t
        i += 1


@nb.njit(cache=True, nogil=True)
def _shape_scatter(slots: np.ndarray, taps: np.ndarray, sps: int, n: int, tone_hi: np.ndarray,
                   tone_lo: np.ndarray, cycles: int) -> tuple[np.ndarray, float]:
    """Circular shaping in the scatter form, for frames shorter than two pulses (the pulse may
    wrap more than once): each slot adds its pulse at k*sps - centre + m (mod n), slots in
    increasing order, taps in increasing order; then the shift. Returns (waveform, peak of
    max(|re|, |im|))."""
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
def _code(v: float, unit: float, step: int, limit: int) -> tuple[int, int]:
    """(code, clipped): v rounded (half to even) to a multiple of `step` at `unit` quadrature
    units per multiple, clipped to +-limit; clipped is 1 if it was."""
    q = np.round(v / unit) * step
    if q > limit:
        return limit, 1
    if q < -limit:
        return -limit, 1
    return int(q), 0


@nb.njit(cache=True, nogil=True)
def _emit(re: float, im: float, r_pil: np.ndarray, tone_hi: np.ndarray, tone_lo: np.ndarray,
          amps: np.ndarray, unit: float, step: int, limit: int, out: np.ndarray,
          j: int) -> int:
    """out[j] = codes (`_code`) of (re + j im) + sum_p amps[p] exp(j 2 pi r_pil[p] / n), the
    pilots added in order. Returns the number of clipped components."""
    for p in range(amps.size):
        c, s = _tone(r_pil[p], tone_hi, tone_lo)
        re += amps[p] * c
        im += amps[p] * s
    q_re, clip_re = _code(re, unit, step, limit)
    q_im, clip_im = _code(im, unit, step, limit)
    out[j, 0] = q_re
    out[j, 1] = q_im
    return clip_re + clip_im


@nb.njit(cache=True, nogil=True)
def _tone_indices(r: int, r_step: int, n: int, out: np.ndarray) -> int:
    """out[b] = r + b r_step (mod n), for 0 <= r, r_step < n; returns the next index."""
    for b in range(out.shape[0]):
        out[b] = r
        r += r_step
        if r >= n:
            r -= n
    return r


@nb.njit(cache=True, nogil=True)
def _emit_block(x: np.ndarray, y: np.ndarray, idx: np.ndarray, shift: bool,
                tone_hi: np.ndarray, tone_lo: np.ndarray, amps: np.ndarray, unit: float,
                step: int, limit: int, out: np.ndarray, j0: int, sps: int) -> tuple[float, int]:
    """`_shift_sample`, peak and `_emit` for a block of samples j0 + b sps (b < len(x)), as
    separate loops over the block (so that the compiler can vectorise them): (x + j y)[b]
    shifted by the tone at index idx[0, b] (if `shift`), then the pilots p at idx[p + 1, b],
    then the codes into out. x and y are overwritten. Returns (peak of the shifted block,
    clipped components)."""
    m = x.shape[0]
    peak = 0.0
    if shift:
        for b in range(m):
            c, s = _tone(idx[0, b], tone_hi, tone_lo)
            re = x[b] * c - y[b] * s
            im = x[b] * s + y[b] * c
            x[b] = re
            y[b] = im
    for b in range(m):
        peak = max(peak, abs(x[b]), abs(y[b]))
    for p in range(amps.size):
        a = amps[p]
        for b in range(m):
            c, s = _tone(idx[p + 1, b], tone_hi, tone_lo)
            x[b] += a * c
            y[b] += a * s
    clipped = 0
    for b in range(m):
        q_re, clip_re = _code(x[b], unit, step, limit)
        q_im, clip_im = _code(y[b], unit, step, limit)
        out[j0 + b * sps, 0] = q_re
        out[j0 + b * sps, 1] = q_im
        clipped += clip_re + clip_im
    return peak, clipped


@nb.njit(cache=True, nogil=True)
def _synthesise(slots: np.ndarray, taps: np.ndarray, sps: int, n: int, tone_hi: np.ndarray,
                tone_lo: np.ndarray, sig_cycles: int, pil_cycles: np.ndarray, amps: np.ndarray,
                unit: float, step: int, limit: int, out: np.ndarray) -> tuple[float, int]:
    """Every sample of the frame into out (n, 2) int16, in one pass: the circular shaping
    sum_k slots[k] taps[m] at sample k*sps + m - centre (mod n), summed from 0.0 in increasing
    k; the shift by exp(j 2 pi sig_cycles i / n) (none for 0); the pilots amps[p] exp(j 2 pi
    pil_cycles[p] i / n) and the quantisation (`_emit`).

    Returns (peak of max(|re|, |im|) of the shifted waveform before the pilots, clipped
    components). Away from the frame's ends the samples of one polyphase branch
    (j = r mod sps) see the same taps taps[j + c - k sps] at k = j // sps + offset + i, so
    they are summed a block at a time (`_branch_fir`); the samples near the ends, where the
    circular wrap enters, one by one (`_shape_sample`, the same sums in the same order).
    Tone indices (cycles * j mod n) are kept exactly in integers. `tone_hi`, `tone_lo`:
    _tone_tables(n).
    """
    n_taps = taps.size
    c = (n_taps - 1) // 2
    n_pil = amps.size
    r_pil = np.empty(n_pil, np.int64)
    peak = 0.0
    clipped = 0
    if n < 2 * (n_taps + sps):
        wave, peak = _shape_scatter(slots, taps, sps, n, tone_hi, tone_lo, sig_cycles)
        for j in range(n):
            for p in range(n_pil):
                r_pil[p] = (pil_cycles[p] * j) % n
            clipped += _emit(wave[j].real, wave[j].imag, r_pil, tone_hi, tone_lo, amps, unit,
                             step, limit, out, j)
        return peak, clipped
    s_re = slots.real.copy()
    s_im = slots.imag.copy()
    j_a = c + sps  # first sample summed by branch blocks
    j_b = n - c - sps  # end of the branch-block range
    for end in range(2):  # the two ends: [0, j_a) and [j_b, n)
        for j in range(0, j_a) if end == 0 else range(j_b, n):
            re, im = _shape_sample(slots, taps, sps, n, j)
            re, im = _shift_sample(re, im, (sig_cycles * j) % n, tone_hi, tone_lo, sig_cycles)
            peak = max(peak, abs(re), abs(im))
            for p in range(n_pil):
                r_pil[p] = (pil_cycles[p] * j) % n
            clipped += _emit(re, im, r_pil, tone_hi, tone_lo, amps, unit, step, limit, out, j)
    acc_r = np.empty(_FIR_BLOCK)
    acc_i = np.empty(_FIR_BLOCK)
    idx = np.empty((n_pil + 1, _FIR_BLOCK), np.int64)  # tone indices of a block
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
        r_tone = (sig_cycles * j_first) % n
        for p in range(n_pil):
            r_pil[p] = (pil_cycles[p] * j_first) % n
        for q0 in range(0, count, _FIR_BLOCK):
            mq = min(_FIR_BLOCK, count - q0)
            _branch_fir(s_re, s_im, lo + q0, branch, acc_r[:mq], acc_i[:mq])
            r_tone = _tone_indices(r_tone, (sig_cycles * sps) % n, n, idx[0, :mq])
            for p in range(n_pil):
                r_pil[p] = _tone_indices(r_pil[p], (pil_cycles[p] * sps) % n, n,
                                         idx[p + 1, :mq])
            pk, cl = _emit_block(acc_r[:mq], acc_i[:mq], idx[:, :mq], sig_cycles != 0,
                                 tone_hi, tone_lo, amps, unit, step, limit, out,
                                 j_first + q0 * sps, sps)
            peak = max(peak, pk)
            clipped += cl
    return peak, clipped


@nb.njit(cache=True, nogil=True)
def _peak_over(slots: np.ndarray, taps: np.ndarray, sps: int, n: int, tone_hi: np.ndarray,
               tone_lo: np.ndarray, cycles: int, ranges: np.ndarray) -> float:
    """max(|re|, |im|) of the shaped and shifted samples j in [ranges[i, 0], ranges[i, 1])."""
    peak = 0.0
    for i in range(ranges.shape[0]):
        for j in range(ranges[i, 0], ranges[i, 1]):
            re, im = _shape_sample(slots, taps, sps, n, j)
            re, im = _shift_sample(re, im, (cycles * j) % n, tone_hi, tone_lo, cycles)
            peak = max(peak, abs(re), abs(im))
    return peak


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
    step = 1 << (16 - config.dac_bits)
    code_max = (1 << (config.dac_bits - 1)) - 1  # in dac_bits codes
    iq = np.empty((n, 2), dtype=np.int16)

    def synthesise(scale_peak: float) -> tuple[float, float, float, int]:
        """Frame codes for a full scale set by `scale_peak`; (full scale, lsb, waveform peak,
        clipped components)."""
        full_scale = pilot_amp_sum + max(k * data_sigma, scale_peak)
        lsb = full_scale / (code_max * step)  # quadrature units per int16 unit
        peak, clipped = _synthesise(slots, taps, sps, n, tone_hi, tone_lo, sig_cycles,
                                    np.array(cycles, dtype=np.int64),
                                    np.array(amps, dtype=np.float64), lsb * step, step,
                                    code_max * step, iq)
        return full_scale, lsb, peak, clipped

    # The full scale depends on the peak of the whole shaped waveform, known only after the
    # pass that quantises it. The preamble and postamble (16 dB above the data) set it in
    # practice: scale by their peak, and redo the pass in the rare frame where another sample
    # sets it. Either way the codes are those of the exact peak.
    c = (taps.size - 1) // 2
    ranges = np.array([[lay[f"{part}_start_symbol"] * sps - c,
                        (lay[f"{part}_start_symbol"] + lp) * sps + c + 1]
                       for part in ("preamble", "postamble")], dtype=np.int64).clip(0, n)
    guess = _peak_over(slots, taps, sps, n, tone_hi, tone_lo, sig_cycles, ranges)
    full_scale, lsb, peak, clipped = synthesise(guess)
    if max(k * data_sigma, peak) != max(k * data_sigma, guess):
        full_scale, lsb, peak, clipped = synthesise(peak)

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
