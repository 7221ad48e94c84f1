"""Frame layouts for a given player/capture rate: where the data band and the pilots sit, and
the strong pilot's power for a planned laser linewidth (docs/dsp.md, "Wide capture").

The excess noise the receiver adds through the phase reference has two terms that trade
through the strong pilot's power P_A (Alice's side, SNU per sample, complex):

- tracking error of the optimal phase smoother, V_A sqrt(q r) / 2 with q = 2 pi dnu / fs
  (rad^2 per sample) and r = (1 + v_el) / (g^2 P_A) (g^2 = T eta / 2, heterodyne), and
- the pilot's Lorentzian phase-noise skirt in the data band, input-referred
  P_A q / (2 (2 pi F)^2) (F: pilot-to-data distance, cycles per sample; no g: the skirt and
  the data suffer the same loss),

so the data band goes to one edge of the down-converter's pass band and the strong pilot to
the other (largest F), and P_A is the minimum of the sum:
P_A = [(V_A / 2) (2 pi F)^2 sqrt((1 + v_el) / (g^2 q))]^(2/3).
"""

from __future__ import annotations

import numpy as np

from dsp.transmitter import Pilot, TxConfig

# RFSoC down-converter (decimation filters) pass band, fraction of the output rate: flat to
# +-0.4 fs (+-200 MHz at 500 MS/s, +-400 MHz at 1 GS/s)
PASS_BAND = 0.4


def optimal_pilot_power(v_a: float, distance: float, q: float, g2: float, v_el: float) -> float:
    """Strong-pilot power per sample (SNU, complex, at Alice) minimising tracking error plus
    skirt; distance in cycles per sample, q in rad^2 per sample, g2 = T eta / 2."""
    if min(v_a, distance, q, g2) <= 0 or v_el < 0:
        raise ValueError("v_a, distance, q, g2 must be > 0 and v_el >= 0")
    return float((0.5 * v_a * (2 * np.pi * distance) ** 2
                  * np.sqrt((1 + v_el) / (g2 * q))) ** (2 / 3))


def added_noise_model(p_a: float, v_a: float, distance: float, q: float, g2: float,
                      v_el: float) -> tuple[float, float]:
    """(tracking, skirt) terms of the model above, input-referred SNU."""
    tracking = 0.5 * v_a * np.sqrt(q * (1 + v_el) / (g2 * p_a))
    skirt = p_a * q / (2 * (2 * np.pi * distance) ** 2)
    return float(tracking), float(skirt)


def edge_layout(sample_rate_hz: float, planned_linewidth_hz: float, *,
                symbol_rate_hz: float = 100e6, rolloff: float = 0.2, v_a: float = 4.0,
                max_lo_offset_hz: float = 50e6, transmittance_eta: float = 0.316 * 0.7,
                v_el: float = 0.1, clock_pilot_fraction: float = 0.1) -> TxConfig:
    """TxConfig with the data band at the bottom edge of the pass band (+-PASS_BAND of the
    rate, keeping `max_lo_offset_hz` of margin for the LO offset), the strong pilot at the top
    edge, the weak clock pilot at `clock_pilot_fraction` of the rate (0 dB re data), and the
    strong pilot's power from `optimal_pilot_power` for the planned combined linewidth (Hz) and
    the link's planned T eta and v_el. The receiver needs none of these inputs: the frame's
    meta carries the frequencies and amplitudes."""
    if planned_linewidth_hz <= 0:
        raise ValueError("planned_linewidth_hz must be > 0")
    edge = PASS_BAND * sample_rate_hz - max_lo_offset_hz
    half_band = 0.5 * (1 + rolloff) * symbol_rate_hz
    data_centre = -(edge - half_band)
    weak = clock_pilot_fraction * sample_rate_hz
    if data_centre + half_band >= weak or edge <= weak or data_centre >= 0:
        raise ValueError(f"{sample_rate_hz:g} S/s too narrow for a {symbol_rate_hz:g} Bd band, "
                         f"two pilots and +-{max_lo_offset_hz:g} Hz of LO offset")
    distance = (edge - data_centre) / sample_rate_hz
    q = 2 * np.pi * planned_linewidth_hz / sample_rate_hz
    p_a = optimal_pilot_power(v_a, distance, q, transmittance_eta / 2, v_el)
    sps = sample_rate_hz / symbol_rate_hz
    power_db = 10 * np.log10(p_a / (2 * v_a / sps))
    cfg = TxConfig(sample_rate_hz=sample_rate_hz, symbol_rate_hz=symbol_rate_hz, rolloff=rolloff,
                   v_a=v_a, signal_offset_hz=data_centre,
                   pilots=(Pilot(edge, round(float(power_db), 2)), Pilot(weak, 0.0)))
    cfg.validate()
    return cfg
