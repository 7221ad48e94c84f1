"""Two-board topology: Alice's board and Bob's board in two processes, joined by a simulated
fibre that carries the optical field over a stream socket (AF_UNIX or TCP).

Alice's process runs a `TransmitterModel`: DAC codes -> modulator (`dac_fs_snu`) -> her laser's
phase noise -> VOA, and sends the field at the fibre input (complex64, SNU per player-sample
mode) in chunks. Bob's process attaches a `FibreReceiver` to his `LinkModel`
(`LinkModel.attach_fibre`), which then takes its signal from the fibre instead of its own DAC:
the fibre's loss, delay and excess noise, Bob's LO, detector and ADC are Bob's model as in the
loopback topology (his `tx_linewidth_hz` and VOA are not used: they belong to Alice).

Both processes share the model time axis (Alice's DAC clock); Bob's ADC clock offset is his
`clock_ppm`. Wire format (little-endian), one message = header + payload:
    header: magic b"CVQF", version u16 (1), kind u16 (1 FIELD, 2 END), start index i64 (player
    samples since the stream's start), stream start time f64 (s), sample count i64
    FIELD payload: count complex64 field samples, then count float32 transmitter-laser phases
    (rad; ground truth for tests, not light: a real fibre carries only the field)
No pickle: arrays travel as raw little-endian bytes, checked against the header.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from fpga_bindings.model.link import DAC_CODE_FULL_SCALE, LinkConfig
from fpga_bindings.model.link_api import AdcSettings, FrontEnd, LinkStatus
from fpga_bindings.model.phase_steps import StepSource

MAGIC = b"CVQF"
VERSION = 1
KIND_FIELD = 1
KIND_END = 2
_HEADER = struct.Struct("<4sHHqdq")
MAX_CHUNK = 1 << 24  # samples per message accepted by the receiver


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError("fibre: connection closed in the middle of a message")
        got += k
    return bytes(buf)


class FibreSender:
    """Alice's end of the simulated fibre."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._next = 0

    def send_field(self, start_s: float, field: np.ndarray, tx_phase: np.ndarray) -> None:
        field = np.ascontiguousarray(field, dtype="<c8")
        tx_phase = np.ascontiguousarray(tx_phase, dtype="<f4")
        if field.ndim != 1 or field.shape != tx_phase.shape:
            raise ValueError("fibre: field and tx_phase must be 1-D arrays of one length")
        self._sock.sendall(_HEADER.pack(MAGIC, VERSION, KIND_FIELD, self._next, start_s,
                                        len(field)))
        self._sock.sendall(field.tobytes())
        self._sock.sendall(tx_phase.tobytes())
        self._next += len(field)

    def close(self) -> None:
        self._sock.sendall(_HEADER.pack(MAGIC, VERSION, KIND_END, self._next, 0.0, 0))
        self._sock.close()


class FibreReceiver:
    """Bob's end: collects the field as it arrives."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._fields: list[np.ndarray] = []
        self._phases: list[np.ndarray] = []
        self._count = 0
        self.first = 0  # stream index of the first sample still held (see discard_before)
        self.start_s: float | None = None
        self.ended = False

    def _read_message(self) -> None:
        magic, version, kind, start, t0, n = _HEADER.unpack(_recv_exact(self._sock, _HEADER.size))
        if magic != MAGIC or version != VERSION:
            raise ValueError("fibre: not a cvqkd fibre stream (bad magic or version)")
        if kind == KIND_END:
            self.ended = True
            return
        if kind != KIND_FIELD or not 0 < n <= MAX_CHUNK or start != self._count:
            raise ValueError(f"fibre: bad message (kind {kind}, start {start}, count {n})")
        if self.start_s is None:
            self.start_s = t0
        elif t0 != self.start_s:
            raise ValueError("fibre: stream start time changed")
        self._fields.append(np.frombuffer(_recv_exact(self._sock, 8 * n), dtype="<c8"))
        self._phases.append(np.frombuffer(_recv_exact(self._sock, 4 * n), dtype="<f4"))
        self._count += n

    def wait_start(self) -> float:
        """Block until the first samples (or the end) arrive; the stream's start time, s."""
        while self.start_s is None and not self.ended:
            self._read_message()
        if self.start_s is None:
            raise ConnectionError("fibre: the transmitter ended without sending light")
        return self.start_s

    def wait_until(self, index: int) -> None:
        """Block until samples up to `index` (exclusive) arrived or the transmitter ended."""
        while self._count < index and not self.ended:
            self._read_message()

    def discard_before(self, index: int) -> None:
        """Free the samples before stream index `index` (a long stream of frames keeps only
        what the next capture needs); `field()` then starts at stream index `first`."""
        drop = min(max(0, index - self.first), self._count - self.first)
        while drop:
            n0 = len(self._fields[0])
            if n0 <= drop:
                del self._fields[0], self._phases[0]
            else:  # copies, so the dropped part's memory is freed
                self._fields[0] = self._fields[0][drop:].copy()
                self._phases[0] = self._phases[0][drop:].copy()
                n0 = drop
            self.first += n0
            drop -= n0

    def field(self) -> tuple[np.ndarray, np.ndarray]:
        """(field complex64, transmitter phase float64) received so far, from `first` on."""
        if not self._fields:
            return np.zeros(0, np.complex64), np.zeros(0)
        if len(self._fields) > 1:
            self._fields = [np.concatenate(self._fields)]
            self._phases = [np.concatenate(self._phases)]
        return self._fields[0].astype(np.complex64), self._phases[0].astype(np.float64)


