"""Integration: DAC -> link model (fpga_bindings.model.link.LinkModel) -> ADC, through the
drivers and pynq's DMA; the physics faults visible in the overlay's registers."""

from __future__ import annotations

import numpy as np
import pytest

from fpga_bindings.model.link import LinkConfig, LinkModel
from fpga_bindings.overlay import open_model


@pytest.fixture
def ol():
    o = open_model(physics=LinkModel(LinkConfig(seed=5, distance_km=0.0)))
    o.frontend.enable(laser=True, lo=True)
    o.frontend.set_voa_db(0.0)
    o.adc_capture.capture(1024)  # one record so the link status is current
    return o


def _band_power(z: np.ndarray, fs: float, f0: float, half_width: float) -> float:
    spec = np.abs(np.fft.fft(z)) ** 2
    f = np.fft.fftfreq(len(z), 1 / fs)
    return float(spec[np.abs(f - f0) <= half_width].sum())


def test_default_physics_is_the_link_model():
    assert isinstance(open_model().device.physics, LinkModel)


def test_tone_from_dac_arrives_at_adc(ol):
    """A +50 MHz complex tone played by the DAC lands at +50 MHz after the receiver's
    down-converter tuned to the measured beat frequency (and not at its image)."""
    fs = ol.profile.default_player_sps
    n, f_tone = 4096, 50e6
    k = round(f_tone / fs * n)
    ph = 2 * np.pi * k * np.arange(n) / n
    ol.dac_player.load(np.rint(np.stack([np.cos(ph), np.sin(ph)], 1) * 16000).astype(np.int16))
    ol.dac_player.play(cyclic=True)
    ol.frontend.set_switch("SIGNAL")
    locked, beat = ol.frontend.lo_status()
    assert locked and beat > 0
    cap = ol.adc_capture.capture(1 << 16, nco_hz=beat)
    x = np.asarray(cap.samples, dtype=np.float64)
    z = x[:, 0] + 1j * x[:, 1]
    f = k * fs / n
    tone = _band_power(z, cap.sample_rate, f, 2e6)
    image = _band_power(z, cap.sample_rate, -f, 2e6)
    other = _band_power(z, cap.sample_rate, 120e6, 2e6)  # same width, noise only
    assert tone > 20 * image and tone > 20 * other


def test_physics_faults_visible_in_registers(ol):
    fe, adc, dev = ol.frontend, ol.adc_capture, ol.device
    fe.set_switch("SIGNAL")
    ol.dac_player.load(np.full((256, 2), 8000, np.int16))
    ol.dac_player.play()
    adc.capture(1024)
    beat0 = fe.lo_status()[1]
    fe.require_lo_locked()
    # LO unlock: lock bit drops, sticky LOCK_LOST, beat frequency jumps
    dev.inject("lo_unlock", freq_hz=5e6)
    adc.capture(1024)
    locked, beat = fe.lo_status()
    assert not locked and beat == pytest.approx(beat0 + 5e6)
    assert fe.errors(clear=True)["LOCK_LOST"] == 1
    dev.clear_faults()
    adc.capture(1024)
    assert fe.lo_status()[0]
    # saturation: the ADC clips, CLIP_COUNT and OVERFLOW show it
    dev.inject("saturation", gain=30.0)
    cap = adc.capture(1 << 14, nco_hz=beat0)
    assert cap.clip_count > 0 and cap.overflow and adc.io.get("CLIP_COUNT") == cap.clip_count
    dev.clear_faults()
    adc.io.clear("ERRORS")
    # fibre cut: monitor power falls to the floor, POWER_LOW latches below the threshold
    before = fe.monitor_power_dbm()
    fe.set_power_low_threshold_dbm(before - 10)
    assert fe.errors()["POWER_LOW"] == 0
    dev.inject("fibre_cut")
    adc.capture(1024)
    assert fe.monitor_power_dbm() == -100.0 and fe.errors()["POWER_LOW"] == 1


def test_calibration_and_excess_noise_spike_through_drivers(ol):
    """Records through the drivers show the configured v_el and an injected excess-noise
    spike at its expected size: heterodyne, per quadrature, eta * T * xi / 2 (T = 1 at 0 km)."""
    fe, adc, dev = ol.frontend, ol.adc_capture, ol.device
    cfg = dev.physics.config
    beat = fe.lo_status()[1]

    def var() -> float:
        x = np.asarray(adc.capture(1 << 18, nco_hz=beat).samples, dtype=np.float64)
        return float(x.var(axis=0).mean())

    fe.set_switch("LO_OFF")
    el = var()
    fe.set_switch("BLOCKED")
    n0 = var() - el
    fe.set_switch("SIGNAL")  # no waveform played: vacuum at the input
    base = var()
    dev.inject("excess_noise_spike", xi=2.0)
    spiked = var()
    # relative std of each variance estimate 1/sqrt(2^18) = 0.2 % of ~1 SNU
    assert el / n0 == pytest.approx(cfg.v_el, abs=0.002)
    assert (spiked - base) / n0 == pytest.approx(cfg.eta * 2.0 / 2, abs=0.03)
