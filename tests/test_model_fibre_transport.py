"""Two-board topology: Alice's transmitter in another process, the field through a socket."""

from __future__ import annotations

import multiprocessing as mp
import socket
import struct

import numpy as np
import pytest
from model_support import capture, estimate_t_xi, literal_ideal_receiver, waveform

from fpga_bindings.model.fibre_transport import (
    FibreReceiver,
    FibreSender,
    TransmitterModel,
    run_transmitter,
)
from fpga_bindings.model.link import LinkConfig, LinkModel
from fpga_bindings.model.link_api import FrontEnd
from fpga_bindings.model.simple_tx import required_voa_db


def test_two_processes_joined_by_a_simulated_fibre(tmp_path):
    alice_cfg = LinkConfig(seed=100, tx_linewidth_hz=100e3)
    bob_cfg = LinkConfig(seed=200, distance_km=12.0, xi=0.04, eta=0.65, v_el=0.02,
                         clock_ppm=-4.0, lo_offset_hz=2e6, lo_linewidth_hz=100e3)
    wf = waveform(alice_cfg, 40_000, pilot_snu=2.0)
    voa = required_voa_db(wf.quad_per_lsb, alice_cfg.dac_fs_snu)
    address = str(tmp_path / "fibre.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(address)
    server.listen(1)
    alice = mp.get_context("spawn").Process(target=run_transmitter,
                                            args=(address, alice_cfg, wf.iq, voa))
    alice.start()
    try:
        server.settimeout(60)
        conn, _ = server.accept()
        bob = LinkModel(bob_cfg)
        bob.attach_fibre(FibreReceiver(conn))
        bob.set_frontend(FrontEnd())  # Bob's VOA is not on this path
        bob.request_ground_truth(wf.grid)
        bob.advance(bob_cfg.delay_s - 1e-6)
        adc = capture(bob, int(len(wf.iq) * 1.0001) + 2000)
    finally:
        alice.join(60)
        server.close()
    assert alice.exitcode == 0
    truth = bob.ground_truth()
    y, a = truth.genie.symbols, wf.symbols
    assert not np.isnan(y).any()
    big_t, xi, sd_t, sd_xi = estimate_t_xi(np.concatenate([a.real, a.imag]),
                                           np.concatenate([y.real, y.imag]),
                                           bob_cfg.eta, bob_cfg.v_el, 0.5)
    assert abs(big_t - bob_cfg.fibre_transmittance) < 5 * sd_t
    assert abs(xi - bob_cfg.xi) < 5 * sd_xi
    # the true phase includes Alice's laser (it travelled inside the field)
    lit = literal_ideal_receiver(adc, bob_cfg.rx_gain_lsb, truth, wf.grid.pulse, True)
    assert np.sqrt(np.mean(np.abs(lit - y) ** 2)) < 0.01 * np.sqrt(np.mean(np.abs(y) ** 2))
    assert bob.status().monitor_power_w > 0


def test_receiver_rejects_a_foreign_stream():
    a, b = socket.socketpair()
    a.sendall(struct.pack("<4sHHqdq", b"XXXX", 1, 1, 0, 0.0, 4))
    with pytest.raises(ValueError, match="magic"):
        FibreReceiver(b).wait_start()
    a.close()
    b.close()


def test_stream_round_trip_in_process():
    a, b = socket.socketpair()
    cfg = LinkConfig(seed=1, tx_linewidth_hz=0.0)
    iq = np.array([[4000, -4000]] * 1000, np.int16)
    TransmitterModel(cfg, FibreSender(a), FrontEnd(voa_db=20.0)).transmit(iq, start_s=1e-3,
                                                                           chunk=300)
    rx = FibreReceiver(b)
    assert rx.wait_start() == 1e-3
    rx.wait_until(10**9)
    field, phase = rx.field()
    assert rx.ended and len(field) == 1000 and not phase.any()
    want = (4000 - 4000j) * cfg.dac_fs_snu / 32768 * 0.1
    assert np.allclose(field, want, rtol=1e-6)
    b.close()
