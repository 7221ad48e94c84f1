"""Software down-converter: tone placement and level, image/alias rejection, noise level."""

import numpy as np
import pytest

from dsp.ddc import downconvert, lowpass

FS = 4e9


def _tone(f_hz, amp, n=1 << 18, phase=0.3):
    t = np.arange(n)
    return np.round(amp * np.cos(2 * np.pi * f_hz / FS * t + phase)).astype(np.int16)


def test_tone_in_band_comes_out_at_its_offset_with_half_amplitude():
    y = downconvert(_tone(1.1e9, 6000), FS, 1e9, 8, 1.0)
    z = (y[:, 0] + 1j * y[:, 1])[50:-50]
    assert np.mean(np.abs(z)) == pytest.approx(3000, rel=1e-3)  # cos = (e+ + e-)/2
    ph = np.unwrap(np.angle(z))
    f_out = (ph[-1] - ph[0]) / (ph.size - 1) / (2 * np.pi) * FS / 8
    assert f_out == pytest.approx(100e6, abs=1e3)


@pytest.mark.parametrize("f_hz", [1.33e9, 0.7e9, -1.0e9 + 4e9 - 1.1e9])
def test_out_of_band_tones_are_rejected(f_hz):
    y = downconvert(_tone(f_hz, 20000), FS, 1e9, 8, 1.0)
    z = (y[:, 0] + 1j * y[:, 1])[50:-50]
    assert np.sqrt(np.mean(np.abs(z) ** 2)) < 10000 * 10 ** (-70 / 20) + 1.0  # 1 LSB rounding


def test_white_noise_level():
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(0, 1000, 1 << 20)).astype(np.int16)
    h = lowpass(8)
    y = downconvert(x, FS, 1e9, 8, 4.0, h)
    var = np.var(y.astype(float), axis=0)
    expect = 16 * 1000**2 * np.sum(h**2) / 2  # complex mixing splits the power in two
    assert var == pytest.approx([expect, expect], rel=0.03)


def test_filter_flatness_and_bad_input():
    h = lowpass(8)
    w = np.fft.fftfreq(1 << 16)
    H = np.abs(np.fft.fft(h, 1 << 16))
    assert np.all(np.abs(20 * np.log10(H[np.abs(w) <= 0.05])) < 0.01)
    assert np.all(20 * np.log10(H[np.abs(w) >= 0.075]) < -79)
    with pytest.raises(ValueError):
        downconvert(np.zeros((10, 2), np.int16), FS, 1e9, 8, 1.0)
