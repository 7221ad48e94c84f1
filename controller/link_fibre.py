"""The quantum channel of the two-process link (`cvqkd tx` / `cvqkd rx`), through the overlay
drivers at both ends (controller.link_quantum). On the model, Alice's overlay runs over
`FibreTxPhysics` (her DAC player's output enters the simulated fibre,
fpga_bindings.model.fibre_transport, one TCP stream) and Bob's over a `LinkModel` with the
fibre attached. Nothing else crosses the fibre; what Bob needs to capture a frame (its public
layout and the model time its light starts) comes in the frame's PARAMS over the authenticated
classical channel. With `--board` (an overlay from `open_board` at each end, a real fibre) the
same classes drive the boards; see "Two boards" below.

Schedule (model time = Alice's DAC clock, the fibre stream's time axis, starting at 0): Alice
streams the frames back to back, each as dark lead-in, light, dark tail. The lead-in covers
Bob's leading capture guard and, before the frames Bob calibrates at (`calibrates_before`), his
two calibration records; the tail covers his trailing guard, so a capture never waits for
the next frame. The frame's light starts at `light_start_s`; Bob triggers GUARD_S before it
arrives (fibre delay later). The fibre carries 12 bytes per player sample (complex64 field, float32
ground-truth laser phase); Bob keeps only the field from his next capture on. Bob's capture is
software-triggered with TRIG_DELAY covering the wait (model time passes in the delay).

Two boards (`--board`): no shared model time. Alice loads each frame and arms her player for
its EXTERNAL trigger before she sends PARAMS; Bob arms his capture with TRIG_DELAY = fibre delay
(from physics.distance_km) - GUARD_S and pulses the software TRIGGER, whose trigger output
(cabled to Alice's player trigger input) starts her frame. The guards (GUARD_S each side) absorb
the cable delay and the error of the configured distance (2 us ~ 400 m of fibre).
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from typing import Any

import numpy as np

from controller.config import LinkConfig
from controller.link_protocol import AbortReason, LinkAbort
from controller.link_quantum import (
    GUARD_S,
    Capture,
    Emission,
    OverlayReceiver,
    calibrates_before,
    capture_samples,
    check_health,
    hardware_abort,
    model_config,
    player_rate,
    set_converter_rates,
    voa_for,
)
from fpga_bindings.drivers import OverlayError
from fpga_bindings.model.fibre_transport import FibreReceiver, FibreSender, FibreTxPhysics
from fpga_bindings.model.resample import HALF
from fpga_bindings.overlay import CvqkdOverlay, open_model

DARK_CHUNK = 1 << 20  # player samples of dark field per fibre write
SLACK_S = 2.0e-6  # margin of the schedule on top of the guards, s
SLACK_REL = 1e-4  # relative margin for the clock offset (|clock_ppm| << 100)
PLAY_TIMEOUT_S = 5.0  # board: a frame's play must end this long after its trigger could come
BOARD_TRIGGER = "external"  # tx_meta["trigger"] of a board transmitter (no model time)


def parse_hostport(text: str, what: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port); ValueError with `what` in the message."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{what}: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


class FibreTransmitter:
    """Alice's transmitter through her overlay's front-end (VOA, laser) and DAC player. On the
    model (`sock` given) the overlay is a fresh model whose physics streams into the fibre; on
    a board (`overlay` from open_board) the player waits for Bob's trigger (module docstring)."""

    def __init__(self, cfg: LinkConfig, sock: socket.socket | None = None,
                 overlay: CvqkdOverlay | None = None) -> None:
        self.cfg = cfg
        self.mcfg = model_config(cfg)
        self._sock = sock
        self._physics: FibreTxPhysics | None = None
        if overlay is None:
            if sock is None:
                raise ValueError("FibreTransmitter: give the fibre socket (model) or an overlay")
            sock.settimeout(cfg.protocol.peer_timeout_s)  # a receiver that stops reading
            self._physics = FibreTxPhysics(self.mcfg, FibreSender(sock), DARK_CHUNK)
            overlay = open_model(physics=self._physics, board=self.mcfg.board)
        self.overlay = overlay
        self.decimation, self.capture_rate_hz = set_converter_rates(overlay, cfg)
        overlay.frontend.enable(laser=True, lo=False)
        overlay.frontend.set_switch("SIGNAL")
        self._sent = 0  # player samples streamed so far (dark and light), model
        self._sending: asyncio.Future[None] | None = None

    @property
    def player_sps(self) -> float:
        return player_rate(self.overlay)

    @property
    def dac_bits(self) -> int:
        return self.overlay.profile.dac_bits

    def dark_samples(self, frame: int, n_player: int) -> tuple[int, int]:
        """(lead-in, tail) of dark player samples around the frame's light: Bob's leading
        guard and his calibration records when he calibrates before the frame; his trailing
        guard (with the clock offset and the model's interpolation taps)."""
        cal = 0.0
        if calibrates_before(self.cfg, frame):
            cal = 2 * capture_samples(self.mcfg, n_player, self.capture_rate_hz) \
                / self.capture_rate_hz
        lead = GUARD_S + cal + SLACK_S + SLACK_REL * cal
        tail = GUARD_S + SLACK_S + SLACK_REL * n_player / self.player_sps
        return math.ceil(lead * self.player_sps), math.ceil(tail * self.player_sps) + HALF + 3

    async def emit(self, em: Emission) -> dict:
        """Model: start streaming the frame (after its dark lead-in, on a worker thread; the
        previous frame's must have finished) and return its public timing. Board: load the
        frame and arm the player for Bob's trigger."""
        await self.flush()
        if em.iq is None:
            raise ValueError("emit: the transmitter needs the frame's DAC samples")
        voa = voa_for(em, self.mcfg.dac_fs_snu)
        if self._physics is None:
            await self._hardware(self._arm_board, em.iq, voa)
            return {"trigger": BOARD_TRIGGER}
        lead, tail = self.dark_samples(em.frame, len(em.iq))
        start = self._sent + lead
        self._sent = start + len(em.iq) + tail
        self._sending = asyncio.ensure_future(
            asyncio.to_thread(self._send, lead, em.iq, tail, voa))
        return {"light_start_s": start / self.player_sps}

    def _send(self, lead: int, iq: np.ndarray, tail: int, voa_db: float) -> None:
        assert self._physics is not None
        ol = self.overlay
        ol.frontend.set_voa_db(voa_db)
        self._physics.advance(lead / self.player_sps)  # dark: the idle DAC
        ol.dac_player.load(iq)
        ol.dac_player.play(cyclic=False)  # the light enters the fibre
        self._physics.advance(tail / self.player_sps)

    def _arm_board(self, iq: np.ndarray, voa_db: float) -> None:
        check_health(self.overlay, "transmitter")
        player = self.overlay.dac_player
        if player.status()["ARMED"]:  # a frame Bob never triggered (aborted)
            player.stop()
        self.overlay.frontend.set_voa_db(voa_db)
        player.load(iq)
        player.play(cyclic=False, external_trigger=True)

    def _wait_played(self) -> None:
        """Board: the frame armed last has been played (DONE) or was never triggered."""
        player = self.overlay.dac_player
        deadline = time.monotonic() + PLAY_TIMEOUT_S
        while player.status()["PLAYING"]:
            if time.monotonic() > deadline:
                raise OverlayError("DAC player still playing the previous frame")
            time.sleep(1e-3)

    async def _hardware(self, fn, *args) -> None:
        try:
            await asyncio.to_thread(fn, *args)
        except OverlayError as exc:
            raise hardware_abort(exc) from None

    async def flush(self) -> None:
        """Wait until the frame being sent has left; a receiver gone or stalled ends the
        session (peer_lost)."""
        if self._physics is None:
            await self._hardware(self._wait_played)
            return
        if self._sending is None:
            return
        sending, self._sending = self._sending, None
        try:
            await sending
        except OSError as exc:
            raise LinkAbort(AbortReason.PEER_LOST,
                            f"fibre: {type(exc).__name__} while sending the field") from None

    async def close(self) -> None:
        """Flush, send the end of the stream and close the socket (model), stop the player
        (board); never raises (it runs when the session has ended, normally or not)."""
        try:
            await self.flush()
            if self._physics is not None:
                await asyncio.to_thread(self._physics.close)
            else:
                self.overlay.dac_player.stop()
        except (OSError, LinkAbort, OverlayError):
            pass  # the receiver is gone or stalled: nothing left to tell it
        finally:
            if self._sock is not None:
                self._sock.close()


