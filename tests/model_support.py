"""Helpers for the link-model tests: a waveform, a capture, and independent estimators."""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import oaconvolve

from fpga_bindings.model.link import LinkConfig, LinkModel
from fpga_bindings.model.link_api import AdcSettings, FrontEnd, OpticalSwitch
from fpga_bindings.model.simple_tx import Waveform, required_voa_db, simple_waveform


def waveform(cfg: LinkConfig, n_symbols: int, sps: int = 8, va: float = 4.0,
             pilot_snu: float = 0.0, seed: int = 5) -> Waveform:
    return simple_waveform(n_symbols, sps, va, cfg.player_sps, np.random.default_rng(seed),
                           pilot_snu=pilot_snu, dac_bits=cfg.profile.dac_bits)


def capture(model: LinkModel, n: int, nco_hz: float | None = None, decimation: int = 8,
            chunk: int = 1 << 20) -> np.ndarray:
    nco = model.config.if_hz if nco_hz is None else nco_hz
    parts = list(model.capture(AdcSettings(n_samples=n, nco_hz=nco, decimation=decimation),
                               chunk=chunk))
    return np.concatenate(parts)


def run_waveform(cfg: LinkConfig, wf: Waveform, extra: int = 2000,
                 switch: OpticalSwitch = OpticalSwitch.SIGNAL) -> tuple[LinkModel, np.ndarray]:
    """Play `wf` once and capture it whole (ground truth on); returns (model, int16 capture)."""
    model = LinkModel(cfg)
    model.set_frontend(FrontEnd(switch=switch,
                                voa_db=required_voa_db(wf.quad_per_lsb, cfg.dac_fs_snu)))
    model.load_dac(wf.iq, cyclic=False)
    model.request_ground_truth(wf.grid)
    model.advance(max(0.0, cfg.delay_s - 1e-6))
    n = int(len(wf.iq) * (1 + 1e-4)) + extra
    return model, capture(model, n)


def estimate_t_xi(x: np.ndarray, y: np.ndarray, eta: float, v_el: float, k: float
                  ) -> tuple[float, float, float, float]:
    """Least-squares T and input-referred xi from real pairs y = sqrt(eta T k) x + z,
    Var z = 1 + v_el + eta T k xi, with their standard errors (large-sample)."""
    t = float(x @ y / (x @ x))
    s2 = float(np.mean((y - t * x) ** 2))
    big_t = t * t / (eta * k)
    xi = (s2 - 1.0 - v_el) / (eta * k * big_t)
    sd_t = math.sqrt(s2 / (x @ x))
    sd_big_t = 2 * t * sd_t / (eta * k)
    sd_xi = s2 * math.sqrt(2.0 / len(x)) / (eta * k * big_t) + abs(xi) * sd_big_t / big_t
    return big_t, xi, sd_big_t, sd_xi


def literal_ideal_receiver(adc: np.ndarray, gain_lsb: float, truth, pulse: np.ndarray,
                           derotate: bool) -> np.ndarray:
    """An ideal receiver written independently of the model: de-rotate the ADC record by the
    true phase, matched-filter with the pulse resampled by windowed-sinc evaluation (numpy),
    and read the output at the true symbol positions by the same evaluation."""
    z = (adc[:, 0] + 1j * adc[:, 1]) / gain_lsb
    if derotate:
        z = z * np.exp(-1j * truth.phase_fine)
    c = len(pulse) // 2
    du = truth.du
    half = math.ceil((c + 8) / du)
    taps = _sinc_eval(pulse.astype(complex), c + du * np.arange(-half, half + 1)).real
    taps *= math.sqrt(du)
    mf = oaconvolve(z, taps[::-1], mode="same")
    pos = truth.genie.position
    ok = ~np.isnan(truth.genie.symbols)
    out = np.full(len(pos), np.nan + 0j)
    out[ok] = _sinc_eval(mf, pos[ok])
    return out


def _sinc_eval(seq: np.ndarray, pos: np.ndarray, half: int = 24) -> np.ndarray:
    """Band-limited evaluation by a Hann-windowed sinc of half-width `half` (numpy, slow)."""
    i0 = np.floor(pos).astype(np.int64)
    out = np.zeros(len(pos), complex)
    for off in range(-half + 1, half + 1):
        idx = i0 + off
        x = pos - idx
        w = np.sinc(x) * 0.5 * (1 + np.cos(np.pi * x / half))
        inside = (idx >= 0) & (idx < len(seq))
        out[inside] += w[inside] * seq[idx[inside]]
    return out
