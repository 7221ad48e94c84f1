"""The cvqkd drivers against the model device; every fault visible in registers."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from link_double import GaussianLinkDouble  # tests/ test double of LinkPhysics

from fpga_bindings import drivers
from fpga_bindings.model.link_api import AdcMode, OpticalSwitch
from fpga_bindings.overlay import open_model

SHOT = 400.0  # test double: shot-noise std per quadrature, ADC counts


@pytest.fixture
def phys() -> GaussianLinkDouble:
    return GaussianLinkDouble(shot_counts=SHOT, v_el=0.1, seed=7)


@pytest.fixture
def ol(phys):
    o = open_model(physics=phys)
    o.frontend.enable(laser=True, lo=True)
    return o


def _var_snu(cap) -> np.ndarray:
    return np.asarray(cap.samples, dtype=np.float64).var(axis=0) / SHOT**2


def test_drivers_bound_by_vlnv(ol):
    assert isinstance(ol.board_info, drivers.BoardInfo)
    assert isinstance(ol.frontend, drivers.Frontend)
    assert isinstance(ol.dac_player, drivers.DacPlayer)
    assert isinstance(ol.adc_capture, drivers.AdcCapture)
    assert type(ol.dma_adc).__module__ == "pynq.lib.dma"  # pynq's stock DMA driver
    assert ol.dac_player.dma is ol.dma_dac and ol.adc_capture.dma is ol.dma_adc
    assert ol.profile.name == "rfsoc4x2" and ol.board_info.version == (1, 2, 0)


def test_pynq_overlay_loads_the_model_unchanged(phys):
    import pynq

    from fpga_bindings.model.device import ModelDevice
    from fpga_bindings.regmap import OVERLAY_TOML

    dev = ModelDevice(physics=phys)
    ol = pynq.Overlay(str(OVERLAY_TOML), download=False, device=dev)
    assert isinstance(ol.adc_capture, drivers.AdcCapture)
    assert ol.adc_capture.device is dev and ol.adc_capture.mmio.device is dev
    assert ol.ip_dict["dma_adc"]["type"] == "xilinx.com:ip:axi_dma:7.1"
    ol.board_info.check()
    # pynq's register_map, generated from the same register descriptions
    rm = ol.adc_capture.register_map
    rm.N_SAMPLES = 1234
    assert ol.adc_capture.io.get("N_SAMPLES") == 1234
    assert int(ol.board_info.register_map.VERSION.MAJOR) == 1


@pytest.mark.parametrize("board", ["zcu111", "zcu208"])
def test_board_id_selects_profile(phys, board):
    assert open_model(physics=phys, board=board).profile.name == board


def test_frontend_settings_reach_physics(ol, phys):
    ol.frontend.set_switch("LO_OFF")
    ol.frontend.set_voa_db(12.34)
    assert phys.frontend.switch is OpticalSwitch.LO_OFF
    assert phys.frontend.voa_db == pytest.approx(12.34) and ol.frontend.voa_db == 12.34
    with pytest.raises(ValueError, match="VOA"):
        ol.frontend.set_voa_db(61)
    with pytest.raises(ValueError, match="switch"):
        ol.frontend.set_switch("OPEN")
    locked, beat = ol.frontend.lo_status()
    assert locked and beat == 10e6


def test_capture_settings_and_calibration_variances(ol, phys):
    ol.frontend.set_switch("LO_OFF")
    el = ol.adc_capture.capture(200_000, nco_hz=-123.456e6, decimation=16)
    s = phys.captures[-1]
    assert s.decimation == 16 and s.mode is AdcMode.DDC
    ftw = round(-123.456e6 / 4e9 * 2**32) & 0xFFFFFFFF
    assert s.nco_hz == pytest.approx((ftw - 2**32) * 4e9 / 2**32) == el.nco_hz
    assert el.sample_rate == 4e9 / 16 and el.samples.shape == (200_000, 2)
    ol.frontend.set_switch("BLOCKED")
    shot = ol.adc_capture.capture(200_000)
    # sampling std of a variance estimate: sqrt(2/n) relative -> 0.32 %; allow 5 sigma
    np.testing.assert_allclose(_var_snu(el), 0.1, rtol=0.016)
    np.testing.assert_allclose(_var_snu(shot), 1.1, rtol=0.016)
    assert shot.trigger_sample > el.trigger_sample
    raw = ol.adc_capture.capture(1000, mode="REAL_IF")
    assert raw.samples.shape == (1000,) and raw.sample_rate == 4e9
    with pytest.raises(ValueError, match="decimation"):
        ol.adc_capture.capture(10, decimation=7)


def test_player_load_gain_and_underflow(ol, phys):
    wave = np.full((1000, 2), 10000, dtype=np.int16)
    ol.dac_player.load(wave)
    ol.dac_player.play(cyclic=False, gain=0.5)
    assert phys.dac_power == pytest.approx((5000 / 32767) ** 2)
    assert ol.dac_player.status()["DONE"] == 1
    ol.dac_player.play(cyclic=True, gain=3.5)  # saturates at int16
    assert phys.dac_power == pytest.approx(1.0)
    ol.dac_player.stop()
    assert phys.dac_power == 0.0
    with pytest.raises(ValueError, match="exceeds"):
        ol.dac_player.load(np.zeros((ol.dac_player.capacity + 1, 2), np.int16))
    ol.dac_player.io.set("LENGTH", VALUE=5000)  # more than loaded
    with pytest.raises(drivers.PlayerError, match="underflow"):
        ol.dac_player.play()


def test_player_start_triggers_capture(ol):
    ol.dac_player.load(np.ones((64, 2), np.int16))
    ol.adc_capture.arm(5000, trigger="PLAYER_START")
    assert ol.adc_capture.io.get("STATUS", "ARMED") == 1
    ol.dac_player.play()
    cap = ol.adc_capture.wait()
    assert cap.samples.shape == (5000, 2)
    # cyclic passes meanwhile: 5000 * 8 ADC samples at 4 GS/s = 5000 player samples at 500 MS/s
    assert ol.dac_player.status()["PLAY_COUNT"] == 5000 // 64


def test_external_trigger_never_arrives_times_out(ol):
    ol.adc_capture.arm(100, trigger="EXTERNAL")
    with pytest.raises(drivers.CaptureTimeout, match="armed but not triggered"):
        ol.adc_capture.wait(timeout_s=0.05)
    assert ol.adc_capture.io.get("STATUS", "ARMED") == 0  # the driver aborted it


def test_fault_lo_unlock(ol):
    ol.frontend.require_lo_locked()
    ol.device.inject("lo_unlock")
    assert ol.frontend.io.get("STATUS", "LO_LOCKED") == 0
    with pytest.raises(drivers.LoUnlockedError, match="LOCK_LOST = 1"):
        ol.frontend.require_lo_locked()
    ol.device.clear_faults()
    assert ol.frontend.lo_status()[0]
    assert ol.frontend.errors(clear=True)["LOCK_LOST"] == 1  # sticky until cleared
    assert ol.frontend.errors()["LOCK_LOST"] == 0


def test_fault_fibre_cut(ol):
    ol.frontend.set_switch("SIGNAL")
    ol.frontend.set_voa_db(0)
    before = ol.frontend.monitor_power_dbm()
    assert before == pytest.approx(-20.0, abs=0.001)  # double: 10 uW tap
    ol.frontend.set_power_low_threshold_dbm(before - 10)
    assert ol.frontend.errors()["POWER_LOW"] == 0
    ol.device.inject("fibre_cut", loss_db=30.0)
    assert ol.frontend.monitor_power_dbm() == pytest.approx(before - 30, abs=0.001)
    assert ol.frontend.errors()["POWER_LOW"] == 1


def test_fault_saturation_counts_clipping(ol):
    ol.frontend.set_switch("BLOCKED")
    cap = ol.adc_capture.capture(50_000)
    assert cap.clip_count == 0 and not cap.overflow
    ol.device.inject("saturation", factor=100.0)
    cap = ol.adc_capture.capture(50_000)
    x = np.asarray(cap.samples)
    assert cap.clip_count == int((np.abs(x) == 32767).sum()) > 0
    assert cap.overflow and ol.adc_capture.io.get("CLIP_COUNT") == cap.clip_count


def test_fault_excess_noise_spike_visible_in_capture(ol):
    ol.frontend.set_switch("SIGNAL")
    base = _var_snu(ol.adc_capture.capture(100_000)).mean()
    ol.device.inject("excess_noise_spike", xi=0.5)
    spiked = _var_snu(ol.adc_capture.capture(100_000)).mean()
    assert spiked - base == pytest.approx(0.5, abs=0.05)


def test_fault_dma_stall_backpressure_then_recover(ol):
    ol.device.inject("dma_stall", after_bytes=4000)
    with pytest.raises(drivers.DmaTimeout, match="FIFO overran after 1000 of 5000"):
        ol.adc_capture.capture(5000, timeout_s=0.5)
    assert ol.adc_capture.io.get("ERRORS", "FIFO_OVERRUN") == 1
    assert ol.adc_capture.dma.recvchannel.idle is False
    ol.device.clear_faults()
    with pytest.raises(RuntimeError, match="not idle"):  # pynq refuses until the DMA is reset
        ol.adc_capture.capture(10)
    ol.adc_capture.recover()
    assert ol.adc_capture.capture(5000).samples.shape == (5000, 2)


def test_fault_dma_hang_times_out(ol):
    ol.device.inject("dma_stall", accept=True)  # takes the data, never completes
    with pytest.raises(drivers.DmaTimeout, match="S2MM DMA not complete"):
        ol.adc_capture.capture(5000, timeout_s=0.05)
    assert ol.adc_capture.io.get("STATUS", "DONE") == 1
    assert ol.device.dma_adc.hw_get("S2MM_DMASR", "IDLE") == 0


def test_fault_dma_error(ol):
    ol.device.inject("dma_error", dma="dma_dac", kind="slave")
    with pytest.raises(drivers.DmaError, match="MM2S DMA slave error"):
        ol.dac_player.load(np.ones((8, 2), np.int16))
    drivers.reset_dma(ol.dma_dac)
    ol.dac_player.load(np.ones((8, 2), np.int16))
    assert ol.dac_player.io.get("LOADED") == 8


def test_fault_overtemp_and_clock_unlock(ol):
    assert ol.board_info.temperatures_c() == {"pl": 45.0, "ps": 48.0}
    assert not any(ol.board_info.alarms().values())
    ol.device.inject("overtemp", temp_mc=101_000)
    ol.device.inject("clock_unlock", which="adc")
    assert ol.board_info.temperatures_c()["pl"] == 101.0
    assert ol.board_info.clocks()["ADC_PLL_LOCKED"] == 0
    ol.device.clear_faults()
    alarms = ol.board_info.alarms(clear=True)
    assert alarms == {"OVERTEMP": 1, "ADC_CLK_UNLOCK": 1, "DAC_CLK_UNLOCK": 0}
    assert not any(ol.board_info.alarms().values())
    with pytest.raises(ValueError, match="unknown fault"):
        ol.device.inject("gremlins")


def test_rfdc_model_checks_profile(ol):
    rf = ol.rfdc
    rf.set_dac_interpolation(10)
    assert rf.dac_interpolation() == 10
    with pytest.raises(ValueError):
        rf.set_dac_interpolation(7)
    rf.set_dac_nco_hz(1.2e9)
    with pytest.raises(ValueError, match="NCO"):
        rf.set_dac_nco_hz(3e9)
    rf.set_adc_attenuation_db(10)
    with pytest.raises(ValueError, match="Gen3"):
        open_model(physics=GaussianLinkDouble(), board="zcu111").rfdc.set_adc_attenuation_db(1)


def test_capture_1e7_samples_streams_in_chunks(phys):
    """10^7 samples: peak memory = destination buffer + one chunk's working set."""
    chunk = 1 << 18
    o = open_model(physics=phys, chunk=chunk)
    o.frontend.enable(laser=True, lo=True)
    o.frontend.set_switch("BLOCKED")
    n = 10**7
    tracemalloc.start()
    try:
        cap = o.adc_capture.capture(n)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    dest = n * 4
    # the double's per-chunk working set: float32 normals + rounded copy + clip mask + int16
    per_chunk = chunk * 2 * (4 + 4 + 1 + 2)
    assert peak < dest + 2 * per_chunk, (peak, dest, per_chunk)
    assert cap.samples.nbytes == dest and np.asarray(cap.samples[-1000:]).std() > 100


