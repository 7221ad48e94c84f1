"""The link's quantum channel through the overlay drivers (controller.link_quantum): on the model
the drivers add nothing and lose nothing (bit-identical to calling the link model directly),
the receiver's status comes from the registers, and a driver failure ends the session cleanly
while the receiver stays usable."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace

import numpy as np
import pytest

from controller.config import LinkConfig, Transmitter, config_from_dict
from controller.link_protocol import AbortReason, LinkAbort
from controller.link_quantum import GUARD_S, Emission, SimQuantumChannel, model_config, voa_for
from dsp.transmitter import TxConfig, build_frame
from fpga_bindings.model.link import LinkModel
from fpga_bindings.model.link_api import AdcSettings, FrontEnd, OpticalSwitch


def small_config(**physics: float) -> LinkConfig:
    return config_from_dict({"physics": {"distance_km": 5.0, "seed": 3, **physics},
                             "modulation": {"v_a": 1.5},
                             "protocol": {"frame_symbols": 4096, "block_symbols": 4096}})


def frame(cfg: LinkConfig, f: int = 0) -> Emission:
    """Frame f of Alice's waveform (dsp.transmitter) as she emits it."""
    mcfg = model_config(cfg)
    tx = TxConfig(sample_rate_hz=mcfg.player_sps, symbol_rate_hz=cfg.modulation.symbol_rate_hz,
                  v_a=cfg.modulation.v_a, dac_bits=mcfg.profile.dac_bits)
    fr = build_frame(tx, cfg.protocol.frame_symbols, os.urandom(32), f)
    return Emission(f, fr.iq_int16, fr.meta["quad_per_lsb"], fr.meta)


def direct_record(model: LinkModel, n: int, nco_hz: float, decimation: int) -> np.ndarray:
    return np.concatenate(list(model.capture(AdcSettings(n_samples=n, nco_hz=nco_hz,
                                                         decimation=decimation))))


def test_driver_path_is_bit_identical_to_direct_model_calls() -> None:
    """Calibration records and the frame's capture through frontend/dac_player/adc_capture
    and pynq's DMA driver equal the link model's own output for the same calls: the VOA at
    its 0.01 dB register step, the trigger delay in whole ADC samples."""
    cfg = small_config()
    em = frame(cfg)
    qc = SimQuantumChannel(cfg)
    n = qc.capture_samples(em)
    shot, elec = qc.calibrate(n)
    cap = qc.capture(em)

    mcfg = model_config(cfg)
    model = LinkModel(mcfg)
    dec, nco = qc.decimation, mcfg.if_hz
    model.set_frontend(FrontEnd(switch=OpticalSwitch.BLOCKED))
    shot_d = direct_record(model, n, nco, dec)
    model.set_frontend(FrontEnd(switch=OpticalSwitch.LO_OFF))
    elec_d = direct_record(model, n, nco, dec)
    model.set_frontend(FrontEnd(voa_db=round(voa_for(em, mcfg.dac_fs_snu) * 100) / 100))
    model.load_dac(em.iq, cyclic=False)
    f_adc = mcfg.adc_rate_nominal
    model.advance(round((mcfg.delay_s - GUARD_S) * f_adc) / f_adc)
    iq_d = direct_record(model, n, nco, dec)

    assert np.array_equal(shot, shot_d) and np.array_equal(elec, elec_d)
    assert np.array_equal(cap.iq, iq_d)
    st = model.status()
    assert cap.status.clip_count == st.clip_count == 0 and cap.status.lo_locked
    assert cap.status.trigger_sample == st.trigger_sample - round((mcfg.delay_s - GUARD_S)
                                                                  * f_adc)
    assert cap.capture_rate_hz == f_adc / dec and cap.nco_hz == nco


def test_transmitter_full_scale_sets_the_voa_and_the_model_alike() -> None:
    """transmitter.dac_full_scale_snu (a board's modulator calibration) drives the VOA: a
    modulator 4x stronger at full scale gets 20 log10(4) dB more attenuation, and since the
    model's modulator takes the same value the light at the channel input, hence the capture,
    is the same (up to the VOA's 0.01 dB step)."""
    caps, voas = [], []
    for fs in (256.0, 1024.0):
        cfg = replace(small_config(), transmitter=Transmitter(dac_full_scale_snu=fs))
        assert model_config(cfg).dac_fs_snu == fs
        em = frame(cfg)
        qc = SimQuantumChannel(cfg)
        caps.append(qc.capture(em).iq.astype(np.float64))
        voas.append(qc.overlay.frontend.voa_db)
    assert voas[1] - voas[0] == pytest.approx(20 * np.log10(4), abs=0.011)
    ratio = caps[1].var() / caps[0].var()
    assert abs(ratio - 1) < 0.005, ratio
    with pytest.raises(ValueError, match=r"transmitter\.dac_full_scale_snu"):
        config_from_dict({"transmitter": {"dac_full_scale_snu": 0.0}})