@dataclass
class TransmitterModel:
    """Alice's board in the two-process topology: DAC, modulator, laser, VOA -> fibre."""

    config: LinkConfig
    sender: FibreSender
    frontend: FrontEnd = field(default_factory=FrontEnd)

    def __post_init__(self) -> None:
        self._steps = StepSource(np.random.Generator(np.random.SFC64(
            np.random.SeedSequence(self.config.seed).spawn(6)[5])))
        self._phase = 0.0

    def transmit(self, iq: np.ndarray, start_s: float = 0.0, chunk: int = 1 << 18,
                 end: bool = True) -> None:
        """Play the int16 (n, 2) waveform once from model time start_s into the fibre; with
        end=False the stream stays open and the next call continues it (start_s is the
        stream's start time, the same in every call)."""
        iq = np.asarray(iq)
        if iq.dtype != np.int16 or iq.ndim != 2 or iq.shape[1] != 2 or len(iq) == 0:
            raise ValueError("transmit: need a non-empty int16 array of shape (n, 2)")
        c = self.config
        drop = 16 - c.profile.dac_bits
        amp = (c.dac_fs_snu / DAC_CODE_FULL_SCALE * 10.0 ** (-self.frontend.voa_db / 20.0)
               * (1.0 if self.frontend.laser_on else 0.0))
        # Wiener phase per player sample, band-limited (phase_steps.py: the skirt of the field's
        # strong tones is not aliased); the steps' unit is a uniform's sd, 1/sqrt(12)
        step_sd = np.sqrt(12.0 * 2.0 * np.pi * c.tx_linewidth_hz / c.player_sps)
        for b in range(0, len(iq), chunk):
            q = (iq[b:b + chunk] >> drop) << drop
            phase = self._phase + np.cumsum(self._steps.draw(len(q)) * step_sd, dtype=np.float64)
            self._phase = float(phase[-1])
            light = (q[:, 0] + 1j * q[:, 1]) * amp * np.exp(1j * phase)
            self.sender.send_field(start_s, light, phase)
        if end:
            self.sender.close()


class FibreTxPhysics:
    """Alice's board in the two-process topology as the physics under the overlay model
    (`open_model(physics=...)`): what her DAC player plays, through her modulator, laser and
    VOA (`TransmitterModel`, the VOA from the front-end registers), enters the fibre. The
    stream is the model time: `advance` sends dark field (the idle DAC outputs zeros), a
    one-shot play sends the waveform. Alice's board has no receiver in this topology."""

    def __init__(self, config: LinkConfig, sender: FibreSender, dark_chunk: int = 1 << 20):
        self.tx = TransmitterModel(config, sender)
        self.sent = 0  # player samples streamed so far
        self._dark_chunk = dark_chunk

    def load_dac(self, iq: np.ndarray, cyclic: bool) -> None:
        if cyclic:  # reset or STOP: the idle DAC; its zeros are streamed by `advance`
            if np.any(iq):
                raise ValueError("the fibre transmitter model plays one-shot waveforms only")
            return
        self.tx.transmit(iq, end=False)
        self.sent += len(iq)

    def set_frontend(self, frontend: FrontEnd) -> None:
        self.tx.frontend = frontend

    def advance(self, seconds: float) -> None:
        """Stream `seconds` of dark field (whole player samples)."""
        n = round(seconds * self.tx.config.player_sps)
        for b in range(0, n, self._dark_chunk):
            self.tx.transmit(np.zeros((min(self._dark_chunk, n - b), 2), np.int16), end=False)
        self.sent += max(0, n)

    def capture(self, settings: AdcSettings, chunk: int = 1 << 20) -> Iterator[np.ndarray]:
        raise ValueError("the transmitter board's model has no receiver (two-process topology)")

    def status(self) -> LinkStatus:
        return LinkStatus(lo_locked=False, beat_hz=0.0, monitor_power_w=0.0, clip_count=0,
                          overflow=False, trigger_sample=0)

    def inject(self, fault: str, **params: float) -> None:
        raise ValueError("faults are injected into the receiver's model")

    def clear_faults(self) -> None:
        """Nothing to clear: the transmitter model takes no faults."""

    def close(self) -> None:
        """End the stream and close the fibre socket."""
        self.tx.sender.close()


def run_transmitter(address: str, config: LinkConfig, iq: np.ndarray, voa_db: float,
                    start_s: float = 0.0) -> None:
    """Entry point of Alice's process: connect to Bob's AF_UNIX socket and transmit once."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(address)
    TransmitterModel(config, FibreSender(sock), FrontEnd(voa_db=voa_db)).transmit(iq, start_s)
