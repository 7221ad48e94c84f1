"""Physics of the link model: calibration records, an ideal receiver's T and xi, phase noise,
beat frequency, clock offset, streaming memory. Fixed seeds; tolerances from the sample size."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from model_support import capture, estimate_t_xi, literal_ideal_receiver, run_waveform, waveform

from fpga_bindings.model.link import LinkConfig, LinkModel
from fpga_bindings.model.link_api import AdcMode, AdcSettings, FrontEnd, OpticalSwitch
from fpga_bindings.model.phase_steps import STEP_TAPS
from fpga_bindings.model.simple_tx import required_voa_db

Z = 5.0  # tolerance in standard errors


@pytest.mark.parametrize("detection", ["heterodyne", "homodyne"])
@pytest.mark.parametrize("switch,expected", [(OpticalSwitch.BLOCKED, "shot"),
                                             (OpticalSwitch.LO_OFF, "electronic")])
def test_calibration_records(detection, switch, expected):
    cfg = LinkConfig(seed=11, v_el=0.05, detection=detection,
                     if_hz=1e9 if detection == "heterodyne" else 0.0)
    model = LinkModel(cfg)
    model.set_frontend(FrontEnd(switch=switch))
    n = 1 << 19
    x = capture(model, n).astype(np.float64) / cfg.rx_gain_lsb
    want = (1.0 + cfg.v_el) if expected == "shot" else cfg.v_el
    quads = [0, 1] if detection == "heterodyne" else [0]
    for q in quads:
        var = x[:, q].var()
        assert abs(var - want) < Z * want * math.sqrt(2 / n) + 1e-6, (q, var, want)
    if detection == "homodyne":
        assert not x[:, 1].any()  # real baseband: Q is exactly zero
    # white: neighbouring samples uncorrelated
    r = np.mean(x[1:, 0] * x[:-1, 0]) / x[:, 0].var()
    assert abs(r) < Z / math.sqrt(n)


@pytest.mark.parametrize("detection,ppm", [("heterodyne", 3.0), ("heterodyne", -40.0),
                                           ("homodyne", 0.5)])
def test_ideal_receiver_measures_configured_t_and_xi(detection, ppm):
    het = detection == "heterodyne"
    cfg = LinkConfig(seed=21, distance_km=15.0, xi=0.05, eta=0.6, v_el=0.02, clock_ppm=ppm,
                     detection=detection, if_hz=1e9 if het else 0.0,
                     lo_offset_hz=3e6 if het else 0.0,
                     tx_linewidth_hz=50e3 if het else 1e3, lo_linewidth_hz=50e3 if het else 1e3)
    wf = waveform(cfg, 60_000, pilot_snu=2.0)
    model, adc = run_waveform(cfg, wf)
    truth = model.ground_truth()
    genie = truth.genie
    ok = ~np.isnan(genie.symbols)
    assert ok.sum() == len(ok)
    a, y = wf.symbols, genie.symbols
    k = 0.5 if het else 1.0
    if het:
        xr = np.concatenate([a.real, a.imag])
        yr = np.concatenate([y.real, y.imag])
    else:
        xr = np.real(a * np.exp(1j * genie.angle_rad))
        yr = y.real
    big_t, xi, sd_t, sd_xi = estimate_t_xi(xr, yr, cfg.eta, cfg.v_el, k)
    assert abs(big_t - cfg.fibre_transmittance) < Z * sd_t
    assert abs(xi - cfg.xi) < Z * sd_xi
    # the genie is what a literal ideal receiver gets from the ADC record (same noise draws):
    # the model's own waveform path (resampling, phase, quantisation) adds almost nothing
    lit = literal_ideal_receiver(adc, cfg.rx_gain_lsb, truth, wf.grid.pulse, derotate=het)
    if not het:
        lit = lit.real
    diff = np.sqrt(np.mean(np.abs(lit - y) ** 2))
    assert diff < 0.01 * np.sqrt(np.mean(np.abs(y) ** 2)), diff


def test_phase_noise_variance_grows_as_two_pi_linewidth_t():
    """At the exact grid points and, through the Brownian bridge, at every sample."""
    lw_tx, lw_lo = 200e3, 100e3
    cfg = LinkConfig(seed=31, tx_linewidth_hz=lw_tx, lo_linewidth_hz=lw_lo, lo_offset_hz=0.0)
    model = LinkModel(cfg)
    wf = waveform(cfg, 1000)
    model.load_dac(wf.iq, cyclic=True)
    model.request_ground_truth(wf.grid)  # needed for the per-sample trajectory
    model.set_frontend(FrontEnd(switch=OpticalSwitch.BLOCKED))
    capture(model, 1 << 21)
    truth = model.ground_truth()
    dt = 1.0 / truth.fs_out  # NCO = IF and no offset: the deterministic part is zero
    for lag in (1, 16, 256):
        inc = np.diff(truth.phase_rad[::lag])
        want = 2 * np.pi * (lw_tx + lw_lo) * lag * cfg.phase_grid * dt
        assert abs(inc.var() / want - 1) < Z * math.sqrt(2 / len(inc)), lag
    # between grid points the phase is band-limited (phase_steps.py): an increment over `lag`
    # samples has variance q int |A(f)|^2 sin^2(pi lag f) / sin^2(pi f) df over |f| < 1/2
    # (A: the step filter's response; q: per-sample variance), below q lag at short lags
    # (0.775 q at lag 1); over a whole grid interval it is q lag exactly (pinned points)
    taps = STEP_TAPS.astype(np.float64)
    m = len(taps) // 2
    f = (np.arange(200_000) + 0.5) / 400_000  # midpoint rule on (0, 1/2)
    a2 = (taps @ np.cos(2 * np.pi * np.outer(np.arange(-m, m + 1), f))) ** 2
    q = 2 * np.pi * (lw_tx + lw_lo) * dt
    for lag in (1, 3, 8, 16):
        inc = np.diff(truth.phase_fine[::lag])
        # the integral over (-1/2, 1/2) of an even function: the mean over (0, 1/2)
        structure = np.mean(a2 * np.sin(np.pi * lag * f) ** 2 / np.sin(np.pi * f) ** 2)
        want = q * (lag if lag == cfg.phase_grid else structure)
        assert abs(inc.var() / want - 1) < Z * math.sqrt(2 / len(inc)), lag
    inside = truth.sample_index < len(truth.phase_fine)
    assert np.allclose(truth.phase_fine[truth.sample_index[inside]], truth.phase_rad[inside],
                       atol=1e-5)


def test_beat_frequency_offset_and_drift_seen_in_the_adc_record():
    off, drift = 2.5e6, 4e9  # Hz, Hz/s (large drift to see it within one capture)
    cfg = LinkConfig(seed=41, lo_offset_hz=off, lo_drift_hz_per_s=drift, tx_linewidth_hz=0.0,
                     lo_linewidth_hz=0.0, v_el=0.0, distance_km=0.0)
    model = LinkModel(cfg)
    iq = np.tile(np.array([[8000, 0]], np.int16), (1 << 16, 1))  # unmodulated carrier
    model.load_dac(iq, cyclic=True)
    model.set_frontend(FrontEnd(voa_db=6.0))  # ~17 SNU of beat amplitude: no phase slips
    x = capture(model, 1 << 16)
    assert model.status().clip_count == 0
    z = x[:, 0] + 1j * x[:, 1]
    t = model.ground_truth().trigger_time_s + np.arange(len(z)) / model.ground_truth().fs_out
    phase = np.unwrap(np.angle(z))
    c2, c1, _ = np.polyfit(t - t[0], phase, 2)
    f0 = c1 / (2 * np.pi)
    assert abs(f0 - (off + drift * t[0])) < 2e3
    assert abs(c2 / np.pi - drift) < 0.02 * drift
    st = model.status()
    assert abs(st.beat_hz - (cfg.if_hz + off + drift * model.now_s)) < 1.0


@pytest.mark.parametrize("ppm", [0.3, -7.0, 25.0])
def test_clock_offset_recovered_to_better_than_0p02_ppm(ppm):
    """A tone at f_p on the DAC clock appears at f_p / (1 + ppm 1e-6) in ADC-clock units.
    (IF and NCO at 0 Hz: an NCO running on the ADC clock would add -f_nco ppm 1e-6.)"""
    cfg = LinkConfig(seed=51, clock_ppm=ppm, if_hz=0.0, lo_offset_hz=0.0, tx_linewidth_hz=0.0,
                     lo_linewidth_hz=0.0, v_el=0.0, distance_km=0.0)
    model = LinkModel(cfg)
    n_tx = 1 << 18
    f_p = 0.125  # cycles per player sample
    tone = np.exp(2j * np.pi * f_p * np.arange(n_tx))  # whole cycles per buffer: seamless loop
    iq = np.round(np.stack([tone.real, tone.imag], 1) * 12000 / 4).astype(np.int16) * 4
    model.load_dac(iq, cyclic=True)
    model.set_frontend(FrontEnd(voa_db=14.0))
    n = 1 << 20
    x = capture(model, n)
    z = x[:, 0] + 1j * x[:, 1]
    phase = np.unwrap(np.angle(z * np.exp(-2j * np.pi * f_p * np.arange(n))))
    slope = np.polyfit(np.arange(n), phase, 1)[0] / (2 * np.pi)  # cycles per sample
    # observed frequency in cycles per ADC output sample = f_p * du, du = 1 / (1 + ppm 1e-6)
    est_ppm = (1.0 / ((f_p + slope) / f_p) - 1.0) * 1e6
    assert abs(est_ppm - ppm) < 0.02


def test_jitter_adds_the_expected_phase_noise():
    sj = 2e-12  # large rms jitter, s
    cfg = LinkConfig(seed=61, adc_jitter_s=sj, lo_offset_hz=0.0, tx_linewidth_hz=0.0,
                     lo_linewidth_hz=0.0, v_el=0.0, distance_km=0.0)
    model = LinkModel(cfg)
    iq = np.tile(np.array([[30000, 0]], np.int16), (1024, 1))  # 13k codes after the VOA
    model.load_dac(iq, cyclic=True)
    model.set_frontend(FrontEnd(voa_db=20.0))
    n = 1 << 17
    x = capture(model, n)
    z = (x[:, 0] + 1j * x[:, 1]).astype(complex)
    ph = np.angle(z * np.conj(z.mean()))
    # signal amplitude A (SNU per sample) over shot noise 1 per quadrature: var = 1/A^2 + jitter
    model2 = LinkModel(LinkConfig(**{**cfg.__dict__, "adc_jitter_s": 0.0}))
    model2.load_dac(iq, cyclic=True)
    model2.set_frontend(FrontEnd(voa_db=20.0))
    x2 = capture(model2, n)
    z2 = (x2[:, 0] + 1j * x2[:, 1]).astype(complex)
    ph2 = np.angle(z2 * np.conj(z2.mean()))
    extra = ph.var() - ph2.var()
    want = (2 * np.pi * cfg.if_hz * sj) ** 2
    assert abs(extra / want - 1) < 0.1


def test_real_if_mode_down_converts_to_the_ddc_record_statistics():
    cfg = LinkConfig(seed=71, v_el=0.02)
    model = LinkModel(cfg)
    model.set_frontend(FrontEnd(switch=OpticalSwitch.BLOCKED))
    n = 1 << 18
    x = np.concatenate(list(model.capture(AdcSettings(n_samples=n, mode=AdcMode.REAL_IF))))
    assert x.dtype == np.int16 and x.shape == (n,)
    assert not np.any(x % 4)  # 14-bit converter codes, MSB-aligned
    # white real noise of variance D (1 + v_el) in units of the DDC gain (docs/model.md)
    d = cfg.profile.default_decimation
    var = x.astype(float).var() / cfg.rx_gain_lsb**2
    want = d * (1 + cfg.v_el)
    assert abs(var / want - 1) < Z * math.sqrt(2 / n) + 1e-3


def test_capture_streams_in_bounded_memory():
    cfg = LinkConfig(seed=81)
    model = LinkModel(cfg)
    wf = waveform(cfg, 50_000)
    model.load_dac(wf.iq, cyclic=True)
    tracemalloc.start()
    n, total = 10_000_000, 0
    for chunk in model.capture(AdcSettings(n_samples=n, nco_hz=cfg.if_hz, decimation=8),
                               chunk=1 << 19):
        assert chunk.shape[1] == 2 and len(chunk) <= 1 << 19
        total += len(chunk)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert total == n
    assert peak < 64e6  # the whole capture would be 40 MB as int16, far more as floats


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="eta"):
        LinkConfig(eta=1.5)
    with pytest.raises(ValueError, match="detection"):
        LinkConfig(detection="intradyne")
    model = LinkModel(LinkConfig(seed=1))
    with pytest.raises(ValueError, match="decimation"):
        model.capture(AdcSettings(n_samples=16, decimation=7))
    with pytest.raises(ValueError, match="n_samples"):
        model.capture(AdcSettings(n_samples=0))
    with pytest.raises(ValueError, match="int16"):
        model.load_dac(np.zeros((4, 2), np.float32), cyclic=True)
    hom = LinkModel(LinkConfig(seed=1, detection="homodyne", if_hz=0.0))
    with pytest.raises(ValueError, match="NCO"):
        hom.capture(AdcSettings(n_samples=16, nco_hz=1e6))
    with pytest.raises(ValueError, match="VOA"):
        model.set_frontend(FrontEnd(voa_db=-1.0))


def test_same_seed_same_capture_and_different_seed_differs():
    def run(seed):
        m = LinkModel(LinkConfig(seed=seed))
        m.set_frontend(FrontEnd(switch=OpticalSwitch.BLOCKED))
        return capture(m, 4096)
    assert np.array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_reloading_reuses_the_player_buffers_only_when_no_capture_reads_them():
    cfg = LinkConfig(seed=5)
    rng = np.random.default_rng(0)
    wf1, wf2 = (rng.integers(-8000, 8000, (50_000, 2)).astype(np.int16) for _ in range(2))
    settings = AdcSettings(n_samples=30_000, nco_hz=cfg.if_hz, decimation=8)

    def run(reload_mid_capture: bool) -> np.ndarray:
        m = LinkModel(cfg)
        m.set_frontend(FrontEnd(voa_db=20.0))
        m.load_dac(wf1, cyclic=True)
        chunks = m.capture(AdcSettings(n_samples=30_000, nco_hz=cfg.if_hz, decimation=8),
                           chunk=4096)
        first = next(chunks)
        if reload_mid_capture:  # the capture still reads wf1: it must not be overwritten
            m.load_dac(wf2, cyclic=True)
        return np.concatenate([first, *chunks])

    assert np.array_equal(run(False), run(True))
    m = LinkModel(cfg)
    m.load_dac(wf1, cyclic=True)
    for _ in m.capture(settings):
        pass
    fr = m._player.fr
    m.load_dac(wf2, cyclic=False)  # reuses the buffers: the same field as a fresh load
    fresh = LinkModel(cfg)
    fresh.load_dac(wf2, cyclic=False)
    assert m._player.fr is fr
    assert np.array_equal(m._player.fr, fresh._player.fr)
    assert np.array_equal(m._player.fi, fresh._player.fi)
    assert m._player.mean_abs2 == fresh._player.mean_abs2 and not m._player.cyclic


def test_nco_runs_on_the_adc_clock():
    """With the NCO at the IF, a clock offset leaves a residual beat of -f_nco ppm 1e-6."""
    ppm = 3.0
    cfg = LinkConfig(seed=91, clock_ppm=ppm, lo_offset_hz=0.0, tx_linewidth_hz=0.0,
                     lo_linewidth_hz=0.0)
    model = LinkModel(cfg)
    model.set_frontend(FrontEnd(switch=OpticalSwitch.BLOCKED))
    capture(model, 1 << 16)
    truth = model.ground_truth()
    t = truth.trigger_time_s + truth.sample_index / truth.fs_out
    slope = np.polyfit(t, truth.phase_rad, 1)[0] / (2 * np.pi)
    assert slope == pytest.approx(-cfg.if_hz * ppm * 1e-6, rel=1e-6)


@pytest.mark.parametrize("decimation", [4, 16])
def test_other_decimations_keep_the_snu_scaling(decimation):
    """Noise per sample scales with the bandwidth (1/D); the ideal receiver still measures T."""
    cfg = LinkConfig(seed=93, distance_km=10.0, xi=0.05, tx_linewidth_hz=0.0,
                     lo_linewidth_hz=0.0)
    d0 = cfg.profile.default_decimation
    model = LinkModel(cfg)
    model.set_frontend(FrontEnd(switch=OpticalSwitch.BLOCKED))
    n = 1 << 18
    x = capture(model, n, decimation=decimation).astype(float) / cfg.rx_gain_lsb
    want = (1 + cfg.v_el) * d0 / decimation
    assert abs(x.var(axis=0) / want - 1).max() < Z * math.sqrt(2 / n)
    wf = waveform(cfg, 20_000)
    model = LinkModel(cfg)
    model.set_frontend(FrontEnd(voa_db=required_voa_db(wf.quad_per_lsb, cfg.dac_fs_snu)))
    model.load_dac(wf.iq, cyclic=False)
    model.request_ground_truth(wf.grid)
    model.advance(cfg.delay_s - 1e-6)
    capture(model, int(len(wf.iq) * d0 / decimation) + 4000, decimation=decimation)
    y, a = model.ground_truth().genie.symbols, wf.symbols
    assert model.ground_truth().du == pytest.approx(decimation / d0)
    big_t, xi, sd_t, sd_xi = estimate_t_xi(np.concatenate([a.real, a.imag]),
                                           np.concatenate([y.real, y.imag]), cfg.eta, cfg.v_el,
                                           0.5)
    assert abs(big_t - cfg.fibre_transmittance) < Z * sd_t
    assert abs(xi - cfg.xi) < Z * sd_xi