def test_bad_config_refused_by_hardware_then_capture_works(ol):
    """Driver and hardware disagree on a decimation: BAD_CONFIG, the DMA is recovered."""
    import dataclasses

    ol.adc_capture.set_profile(dataclasses.replace(ol.profile, decimations=(7, 8)))
    with pytest.raises(drivers.CaptureError, match="BAD_CONFIG"):
        ol.adc_capture.capture(100, decimation=7)
    assert ol.adc_capture.capture(100).samples.shape == (100, 2)


def test_fault_mm2s_stall_times_out_waveform_load(ol):
    ol.device.inject("dma_stall", dma="dma_dac", after_bytes=400)
    with pytest.raises(drivers.DmaTimeout, match="waveform load: MM2S DMA did not complete"):
        ol.dac_player.load(np.ones((1000, 2), np.int16), timeout_s=0.05)
    assert ol.dac_player.io.get("LOADED") == 100  # 400 bytes reached the player
    ol.device.clear_faults()
    drivers.reset_dma(ol.dma_dac)
    ol.dac_player.load(np.ones((1000, 2), np.int16))
    assert ol.dac_player.io.get("LOADED") == 1000


@pytest.mark.parametrize("stage", [64, drivers.STAGE_SAMPLES])
def test_odd_waveform_padded_to_whole_beats(ol, phys, monkeypatch, stage):
    """Contract 1.2 streams two samples per beat: an odd waveform (here in one transfer, or in
    16 staged ones) is loaded with one zero sample of padding, and exactly its own n samples
    play (LENGTH = n)."""
    monkeypatch.setattr(drivers, "STAGE_SAMPLES", stage)
    played = []
    monkeypatch.setattr(phys, "load_dac", lambda iq, cyclic: played.append(iq.copy()))
    wave = np.random.default_rng(5).integers(-2**15, 2**15, (1001, 2), dtype=np.int16)
    ol.dac_player.load(wave)
    assert ol.dac_player.io.get("LOADED") == 1002 and ol.dac_player.io.get("LENGTH") == 1001
    ol.dac_player.play(cyclic=False)
    assert np.array_equal(played[-1], wave)


def test_capture_length_must_fill_whole_beats(ol):
    """Two complex (DDC) or four real (REAL_IF) samples per 64-bit beat: other lengths are
    refused before any register is written; whole beats capture."""
    for n, mode in ((1001, "DDC"), (1002, "REAL_IF")):
        with pytest.raises(ValueError, match="not whole beats"):
            ol.adc_capture.arm(n, mode=mode)
        assert not ol.adc_capture.io.get("STATUS", "ARMED")
    assert ol.adc_capture.capture(1002).samples.shape == (1002, 2)
    assert ol.adc_capture.capture(1004, mode="REAL_IF").samples.shape == (1004,)
