"""The quantum channel of the two-process link (`cvqkd tx` / `cvqkd rx`): Alice's process owns
the transmitter side of the model and sends the optical field through the simulated fibre
(fpga_bindings.model.fibre_transport, one TCP stream); Bob's process owns the receiver side
(a `LinkModel` with the fibre attached). Nothing else crosses the fibre; what Bob needs to
capture a frame (its public layout and the model time its light starts) comes in the frame's
PARAMS over the authenticated classical channel.

Schedule (model time = Alice's DAC clock, the fibre stream's time axis, starting at 0): Alice
streams the frames back to back, each as dark lead-in, light, dark tail. The lead-in covers
Bob's leading capture guard and, before the frames Bob calibrates at (`calibrates_before`), his
two calibration records; the tail covers his trailing guard, so a capture never waits for
the next frame. The frame's light starts at `light_start_s`; Bob triggers GUARD_S before it
arrives (fibre delay later). The fibre carries 12 bytes per player sample (complex64 field, float32
ground-truth laser phase); Bob keeps only the field from his next capture on.
"""

from __future__ import annotations

import asyncio
import math
import socket

import numpy as np

from controller.config import LinkConfig
from controller.link_protocol import AbortReason, LinkAbort
from controller.link_quantum import (
    GUARD_S,
    Capture,
    Emission,
    ModelReceiver,
    calibrates_before,
    capture_samples,
    model_config,
)
from fpga_bindings.model.fibre_transport import FibreReceiver, FibreSender, TransmitterModel
from fpga_bindings.model.link_api import FrontEnd
from fpga_bindings.model.resample import HALF
from fpga_bindings.model.simple_tx import required_voa_db

DARK_CHUNK = 1 << 20  # player samples of dark field per fibre write
SLACK_S = 2.0e-6  # margin of the schedule on top of the guards, s
SLACK_REL = 1e-4  # relative margin for the clock offset (|clock_ppm| << 100)


def parse_hostport(text: str, what: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port); ValueError with `what` in the message."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{what}: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


class FibreTransmitter:
    """Alice's side: DAC, modulator, laser, VOA (TransmitterModel) -> fibre socket."""

    def __init__(self, cfg: LinkConfig, sock: socket.socket) -> None:
        self.cfg = cfg
        self.mcfg = model_config(cfg)
        sock.settimeout(cfg.protocol.peer_timeout_s)  # a receiver that stops reading
        self._sock = sock
        self._tx = TransmitterModel(self.mcfg, FibreSender(sock))
        self.decimation = self.mcfg.profile.default_decimation
        self.capture_rate_hz = self.mcfg.adc_rate_nominal / self.decimation
        self._sent = 0  # player samples streamed so far (dark and light)
        self._sending: asyncio.Future[None] | None = None

    @property
    def player_sps(self) -> float:
        return self.mcfg.player_sps

    @property
    def dac_bits(self) -> int:
        return self.mcfg.profile.dac_bits

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
        """Start streaming the frame (after its dark lead-in) and return its public timing.
        The stream is written by a worker thread; the previous frame's must have finished."""
        await self.flush()
        if em.iq is None:
            raise ValueError("emit: the transmitter needs the frame's DAC samples")
        voa = required_voa_db(em.quad_per_lsb, self.mcfg.dac_fs_snu)
        if voa < 0:
            raise ValueError(f"the waveform needs {-voa:.1f} dB of gain after the modulator")
        lead, tail = self.dark_samples(em.frame, len(em.iq))
        start = self._sent + lead
        self._sent = start + len(em.iq) + tail
        self._sending = asyncio.ensure_future(
            asyncio.to_thread(self._send, lead, em.iq, tail, voa))
        return {"light_start_s": start / self.player_sps}

    def _send(self, lead: int, iq: np.ndarray, tail: int, voa_db: float) -> None:
        self._tx.frontend = FrontEnd(voa_db=voa_db)
        self._dark(lead)
        self._tx.transmit(iq, end=False)
        self._dark(tail)

    def _dark(self, n: int) -> None:
        for b in range(0, n, DARK_CHUNK):
            self._tx.transmit(np.zeros((min(DARK_CHUNK, n - b), 2), np.int16), end=False)

    async def flush(self) -> None:
        """Wait until the frame being streamed has left; a receiver gone or stalled ends the
        session (peer_lost)."""
        if self._sending is None:
            return
        sending, self._sending = self._sending, None
        try:
            await sending
        except OSError as exc:
            raise LinkAbort(AbortReason.PEER_LOST,
                            f"fibre: {type(exc).__name__} while sending the field") from None

    async def close(self) -> None:
        """Flush, send the end of the stream and close the socket; never raises (it runs
        when the session has ended, normally or not)."""
        try:
            await self.flush()
            await asyncio.to_thread(self._tx.sender.close)
        except (OSError, LinkAbort):
            pass  # the receiver is gone or stalled: nothing left to tell it
        finally:
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


class FibreReceiverChannel(ModelReceiver):
    """Bob's side: his `LinkModel` (fibre loss, delay and excess noise, LO, detector, ADC)
    takes its signal from the fibre socket. The calibration records are taken with the fibre
    detached (the optical switch blocks the signal path), so they need no field."""

    def __init__(self, cfg: LinkConfig,
                 faults: dict[int, tuple[str, dict[str, float]]] | None = None) -> None:
        super().__init__(cfg, faults)
        self.fibre_timeout_s = cfg.protocol.peer_timeout_s
        self._sock: socket.socket | None = None
        self._rx: FibreReceiver | None = None

    def attach(self, sock: socket.socket) -> None:
        """Connect the fibre (a socket from Alice's transmitter)."""
        sock.settimeout(self.fibre_timeout_s)  # a transmitter that stops sending
        self._sock, self._rx = sock, FibreReceiver(sock)
        self._window = _Window(self._rx, self.player_sps)

    async def next_emission(self, frame: int, tx_meta: dict) -> Emission:
        """The frame as Bob knows it: its public layout and light start time (PARAMS)."""
        start = tx_meta.get("light_start_s")
        if not isinstance(start, float) or not math.isfinite(start) or start < 0:
            raise ValueError("PARAMS without a valid light_start_s")
        return Emission(frame, None, float(tx_meta["quad_per_lsb"]), tx_meta)

    def calibrate(self, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
        self.model.attach_fibre(None)
        return super().calibrate(n_samples)

    def capture(self, em: Emission) -> Capture:
        try:
            return super().capture(em)
        except (OSError, ConnectionError) as exc:
            raise LinkAbort(AbortReason.PEER_LOST,
                            f"fibre: {type(exc).__name__} while receiving the field") from None

    def _arm(self, em: Emission) -> None:
        start = float(em.meta["light_start_s"])
        wait = start + self.mcfg.delay_s - GUARD_S - self.model.now_s
        if wait < 0:
            raise LinkAbort(AbortReason.SYNC_FAILURE, f"frame {em.frame}'s light arrives "
                            f"{-wait * 1e6:.1f} us before the receiver is ready")
        if self._rx is None:
            raise ValueError("the fibre is not connected")
        self.model.advance(wait)
        first = math.floor((start - 2 * GUARD_S) * self.player_sps)  # the capture needs no less
        while self._rx.first < first and not self._rx.ended:  # skip the dark lead-in in steps
            self._rx.wait_until(min(first, self._rx.first + DARK_CHUNK))
            self._rx.discard_before(first)
        self.model.attach_fibre(self._window)
        self.model.set_frontend(FrontEnd())  # the VOA is Alice's, before the fibre

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()

