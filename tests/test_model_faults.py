"""Run-time faults of the link model and the attack hook: each visible where hardware shows it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from model_support import capture, estimate_t_xi, run_waveform, waveform

from fpga_bindings.model.attacks import EntanglingCloner, InterceptResend
from fpga_bindings.model.link import LinkConfig, LinkModel
from fpga_bindings.model.link_api import FrontEnd, OpticalSwitch
from fpga_bindings.model.simple_tx import required_voa_db

Z = 5.0


def _signal_model(seed: int, **kw) -> tuple[LinkModel, LinkConfig]:
    cfg = LinkConfig(seed=seed, **kw)
    model = LinkModel(cfg)
    wf = waveform(cfg, 20_000, pilot_snu=3.0)
    model.load_dac(wf.iq, cyclic=True)
    model.set_frontend(FrontEnd(voa_db=required_voa_db(wf.quad_per_lsb, cfg.dac_fs_snu)))
    return model, cfg


def test_lo_unlock_drops_lock_bit_and_jumps_beat_then_relocks():
    model, cfg = _signal_model(1, tx_linewidth_hz=0.0, lo_linewidth_hz=0.0)
    capture(model, 4096)
    st = model.status()
    assert st.lo_locked and st.beat_hz == pytest.approx(cfg.if_hz + cfg.lo_offset_hz)
    psi_before = model.ground_truth().phase_rad[-1]
    model.inject("lo_unlock", phase_rad=2.0, freq_hz=7e6)
    capture(model, 4096)
    st = model.status()
    assert not st.lo_locked
    assert st.beat_hz == pytest.approx(cfg.if_hz + cfg.lo_offset_hz + 7e6)
    truth = model.ground_truth()
    # the phase jumped by 2 rad and now advances 7 MHz faster than before
    slope = np.polyfit(truth.sample_index / truth.fs_out, truth.phase_rad, 1)[0] / (2 * np.pi)
    assert slope == pytest.approx(cfg.lo_offset_hz + 7e6, rel=1e-3)
    # the new capture starts where the last phase point was: the gap is the jump alone
    assert truth.phase_rad[0] - psi_before == pytest.approx(2.0, abs=1e-6)
    model.clear_faults()
    capture(model, 4096)
    st = model.status()
    assert st.lo_locked and st.beat_hz == pytest.approx(cfg.if_hz + cfg.lo_offset_hz)


@pytest.mark.parametrize("loss_db", [3.0, math.inf])
def test_fibre_cut_or_bend_lowers_monitor_power_by_the_loss(loss_db):
    model, _ = _signal_model(2)
    capture(model, 4096)
    p0 = model.status().monitor_power_w
    assert p0 > 0
    model.inject("fibre_cut", loss_db=loss_db)
    capture(model, 4096)
    p1 = model.status().monitor_power_w
    assert p1 == pytest.approx(p0 * 10 ** (-loss_db / 10), rel=1e-9, abs=1e-30)
    model.clear_faults()
    capture(model, 4096)
    assert model.status().monitor_power_w == pytest.approx(p0)


def test_fibre_cut_removes_the_signal_from_the_capture():
    model, cfg = _signal_model(3, v_el=0.0)
    n = 1 << 17
    before = capture(model, n).astype(float).var() / cfg.rx_gain_lsb**2
    model.inject("fibre_cut")
    after = capture(model, n).astype(float).var() / cfg.rx_gain_lsb**2
    assert before > 1.2 and abs(after - 1.0) < Z * math.sqrt(1 / n)  # shot noise only


def test_excess_noise_spike_starts_mid_capture_and_adds_its_variance():
    """No register shows excess noise (as on hardware): it is visible in the samples."""
    xi_extra = 3.0
    cfg = LinkConfig(seed=4)
    model = LinkModel(cfg)
    model.set_frontend(FrontEnd())  # signal path open, nothing loaded: noise only
    n = 1 << 18
    t_half = n / 2 / (cfg.adc_rate_true / 8)
    model.inject("excess_noise_spike", xi=xi_extra, at_s=t_half)
    x = capture(model, n).astype(float) / cfg.rx_gain_lsb
    t = cfg.fibre_transmittance
    base = 1 + cfg.v_el + cfg.eta * t * cfg.xi / 2
    first, second = x[: n // 2 - 16].var(axis=0), x[n // 2 + 16:].var(axis=0)
    tol = Z * base * math.sqrt(2 / (n / 2))
    assert np.all(abs(first - base) < tol)
    assert np.all(abs(second - (base + cfg.eta * t * xi_extra / 2)) < 2 * tol)


def test_saturation_clips_and_the_counter_matches_the_samples():
    model, _ = _signal_model(5)
    n = 1 << 16
    x = capture(model, n)
    st = model.status()
    assert st.clip_count == 0 and not st.overflow
    model.inject("saturation", gain=40.0)
    x = capture(model, n)
    st = model.status()
    at_rail = np.any((x == 32767) | (x == -32768), axis=1)
    assert st.overflow and st.clip_count == int(at_rail.sum()) > n // 4


def test_faults_take_parameters_by_name_and_reject_unknown_ones():
    model, _ = _signal_model(6)
    with pytest.raises(ValueError, match="unknown fault"):
        model.inject("meteor")
    with pytest.raises(ValueError, match="unknown parameter"):
        model.inject("fibre_cut", loss=3.0)
    with pytest.raises(ValueError, match="duration_s"):
        model.inject("saturation", duration_s=0.0)


def test_fault_with_duration_ends_by_itself():
    model, _ = _signal_model(7)
    dur = 1e-5
    model.inject("lo_unlock", duration_s=dur)
    capture(model, 1024)
    assert not model.status().lo_locked
    model.advance(dur)
    capture(model, 1024)
    assert model.status().lo_locked


def test_lo_off_reads_unlocked_and_electronic_noise_only():
    cfg = LinkConfig(seed=8)
    model = LinkModel(cfg)
    model.set_frontend(FrontEnd(lo_on=False))
    x = capture(model, 1 << 16).astype(float) / cfg.rx_gain_lsb
    assert not model.status().lo_locked
    assert abs(x.var() / cfg.v_el - 1) < Z * math.sqrt(2 / x.size)


@pytest.mark.parametrize("attack", ["intercept_resend", "cloner"])
def test_attacks_add_the_excess_noise_they_should(attack):
    cfg = LinkConfig(seed=9, distance_km=5.0, xi=0.0, v_el=0.01)
    wf = waveform(cfg, 30_000)
    if attack == "intercept_resend":
        att = InterceptResend(wf.grid, seed=1)
        want_xi = 2.0
    else:
        att = EntanglingCloner(wf.grid, cfg.fibre_transmittance, w=1.5, seed=1)
        want_xi = att.xi
    model = LinkModel(cfg)
    model.set_attack(att)
    model.set_frontend(FrontEnd(switch=OpticalSwitch.SIGNAL,
                                voa_db=required_voa_db(wf.quad_per_lsb, cfg.dac_fs_snu)))
    model.load_dac(wf.iq, cyclic=False)
    model.request_ground_truth(wf.grid)
    model.advance(cfg.delay_s - 1e-6)
    capture(model, int(len(wf.iq) * 1.0001) + 2000)
    y = model.ground_truth().genie.symbols
    a = wf.symbols
    big_t, xi, sd_t, sd_xi = estimate_t_xi(np.concatenate([a.real, a.imag]),
                                           np.concatenate([y.real, y.imag]),
                                           cfg.eta, cfg.v_el, 0.5)
    assert abs(big_t - cfg.fibre_transmittance) < Z * sd_t
    assert abs(xi - want_xi) < Z * sd_xi
    if attack == "intercept_resend":  # Eve's estimates: a_k plus 2 SNU per quadrature
        d = att.estimates - a
        assert abs(d.real.var() - 2.0) < Z * 2.0 * math.sqrt(2 / len(d)) + 0.01


def test_run_waveform_with_genie_is_reproducible():
    cfg = LinkConfig(seed=10)
    wf = waveform(cfg, 2000)
    m1, x1 = run_waveform(cfg, wf)
    m2, x2 = run_waveform(cfg, wf)
    assert np.array_equal(x1, x2)
    assert np.array_equal(m1.ground_truth().genie.symbols, m2.ground_truth().genie.symbols)
