"""Receiver against the test channel (tests/dsp_channel.py): sync, clock, SNU calibration and
the excess noise added by the DSP relative to the ideal receiver on the same noise."""

import numpy as np
import pytest
from dsp_channel import ChannelParams, chain_noise_gain, dsp_added_noise, pilot_to_data, run_channel

from dsp.receiver import SyncError, receive
from dsp.transmitter import TxConfig, build_frame

KEY = bytes(32)


def _run(n_data, seed=1, **kw):
    f = build_frame(TxConfig(), n_data, KEY, seed)
    p = ChannelParams(seed=seed, **kw)
    ch = run_channel(f.meta, f.symbols, p)
    idx = np.arange(0, n_data, 2)
    r = receive(ch["adc"], f.meta, 500e6, idx, f.symbols[idx], ch["shot"], ch["elec"],
                eta=p.eta)
    s = r.summary
    resc = np.sqrt(s["shot_noise_adc2"] / ch["adc_scale"] ** 2 / chain_noise_gain(
        s["smoother_a"], pilot_to_data(f.meta), 5, 0.2))
    return f, ch, r, dsp_added_noise(r.symbols, ch["genie"], f.symbols, p.v_el, resc)


@pytest.mark.parametrize("lw, bound", [(1e3, 0.006), (10e3, 0.02)])
def test_reference_scenario(lw, bound):
    _f, _ch, r, added = _run(100_000, linewidth_hz=lw)
    s = r.summary
    assert r.mask.all()
    assert s["clock_offset_ppm"] == pytest.approx(20.0, abs=0.1)
    # the coarse estimate is the mean frequency over 2^18 samples (0.5 ms): at 10 kHz the laser
    # phase's random walk (5.6 rad rms over that time) moves it by ~1.7 kHz rms
    assert s["lo_offset_hz"] == pytest.approx(50e6, abs=5e3)
    assert s["electronic_noise_snu"] == pytest.approx(0.1, abs=0.005)
    assert s["transmittance"] == pytest.approx(0.316, rel=0.03)
    assert abs(s["linewidth_estimate_hz"] / lw - 1) < 0.3
    assert added["gain_ratio"] == pytest.approx(1.0, abs=0.01)
    assert -0.003 < added["xi_added"] < bound, added


def test_negative_clock_offset_and_no_drift():
    _, _, r, added = _run(60_000, seed=4, clock_ppm=-20.0, lo_drift_hz_per_s=0.0,
                          lo_offset_hz=-40e6, linewidth_hz=1e3)
    assert r.summary["clock_offset_ppm"] == pytest.approx(-20.0, abs=0.15)
    assert added["xi_added"] < 0.02  # 60k symbols: the clock track is short (see docs/dsp.md)


def test_wrong_symbols_fail_lag_check():
    f = build_frame(TxConfig(), 40_000, KEY, 2)
    ch = run_channel(f.meta, f.symbols, ChannelParams(seed=2))
    other = build_frame(TxConfig(), 40_000, b"\x01" * 32, 2).symbols
    idx = np.arange(0, 40_000, 2)
    with pytest.raises(SyncError, match="lag"):
        receive(ch["adc"], f.meta, 500e6, idx, other[idx], ch["shot"], ch["elec"], eta=0.7)


def test_truncated_capture_fails():
    f = build_frame(TxConfig(), 40_000, KEY, 2)
    ch = run_channel(f.meta, f.symbols, ChannelParams(seed=2, extra_samples=0))
    idx = np.arange(0, 40_000, 2)
    with pytest.raises(SyncError):
        receive(ch["adc"][: ch["adc"].shape[0] // 2], f.meta, 500e6, idx, f.symbols[idx])


def test_noise_only_capture_fails():
    f = build_frame(TxConfig(), 40_000, KEY, 2)
    ch = run_channel(f.meta, f.symbols, ChannelParams(seed=2))
    idx = np.arange(0, 40_000, 2)
    noise = np.tile(ch["shot"], (2, 1))
    with pytest.raises(SyncError):
        receive(noise, f.meta, 500e6, idx, f.symbols[idx])


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(50))
def test_sync_many_seeds(seed):
    _, _, r, added = _run(50_000, seed=100 + seed, linewidth_hz=10e3,
                          clock_ppm=float(np.linspace(-20, 20, 50)[seed]))
    assert r.mask.all() and added["xi_added"] < 0.03


def test_cyclic_capture_starting_mid_frame():
    # the player repeats the frame; the capture starts 60 % into one repetition
    f = build_frame(TxConfig(), 30_000, KEY, 5)
    n = f.meta["n_samples"]
    ch = run_channel(f.meta, f.symbols, ChannelParams(seed=5, delay_samples=0.4 * n + 0.3,
                                                      extra_samples=5000))
    idx = np.arange(0, 30_000, 2)
    r = receive(ch["adc"], f.meta, 500e6, idx, f.symbols[idx], ch["shot"], ch["elec"], eta=0.7)
    assert r.mask.all()
    assert r.summary["sync"]["preamble"]["bob_sample"] == pytest.approx(
        0.4 * n + 0.3 + (f.meta["preamble_start_symbol"] * 5) / ch["ratio"], abs=0.05)
    assert r.summary["transmittance"] == pytest.approx(0.316, rel=0.05)
