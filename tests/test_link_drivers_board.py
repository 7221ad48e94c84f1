"""`cvqkd tx/rx --board` up to the board boundary: the board code path of both ends
(controller.link_fibre in board mode, controller.link_two_process with an overlay, the CLI's
checks) with model devices standing in for the two boards. A bench harness wires them as the
two-board bench is wired (docs/protocol.md, "Two boards"): Bob's capture trigger output drives
Alice's EXTERNAL player trigger, and her DAC output reaches his detector through a fibre."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from test_link_two_process import free_port_pair, setup_ends, stores

from controller.cli import main
from controller.commands import link_ends
from controller.config import LinkConfig, config_from_dict
from controller.link_fibre import FibreReceiverChannel
from controller.link_protocol import AbortReason, LinkAbort
from controller.link_quantum import model_config
from controller.link_two_process import TxServer, end_files, run_rx, run_tx
from fpga_bindings.model.fibre_transport import FibreTxPhysics
from fpga_bindings.model.link import LinkModel
from fpga_bindings.overlay import CvqkdOverlay, open_model


class MemoryFibre:
    """The bench's fibre inside one process: Alice's transmitter writes the field at its
    input (the FibreSender interface), Bob's link model reads it (the FibreReceiver interface
    of `LinkModel.attach_fibre`); time 0 is the first sample, as on the simulated fibre."""

    def __init__(self) -> None:
        self._field: list[np.ndarray] = []
        self._phase: list[np.ndarray] = []

    def send_field(self, start_s: float, field: np.ndarray, tx_phase: np.ndarray) -> None:
        self._field.append(np.asarray(field, np.complex64).copy())
        self._phase.append(np.asarray(tx_phase, np.float64).copy())

    def close(self) -> None:
        """The stream's end: nothing to do in memory."""

    def wait_start(self) -> float:
        return 0.0

    def wait_until(self, index: int) -> None:
        """Everything sent is there already (beyond it the fibre is dark)."""

    def field(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._field:
            return np.zeros(0, np.complex64), np.zeros(0)
        return np.concatenate(self._field), np.concatenate(self._phase)


def bench(cfg: LinkConfig) -> tuple[CvqkdOverlay, CvqkdOverlay]:
    """(Alice's board, Bob's board) as model devices, wired: Bob's trigger output -> Alice's
    EXTERNAL trigger input (the cable's delay neglected), Alice's light -> the fibre -> Bob."""
    mcfg = model_config(cfg)
    fibre = MemoryFibre()
    tx_physics = FibreTxPhysics(mcfg, fibre)
    alice = open_model(physics=tx_physics, board=mcfg.board)
    rx_model = LinkModel(mcfg)
    rx_model.attach_fibre(fibre)
    bob = open_model(physics=rx_model, board=mcfg.board)

    def trigger_cable() -> None:
        # the idle DAC streams dark until the pulse (one time axis: Bob's model time)
        tx_physics.advance(rx_model.now_s - tx_physics.sent / mcfg.player_sps)
        alice.device.external_trigger()

    bob.device.trigger_out.append(trigger_cable)
    return alice, bob


def bench_session(cfg: LinkConfig, a: Path, b: Path, alice: CvqkdOverlay, bob: CvqkdOverlay,
                  frames: int) -> tuple:
    """One tx/rx session of `frames` frames over the two boards of `bench`, the ends' files in
    `a` and `b` (setup_ends); (Alice's report, Bob's report)."""
    addr = ("127.0.0.1", free_port_pair())

    async def both():
        listening = asyncio.Event()
        tx = asyncio.create_task(run_tx(cfg, end_files(cfg, a, "alice"), addr, None,
                                        TxServer(frames=frames), overlay=alice,
                                        on_listening=lambda *_: listening.set()))
        await asyncio.wait_for(listening.wait(), 30)
        rx = await run_rx(cfg, end_files(cfg, b, "bob"), addr, None, overlay=bob)
        (tx_report,) = await tx
        return tx_report, rx

    return asyncio.run(both())


def small_config() -> LinkConfig:
    return config_from_dict({"physics": {"distance_km": 5.0, "seed": 7},
                             "modulation": {"v_a": 1.5},
                             "protocol": {"frame_symbols": 1 << 16, "block_symbols": 1 << 17,
                                          "code_n": 16000, "xi_abort": 1.0}})


def test_board_path_end_to_end_with_model_boards(tmp_path: Path) -> None:
    """Both ends' board code (player armed for the external trigger, capture with trigger
    output and TRIG_DELAY, no simulated fibre socket) runs a two-frame session: every frame
    synchronises, is reconciled and verified, the excess noise is the configured one, and the
    two stores agree."""
    cfg = small_config()
    a, b = setup_ends(tmp_path)
    alice, bob = bench(cfg)
    rep_tx, rep_rx = bench_session(cfg, a, b, alice, bob, frames=2)
    assert rep_tx.session_abort is None and rep_rx.session_abort is None
    assert [f.ok for f in rep_rx.frames] == [True, True]
    for f in rep_rx.frames:  # xi 0.02 SNU; one 2^16-symbol frame estimates it to ~0.06
        assert abs(f.xi - cfg.physics.xi) < 0.25
    plays = alice.dac_player.status()["PLAY_COUNT"]
    assert plays == 1 and bob.adc_capture.io.get("CAPTURE_COUNT") == 2 + 2  # 2 cal + 2 frames
    alice_keys, bob_keys = stores(a, b)
    assert alice_keys == bob_keys


def test_board_and_model_ends_do_not_mix() -> None:
    """A model receiver refuses a board transmitter's frame (and the other way round)."""
    cfg = small_config()
    meta = {"quad_per_lsb": 1e-3}
    with pytest.raises(LinkAbort) as exc:
        asyncio.run(FibreReceiverChannel(cfg).next_emission(0, {**meta, "trigger": "external"}))
    assert exc.value.reason == AbortReason.CONFIG_MISMATCH
    board_rx = FibreReceiverChannel(cfg, overlay=bench(cfg)[1])
    with pytest.raises(LinkAbort):
        asyncio.run(board_rx.next_emission(0, {**meta, "light_start_s": 0.0}))


@pytest.fixture
def fake_board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A device tree that says ZynqMP; returns a directory for bitstreams."""
    dt = tmp_path / "compatible"
    dt.write_bytes(b"xlnx,zynqmp\0")
    monkeypatch.setattr(link_ends, "DEVICE_TREE", dt)
    return tmp_path


def _one_line_error(capsys: pytest.CaptureFixture[str], rc: int, text: str) -> None:
    err = capsys.readouterr().err
    assert rc == 2 and text in err and len(err.strip().splitlines()) == 1, err


def test_board_errors_are_one_line(fake_board: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Each missing piece of a board is exit 2 with one line, in the order they are found."""
    argv = ["rx", "--connect", "127.0.0.1:9", "--board"]
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "xrfdc" else find(name, *a))
    _one_line_error(capsys, main(argv), "xrfdc package is missing")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "xrfdc" else find(name, *a))
    _one_line_error(capsys, main(argv), "--board needs --bitfile")
    bit = fake_board / "cvqkd.bit"
    _one_line_error(capsys, main([*argv, "--bitfile", str(bit)]), "no such file")
    bit.write_bytes(b"\0")
    _one_line_error(capsys, main([*argv, "--bitfile", str(bit)]), "cvqkd.hwh is missing")
    _one_line_error(capsys, main(["rx", "--connect", "127.0.0.1:9", "--bitfile", str(bit)]),
                    "--bitfile goes with --board")


def test_board_overlay_must_match_the_configured_board(tmp_path: Path) -> None:
    """The overlay's BOARD.ID must be the configuration's modulation.board; a converter PLL
    unlock is refused too."""
    cfg = config_from_dict({"modulation": {"board": "zcu111"}})
    ol = open_model(board="rfsoc4x2")
    with pytest.raises(ValueError, match="built for rfsoc4x2"):
        link_ends.check_overlay(ol, cfg)
    ol.device.inject("clock_unlock", which="adc")
    with pytest.raises(ValueError, match="clocks not locked"):
        link_ends.check_overlay(ol, config_from_dict({}))
    assert link_ends.check_overlay(open_model(), config_from_dict({})).profile.name == "rfsoc4x2"
