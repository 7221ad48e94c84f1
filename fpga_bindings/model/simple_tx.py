"""A simple transmitter waveform for simulations: Gaussian symbols, RRC pulses, one pilot tone.

Simulation stand-in until `dsp.transmitter` provides the project's waveform. The symbols come
from a seeded numpy generator so that simulations are reproducible: NEVER use this for key
material (real symbols come from a CSPRNG).

Scaling (docs/model.md): the pulse has unit energy on the player grid, so the matched-filter
projection of the field on symbol k returns x_k. The waveform's peak is put at DAC full scale;
`quad_per_lsb` (SNU per int16 code at the channel input) says how much the link must attenuate
(the VOA setting follows from the modulator's calibration, see `required_voa_db`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fpga_bindings.model.genie import SymbolGrid


def rrc_pulse(sps: int, rolloff: float, span_symbols: int) -> np.ndarray:
    """Root-raised-cosine taps at `sps` samples per symbol, unit energy, 2 span sps/2 + 1 taps.

    Closed form of the RRC impulse response, e.g. Proakis & Salehi, Digital Communications,
    5th ed., Sec. 9.2 (the raised-cosine spectrum's square root).
    """
    if sps < 2 or not 0.0 < rolloff <= 1.0 or span_symbols < 2 or span_symbols % 2:
        raise ValueError("rrc_pulse: need sps >= 2, 0 < rolloff <= 1, even span >= 2")
    t = np.arange(-span_symbols * sps // 2, span_symbols * sps // 2 + 1) / sps
    b = rolloff
    h = np.empty(len(t))
    for i, ti in enumerate(t):
        if abs(ti) < 1e-12:
            h[i] = 1.0 + b * (4.0 / np.pi - 1.0)
        elif abs(abs(4.0 * b * ti) - 1.0) < 1e-9:
            h[i] = (b / np.sqrt(2.0)) * ((1 + 2 / np.pi) * np.sin(np.pi / (4 * b))
                                         + (1 - 2 / np.pi) * np.cos(np.pi / (4 * b)))
        else:
            h[i] = ((np.sin(np.pi * ti * (1 - b)) + 4 * b * ti * np.cos(np.pi * ti * (1 + b)))
                    / (np.pi * ti * (1 - (4 * b * ti) ** 2)))
    return h / np.sqrt(np.sum(h * h))


@dataclass(frozen=True)
class Waveform:
    iq: np.ndarray  # int16 (n, 2) DAC codes at the player rate
    symbols: np.ndarray  # complex128, SNU at the channel input
    grid: SymbolGrid
    params: dict  # every parameter, for meta.json
    quad_per_lsb: float  # SNU (quadrature amplitude per player sample) per int16 code


def required_voa_db(quad_per_lsb: float, dac_fs_snu: float) -> float:
    """VOA attenuation, dB, that makes code c leave the transmitter as c * quad_per_lsb SNU
    when the modulator gives dac_fs_snu SNU at code 2^15."""
    return 20.0 * np.log10(dac_fs_snu / 32768.0 / quad_per_lsb)


def simple_waveform(n_symbols: int, sps: int, va_snu: float, player_sps: float,
                    rng: np.random.Generator, rolloff: float = 0.2, span_symbols: int = 32,
                    pilot_hz: float = 100e6, pilot_snu: float = 4.0,
                    dac_bits: int = 14) -> Waveform:
    """Gaussian-modulated symbols (variance va_snu per quadrature) plus a pilot tone of
    quadrature amplitude pilot_snu (SNU per player sample) at pilot_hz from the carrier."""
    if n_symbols < 1 or va_snu < 0 or pilot_snu < 0 or abs(pilot_hz) >= player_sps / 2:
        raise ValueError("simple_waveform: need n_symbols >= 1, va >= 0, pilot_snu >= 0, "
                         "|pilot_hz| below half the player rate")
    pulse = rrc_pulse(sps, rolloff, span_symbols)
    x = np.sqrt(va_snu) * (rng.standard_normal(n_symbols) + 1j * rng.standard_normal(n_symbols))
    first_peak = len(pulse) // 2
    n = (n_symbols - 1) * sps + len(pulse)
    up = np.zeros(n, np.complex128)
    up[first_peak:first_peak + n_symbols * sps:sps] = x
    field = np.convolve(up, pulse, mode="same")
    field += pilot_snu * np.exp(2j * np.pi * pilot_hz / player_sps * np.arange(n))
    step = 2 ** (16 - dac_bits)  # whole converter LSBs: no truncation bias in the DAC
    limit = 32767 // step
    peak = float(max(np.abs(field.real).max(), np.abs(field.imag).max()))
    quad_per_lsb = peak / (limit * step)
    codes = np.stack([field.real, field.imag], axis=1) / (quad_per_lsb * step)
    iq = (np.clip(np.rint(codes), -limit, limit) * step).astype(np.int16)
    params = dict(kind="simple-rrc-gaussian-pilot", n_symbols=n_symbols, sps=sps,
                  va_snu=va_snu, rolloff=rolloff, span_symbols=span_symbols,
                  pilot_hz=pilot_hz, pilot_snu=pilot_snu, first_peak=first_peak, length=n,
                  quad_per_lsb=quad_per_lsb)
    return Waveform(iq, x, SymbolGrid(pulse, sps, first_peak, n_symbols), params, quad_per_lsb)
