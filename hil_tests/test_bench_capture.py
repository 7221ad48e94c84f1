"""First bench test: capture, calibrate shot and electronic noise, check received power is
linear in the VOA transmission. Runs through the drivers on `--target model|board`."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.hil

N = 1 << 19  # complex samples per record
VOA_STEPS_DB = (0.0, 3.0, 6.0, 9.0)  # above the working point
TARGET_EXCESS_SNU = 0.5  # received excess variance at the working point, at least
WAVE_RMS = 12000  # DAC waveform rms per quadrature, codes (0.37 of full scale)
VOA_ACCURACY_DB = 0.1  # attenuation error allowed per setting (a board's VOA; the model's is 0)


def _variance(overlay, nco_hz: float, n: int = N) -> tuple[float, int]:
    """Mean per-quadrature variance of one DDC record, ADC LSB^2, and its clip count."""
    cap = overlay.adc_capture.capture(n, nco_hz=nco_hz)
    x = np.asarray(cap.samples, dtype=np.float64)
    return float(x.var(axis=0).mean()), cap.clip_count


def test_capture_calibrate_and_voa_linearity(overlay):
    fe = overlay.frontend
    fe.enable(laser=True, lo=True)
    fe.set_switch("LO_OFF")  # settle the front-end before reading the lock
    overlay.adc_capture.capture(1024)
    fe.require_lo_locked()
    _, beat_hz = fe.lo_status()

    # calibration records: electronic noise, then shot noise (+ electronic)
    var_el, _ = _variance(overlay, beat_hz)
    fe.set_switch("BLOCKED")
    var_shot, clips = _variance(overlay, beat_hz)
    n0 = var_shot - var_el  # shot-noise variance, LSB^2 per quadrature
    assert clips == 0
    assert n0 > 0 and var_el / n0 < 0.5, "shot noise less than 3 dB above electronic noise"

    # a Gaussian waveform, played cyclically; received excess variance against the VOA
    rng = np.random.default_rng(11)
    wave = np.clip(np.rint(rng.standard_normal((1 << 14, 2)) * WAVE_RMS), -32767, 32767)
    overlay.dac_player.load(wave.astype(np.int16))
    overlay.dac_player.play(cyclic=True)
    fe.set_switch("SIGNAL")
    # working point: from (near) maximum attenuation down in 6 dB steps until the received excess
    # variance reaches TARGET_EXCESS_SNU (a bright transmitter needs tens of dB)
    top = None
    for db in np.arange(60.0 - max(VOA_STEPS_DB), -0.1, -6.0):
        fe.set_voa_db(db)
        if (_variance(overlay, beat_hz, 1 << 16)[0] - var_shot) / n0 >= TARGET_EXCESS_SNU:
            top = float(db)
            break
    assert top is not None, "no signal above shot noise even at 0 dB attenuation"
    voa_db = top + np.array(VOA_STEPS_DB)
    excess, sigma = [], []
    for db in voa_db:
        fe.set_voa_db(db)
        var_sig, clips = _variance(overlay, beat_hz)
        assert clips == 0
        excess.append((var_sig - var_shot) / n0)  # SNU per quadrature
        # std of a variance estimate from 2N real samples: var * sqrt(1/N); two records
        sigma.append(np.hypot(var_sig, var_shot) / np.sqrt(N) / n0)
    overlay.dac_player.stop()
    excess, sigma = np.array(excess), np.array(sigma)
    t = 10 ** (-np.array(VOA_STEPS_DB) / 10)
    # received power proportional to the VOA transmission: weighted fit through the origin
    w = 1 / sigma**2
    a = np.sum(w * excess * t) / np.sum(w * t * t)
    assert a > 20 * sigma[0], f"no signal above shot noise: {excess}"
    voa_tol = (10 ** (VOA_ACCURACY_DB / 10) - 1) * a * t
    np.testing.assert_array_less(np.abs(excess - a * t), 5 * sigma + voa_tol)
    slope = np.polyfit(voa_db, 10 * np.log10(excess), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.05)  # dB received per dB of attenuation