class _Window:
    """A `FibreReceiver` as the model sees it: its time axis starts at the first sample
    still held (the receiver discards what earlier captures used)."""

    def __init__(self, rx: FibreReceiver, player_sps: float) -> None:
        self.rx, self.sps = rx, player_sps

    def wait_start(self) -> float:
        return self.rx.wait_start() + self.rx.first / self.sps

    def wait_until(self, index: int) -> None:
        self.rx.wait_until(self.rx.first + index)

    def field(self) -> tuple[np.ndarray, np.ndarray]:
        return self.rx.field()


class FibreReceiverChannel(OverlayReceiver):
    """Bob's receiver: on the model his `LinkModel` (fibre loss, delay and excess noise, LO,
    detector, ADC) takes its signal from the fibre socket; the calibration records are taken
    with the fibre detached (the optical switch blocks the signal path), so they need no
    field. With a board `overlay`, the light comes through the real fibre."""

    def __init__(self, cfg: LinkConfig,
                 faults: dict[int, tuple[str, dict[str, float]]] | None = None,
                 overlay: CvqkdOverlay | None = None) -> None:
        super().__init__(cfg, overlay, faults)
        self.board = overlay is not None  # else a fresh model, joined by the simulated fibre
        self.fibre_timeout_s = cfg.protocol.peer_timeout_s
        self._sock: socket.socket | None = None
        self._rx: FibreReceiver | None = None

    @property
    def model(self):
        """The receiver's link model (model only)."""
        return self.overlay.device.physics

    def attach(self, sock: socket.socket) -> None:
        """Connect the simulated fibre (a socket from Alice's transmitter; model only)."""
        sock.settimeout(self.fibre_timeout_s)  # a transmitter that stops sending
        self._sock, self._rx = sock, FibreReceiver(sock)
        self._window = _Window(self._rx, self.player_sps)

    async def next_emission(self, frame: int, tx_meta: dict) -> Emission:
        """The frame as Bob knows it: its public layout and light start time (PARAMS)."""
        if (tx_meta.get("trigger") == BOARD_TRIGGER) != self.board:
            raise LinkAbort(AbortReason.CONFIG_MISMATCH, "one end drives a board, the other "
                            "the model (give --board to both or neither)")
        if not self.board:
            start = tx_meta.get("light_start_s")
            if not isinstance(start, float) or not math.isfinite(start) or start < 0:
                raise ValueError("PARAMS without a valid light_start_s")
        return Emission(frame, None, float(tx_meta["quad_per_lsb"]), tx_meta)

    def calibrate(self, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.board:
            self.model.attach_fibre(None)
        return super().calibrate(n_samples)

    def capture(self, em: Emission) -> Capture:
        try:
            return super().capture(em)
        except (OSError, ConnectionError) as exc:
            raise LinkAbort(AbortReason.PEER_LOST,
                            f"fibre: {type(exc).__name__} while receiving the field") from None

    def _prepare(self, em: Emission) -> dict[str, Any]:
        """Board: the capture starts GUARD_S before the light returns from Alice's trigger.
        Model: move the fibre window to the frame; the trigger delay covers the model time
        until GUARD_S before its light arrives (the excess over TRIG_DELAY's range passes
        first)."""
        if self.board:
            return {"trigger": "SOFTWARE", "delay_s": max(0.0, self.mcfg.delay_s - GUARD_S),
                    "trigger_out": True}
        start = float(em.meta["light_start_s"])
        wait = start + self.mcfg.delay_s - GUARD_S - self.model.now_s
        if wait < 0:
            raise LinkAbort(AbortReason.SYNC_FAILURE, f"frame {em.frame}'s light arrives "
                            f"{-wait * 1e6:.1f} us before the receiver is ready")
        if self._rx is None:
            raise ValueError("the fibre is not connected")
        first = math.floor((start - 2 * GUARD_S) * self.player_sps)  # the capture needs no less
        while self._rx.first < first and not self._rx.ended:  # skip the dark lead-in in steps
            self._rx.wait_until(min(first, self._rx.first + DARK_CHUNK))
            self._rx.discard_before(first)
        self.model.attach_fibre(self._window)
        longest = ((1 << 32) - 1) / self.overlay.profile.default_adc_sps
        self.model.advance(max(0.0, wait - longest))
        return {"trigger": "SOFTWARE", "delay_s": min(wait, longest)}

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
