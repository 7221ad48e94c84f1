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


@nb.njit(cache=True)
def _shape_circular(slots: np.ndarray, taps: np.ndarray, sps: int, n: int) -> np.ndarray:
    """Circular pulse shaping: sum_k slots[k] taps[m] at sample k*sps + m - centre (mod n)."""
    out = np.zeros(n, dtype=np.complex128)
    c = (taps.size - 1) // 2
    for k in range(slots.size):
        a = slots[k]
        if a == 0:
            continue
        base = k * sps - c
        for m in range(taps.size):
            out[(base + m) % n] += a * taps[m]
    return out


@nb.njit(cache=True)
def _add_tone(x: np.ndarray, cycles: int, amp: float) -> None:
    """x[i] += amp exp(j 2 pi cycles i / n), with the phase reduced exactly in integers."""
    n = x.size
    w = 2.0 * np.pi / n
    for i in range(n):
        ph = w * ((cycles * i) % n)
        x[i] += amp * complex(np.cos(ph), np.sin(ph))


@nb.njit(cache=True)
def _quantise(x: np.ndarray, lsb: float, step: int, limit: int, out: np.ndarray) -> int:
    """Round to codes (multiples of `step`), clip to +-limit; return the number of clipped
    components."""
    clipped = 0
    for i in range(x.size):
        for comp in range(2):
            v = x[i].real if comp == 0 else x[i].imag
            q = np.round(v / (lsb * step)) * step
            if q > limit:
                q = limit
                clipped += 1
            elif q < -limit:
                q = -limit
                clipped += 1
            out[i, comp] = np.int16(q)
    return clipped


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
    wave = _shape_circular(slots, taps, sps, n)
    sig_cycles = _grid_cycles(config.signal_offset_hz, fs, n)
    if sig_cycles:
        shift = np.zeros(n, dtype=np.complex128)
        _add_tone(shift, sig_cycles, 1.0)
        wave *= shift
        del shift
    pre_peak = float(max(np.max(np.abs(wave.real)), np.max(np.abs(wave.imag))))

    data_sigma = np.sqrt(config.v_a / sps)  # per component, quadrature units
    pilot_meta = []
    pilot_amp_sum = 0.0
    for p in config.pilots:
        cyc = _grid_cycles(p.freq_hz, fs, n)
        amp = float(np.sqrt(2 * config.v_a / sps * 10 ** (p.power_db / 10)))
        _add_tone(wave, cyc, amp)
        pilot_amp_sum += amp
        pilot_meta.append({"freq_hz": cyc * fs / n, "amplitude": amp, "power_db": p.power_db})

    k = float(np.sqrt(2.0) * erfcinv(config.clip_probability))
    full_scale = pilot_amp_sum + max(k * data_sigma, pre_peak)
    step = 1 << (16 - config.dac_bits)
    code_max = (1 << (config.dac_bits - 1)) - 1  # in dac_bits codes
    lsb = full_scale / (code_max * step)  # quadrature units per int16 unit
    iq = np.empty((n, 2), dtype=np.int16)
    clipped = _quantise(wave, lsb, step, code_max * step, iq)

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