@pytest.mark.parametrize(("fault", "check"), [
    (("lo_unlock", {}), lambda st: not st.lo_locked),
    (("saturation", {"gain": 100.0}), lambda st: st.clip_count > 0 and st.overflow),
])
def test_fault_bits_come_from_the_registers(fault, check) -> None:
    """LO unlock (STATUS.LO_LOCKED / sticky ERRORS.LOCK_LOST) and detector saturation
    (CLIP_COUNT, ERRORS.OVERFLOW) reach the link's status for the faulted frame only."""
    cfg = small_config()
    em0, em1 = frame(cfg, 0), frame(cfg, 1)
    qc = SimQuantumChannel(cfg, faults={0: fault})
    bad = qc.capture(em0).status
    good = qc.capture(em1).status
    assert check(bad)
    assert good.lo_locked and good.clip_count == 0 and not good.overflow


def test_dma_stall_ends_the_session_and_the_receiver_recovers() -> None:
    """A stalled S2MM DMA (FIFO overrun) is a hardware abort with the registers' story; the
    driver resets the DMA, and the next frame captures normally."""
    cfg = small_config()
    qc = SimQuantumChannel(cfg, faults={0: ("dma_stall", {"after_bytes": 4096})})
    with pytest.raises(LinkAbort) as exc:
        qc.capture(frame(cfg, 0))
    assert exc.value.reason == AbortReason.HARDWARE_FAULT
    assert "receiver hardware" in exc.value.detail and "FIFO" in exc.value.detail
    cap = qc.capture(frame(cfg, 1))
    assert cap.iq.shape == (qc.capture_samples(frame(cfg, 1)), 2) and cap.status.lo_locked
    assert np.asarray(cap.iq).std() > 100  # real samples, not an empty buffer


@pytest.mark.parametrize("fault", [("clock_unlock", {"which": "adc"}),
                                   ("overtemp", {"temp_mc": 101_000})])
def test_board_alarms_during_a_capture_end_the_session(fault) -> None:
    """A converter PLL unlock or over-temperature latched in board_info.ALARMS during the
    frame's capture: the samples cannot be trusted, the session ends (hardware reason)."""
    cfg = small_config()
    qc = SimQuantumChannel(cfg, faults={0: fault})
    with pytest.raises(LinkAbort) as exc:
        qc.capture(frame(cfg, 0))
    assert "board alarm" in exc.value.detail
    assert qc.capture(frame(cfg, 1)).status.lo_locked  # cleared: the next capture is fine


def test_emit_then_capture_through_the_queue() -> None:
    """Alice's emit hands Bob's side the frame (one board: no public timing)."""
    cfg = small_config()
    qc = SimQuantumChannel(cfg)
    em = frame(cfg)

    async def go() -> Emission:
        assert await qc.emit(em) == {}
        return await qc.next_emission(0, {})

    got = asyncio.run(go())
    assert got is em


def test_dma_error_mid_session_ends_it_with_the_stores_untouched(tmp_path) -> None:
    """`cvqkd link --sim` with a DMA slave error on the second frame's capture: the session
    ends with the hardware reason and the register story; the first frame's data never
    becomes key (no block closed), both stores stay empty and equal."""
    from controller.link import count_ready, prepare_workdir, run_link

    cfg = config_from_dict({"physics": {"distance_km": 5.0, "seed": 7},
                            "modulation": {"v_a": 1.5},
                            "protocol": {"frame_symbols": 1 << 16, "block_symbols": 1 << 18,
                                         "code_n": 16000, "xi_abort": 1.0}})
    wd = prepare_workdir(cfg, tmp_path / "w")
    report = asyncio.run(run_link(cfg, wd, 3, faults={1: ("dma_error", {"kind": "slave"})}))
    abort = report.session_abort
    assert abort is not None and abort["reason"] == "hardware_fault"
    assert "receiver hardware" in abort["detail"] and "slave error" in abort["detail"]
    assert report.blocks == [] or not any(b.ok for b in report.blocks)
    assert count_ready(wd.store_alice) == count_ready(wd.store_bob) == 0
