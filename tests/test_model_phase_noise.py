"""The link model's laser phase-noise skirt against the continuous-time Lorentzian.

A strong tone through the model with linewidth dnu: its skirt in the capture, relative to the
tone's power, must be dnu / (2 pi (f^2 + dnu^2 / 4)) per Hz at every offset f inside the
capture band, as behind a receiver whose decimation filter removes the phase noise beyond its
pass band before sampling. A phase random walk per output sample instead reads
(pi x / sin(pi x))^2 too high at x = f / fs (2.05x at 0.45): the old behaviour fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import welch

from dsp.ddc import decimate_iq
from fpga_bindings.model.link import LinkConfig, LinkModel
from fpga_bindings.model.link_api import AdcSettings, FrontEnd
from fpga_bindings.model.phase_steps import STEP_TAPS, StepSource

N = 1 << 20
NPERSEG = 4096


def _tone_psd(linewidth_hz: float, tone: float, oversample: int = 1
              ) -> tuple[np.ndarray, np.ndarray, float]:
    """PSD (per cycle/sample, two-sided, capture LSB^2) of a DDC capture of a cyclic tone at
    `tone` cycles per (player = capture) sample; combined linewidth `linewidth_hz` (half on
    each laser). oversample 2: the model renders at twice the rate (DDC /4) and
    `dsp.ddc.decimate_iq` decimates, as `cvqkd sim capture --model-oversample 2`."""
    cfg = LinkConfig(seed=7, distance_km=0.0, eta=1.0, v_el=0.01, xi=0.0, lo_offset_hz=0.0,
                     tx_linewidth_hz=linewidth_hz / 2, lo_linewidth_hz=linewidth_hz / 2,
                     rx_gain_lsb=64.0)
    n = 4096  # the cyclic waveform holds whole cycles: `tone` is a multiple of 1 / 4096
    k = np.arange(n)
    z = 16384.0 * np.exp(2j * np.pi * tone * k)
    iq = np.stack([np.round(z.real), np.round(z.imag)], axis=1).astype(np.int16)
    model = LinkModel(cfg)
    model.set_frontend(FrontEnd(voa_db=0.0))
    model.load_dac(iq, cyclic=True)
    st = AdcSettings(n_samples=N * oversample + 200, nco_hz=cfg.if_hz, decimation=8 // oversample)
    cap = np.concatenate(list(model.capture(st)))
    if oversample > 1:
        cap = decimate_iq(cap, oversample)[:N]
    cap = cap.astype(np.float64)
    y = cap[:, 0] + 1j * cap[:, 1]
    f, p = welch(y, fs=1.0, window="hann", nperseg=NPERSEG, return_onesided=False,
                 detrend=False)
    order = np.argsort(f)
    fs_out = cfg.adc_rate_true / 8  # after the decimation
    return f[order], p[order], fs_out


@pytest.mark.parametrize("tone", [0.0, -410 / 4096])
def test_skirt_is_the_unaliased_lorentzian(tone):
    dnu = 1.0e6  # combined linewidth, Hz: a skirt well above the detection noise
    f, p_lw, fs = _tone_psd(dnu, tone)
    _, p_0, _ = _tone_psd(0.0, tone)  # same seed: same detection noise, no phase noise
    df = f[1] - f[0]
    peak = np.abs(f - tone) < 4 * df
    power = np.sum(p_0[peak]) * df  # the tone's power (Hann main lobe: 2 bins each side)
    for x in (-0.45, -0.3, -0.15, 0.15, 0.3, 0.45, 0.47):  # absolute frequency, band edge 0.5
        if abs(x - tone) > 0.48:  # offsets beyond half the output rate wrap (docs/model.md)
            continue
        band = np.abs(f - x) <= 0.005
        off = (f[band] - tone) * fs  # offset from the tone, Hz
        theory = np.mean(dnu / (2 * np.pi * (off ** 2 + dnu ** 2 / 4))) * fs  # per cycle/sample
        measured = np.mean(p_lw[band] - p_0[band]) / power
        tol = 0.05 if abs(x) > 0.46 else 0.03  # the step filter: 1 % at 0.47 (sd ~0.5 %)
        assert measured / theory == pytest.approx(1.0, abs=tol), (x, measured / theory)


def test_skirt_beyond_half_the_rate_with_twice_oversampled_rendering():
    """Offsets beyond half the capture rate (the 1 GS/s edge layout: data 0.64 of the rate from
    the strong pilot) wrap at 1x; rendered at 2x with band-limited steps and decimated they are
    the Lorentzian (white steps at 2x would read (pi x / sin pi x)^2, x = f / 2: 1.38 at 0.64)."""
    dnu = 1.0e6
    tone = 1434 / 4096  # +0.35 of the capture rate
    f, p_lw, fs = _tone_psd(dnu, tone, oversample=2)
    _, p_0, _ = _tone_psd(0.0, tone, oversample=2)
    df = f[1] - f[0]
    power = np.sum(p_0[np.abs(f - tone) < 4 * df]) * df
    for x in (-0.38, -0.29, -0.1, 0.2):  # offsets -0.73, -0.64, -0.45, -0.15 (pass band 0.4)
        band = np.abs(f - x) <= 0.005
        off = (f[band] - tone) * fs
        theory = np.mean(dnu / (2 * np.pi * (off ** 2 + dnu ** 2 / 4))) * fs
        measured = np.mean(p_lw[band] - p_0[band]) / power
        assert measured / theory == pytest.approx(1.0, abs=0.04), (x, measured / theory)


def test_step_filter_and_continuity():
    assert float(np.sum(STEP_TAPS, dtype=np.float64)) == pytest.approx(1.0, abs=1e-6)
    assert np.allclose(STEP_TAPS, STEP_TAPS[::-1])
    a = StepSource(np.random.Generator(np.random.SFC64(3)))
    b = StepSource(np.random.Generator(np.random.SFC64(3)))
    whole = a.draw(1000)
    parts = np.concatenate([b.draw(5), b.draw(300), b.draw(695)])
    assert np.array_equal(whole, parts)  # the filter's history carries over between draws


def test_step_spectrum_is_sinc_squared():
    """Independent check of the steps alone: their PSD is (1/12) sinc^2(f) (periodogram
    average; statistical sd about 1 % per band)."""
    s = StepSource(np.random.Generator(np.random.SFC64(11))).draw(1 << 21).astype(np.float64)
    f, p = welch(s, fs=1.0, window="hann", nperseg=1024, return_onesided=False,
                 detrend=False)
    for x in (0.05, 0.2, 0.35, 0.45):
        band = np.abs(np.abs(f) - x) <= 0.01
        ratio = np.mean(p[band]) / np.mean(np.sinc(f[band]) ** 2 / 12.0)
        assert ratio == pytest.approx(1.0, abs=0.03), (x, ratio)
