"""The two ends of the link as separate processes (`cvqkd tx --listen`, `cvqkd rx --connect`).

Each process has its own work directory with its own key pool and key store, made beforehand
with `cvqkd setup` from one PSK file (docs/protocol.md, "Two processes"):

    ALICE_DIR/alice-pool.sqlite, ALICE_DIR/<endpoints.store_alice> (+ .devkey)
    BOB_DIR/bob-pool.sqlite,     BOB_DIR/<endpoints.store_bob> (+ .devkey)

Alice listens for the authenticated classical channel on HOST:PORT and for the simulated
fibre on a second address (default HOST:PORT+1); Bob connects to both, the classical channel
first. The protocol is the same code as `cvqkd link --sim` (controller.link.alice_session /
bob_session); only the quantum channel differs (controller.link_fibre). On boards (`--board`)
each end drives its overlay and the light takes the real fibre: no fibre address. Alice serves
sessions one after another (`TxServer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from controller import channel as chan
from controller.auth import KeyPool
from controller.config import LinkConfig
from controller.link import (
    alice_session,
    bob_session,
    count_ready,
    finish_report,
    open_store,
)
from controller.link_end import EndContext
from controller.link_fibre import FibreReceiverChannel, FibreTransmitter
from controller.link_protocol import AbortReason, LinkAbort, channel_abort
from controller.link_report import LinkReport, StageTimer
from fpga_bindings.overlay import CvqkdOverlay

Address = tuple[str, int]


@dataclass(frozen=True)
class EndFiles:
    """One end's secret state: its key pool and its key store (device key beside it)."""

    pool: Path
    store: Path


def end_files(cfg: LinkConfig, root: Path, role: str) -> EndFiles:
    """The pool and store of `role` ("alice" or "bob") in `root`; both must exist."""
    store = root / (cfg.endpoints.store_alice if role == "alice" else cfg.endpoints.store_bob)
    files = EndFiles(root / f"{role}-pool.sqlite", store)
    if not files.pool.exists():
        raise ValueError(f"no key pool {files.pool}: create it with `cvqkd setup pool --psk "
                         f"PSK_FILE --pool {files.pool} --role {role}`")
    if not files.store.exists():
        raise ValueError(f"no key store {files.store}: create it with `cvqkd setup store "
                         f"--store {files.store}`")
    return files


@dataclass
class TxServer:
    """What `cvqkd tx` serves: `sessions` sessions one after another (None: until stopped),
    each of `frames` frames or of `duration_s` seconds of wall time. `stop()` (SIGINT/SIGTERM
    in the CLI) stops taking sessions and lets the one in progress finish (its frames, the
    block's privacy amplification and commit); a second `stop()` aborts it (the peer is told;
    the stores stay consistent: the key commit recovers at the next session start)."""

    frames: int | None = None
    duration_s: float | None = None
    sessions: int | None = 1
    reports: list[LinkReport] = field(default_factory=list)
    stops: int = 0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _session: asyncio.Task | None = None

    def stop(self) -> None:
        self.stops += 1
        if self.stops > 1 and self._session is not None:
            self._session.cancel()
        self._wake.set()

    @property
    def finished(self) -> bool:
        return self.stops > 0 or (self.sessions is not None
                                  and len(self.reports) >= self.sessions)


async def run_tx(cfg: LinkConfig, files: EndFiles, listen: Address, fibre: Address | None,
                 server: TxServer, progress: Callable[[str], None] = lambda s: None,
                 on_listening: Callable[[Address, Address | None], None] = lambda a, b: None,
                 on_session: Callable[[LinkReport], None] = lambda r: None,
                 overlay: CvqkdOverlay | None = None) -> list[LinkReport]:
    """Alice: serve sessions on `listen` (the simulated fibre on `fibre`; none with a board
    `overlay`) as `server` says; one report per session (also passed to `on_session`). Waits
    for receivers without a time limit; each session has the peer timeout. A connection
    while a session runs is refused (closed)."""
    timeout = cfg.protocol.peer_timeout_s
    loop = asyncio.get_running_loop()
    fibre_srv = None
    if overlay is None:
        if fibre is None:
            raise ValueError("run_tx: the model needs a fibre address")
        try:
            fibre_srv = socket.create_server(fibre)
        except OSError as exc:
            raise ValueError(f"cannot listen for the fibre on {fibre[0]}:{fibre[1]}: "
                             f"{exc.strerror or exc}") from None
        fibre_srv.setblocking(False)
    pool, store = KeyPool.open(files.pool), open_store(files.store)
    busy = False

    async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      report: LinkReport, timer: StageTimer) -> LinkAbort | None:
        try:
            channel = await chan.accept(reader, writer, pool, timeout=timeout)
        except chan.ChannelError as exc:
            writer.close()
            return channel_abort(exc)
        if fibre_srv is not None:
            try:
                sock, _ = await asyncio.wait_for(loop.sock_accept(fibre_srv), timeout)
            except TimeoutError:
                await channel.abort(AbortReason.PEER_TIMEOUT.value)
                return LinkAbort(AbortReason.PEER_TIMEOUT, "no fibre connection")
            sock.setblocking(True)
            qc = FibreTransmitter(cfg, sock)
        else:
            qc = FibreTransmitter(cfg, overlay=overlay)
        ctx = EndContext(cfg, channel, store, pool, timer, progress, "bob")
        try:
            return await alice_session(ctx, qc, server.frames, done=qc.close,
                                       duration_s=server.duration_s)
        except asyncio.CancelledError:  # second stop(): abort the session, tell the peer
            with contextlib.suppress(chan.ChannelError, OSError):
                await asyncio.wait_for(channel.abort(AbortReason.PEER_LOST.value), 1.0)
            return LinkAbort(AbortReason.PEER_LOST, "transmitter stopped by a signal")

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal busy
        if busy or server.finished:
            writer.close()  # one session at a time
            return
        busy = True
        report = LinkReport(store_alice=str(files.store),
                            symbol_rate_hz=cfg.modulation.symbol_rate_hz)
        timers = {"alice": StageTimer()}
        t0 = time.perf_counter()
        task = asyncio.ensure_future(session(reader, writer, report, timers["alice"]))
        server._session = task
        try:
            abort = await asyncio.shield(task)
        except asyncio.CancelledError:
            abort = await task
        finally:
            server._session = None
            busy = False
        finish_report(report, {"alice": abort} if abort is not None else {}, t0, timers,
                      progress)
        report.keys_alice = count_ready(files.store)
        server.reports.append(report)
        on_session(report)
        server._wake.set()

    try:
        srv = await asyncio.start_server(on_connect, *listen)
    except OSError as exc:
        if fibre_srv is not None:
            fibre_srv.close()
        pool.close()
        store.close()
        raise ValueError(f"cannot listen on {listen[0]}:{listen[1]}: "
                         f"{exc.strerror or exc}") from None
    try:
        on_listening(srv.sockets[0].getsockname()[:2],
                     fibre_srv.getsockname()[:2] if fibre_srv is not None else None)
        while not server.finished or busy:
            server._wake.clear()
            await server._wake.wait()
    finally:
        srv.close()
        await srv.wait_closed()
        if fibre_srv is not None:
            fibre_srv.close()
        pool.close()
        store.close()
    return server.reports


async def run_rx(cfg: LinkConfig, files: EndFiles, connect: Address, fibre: Address | None,
                 progress: Callable[[str], None] = lambda s: None,
                 faults: dict[int, tuple[str, dict[str, float]]] | None = None,
                 overlay: CvqkdOverlay | None = None) -> LinkReport:
    """Bob: connect the classical channel, then the simulated fibre (none with a board
    `overlay`), and run the session to its end. `faults` are injected into Bob's model as in
    `cvqkd link --sim`."""
    report = LinkReport(store_bob=str(files.store), symbol_rate_hz=cfg.modulation.symbol_rate_hz)
    timers = {"bob": StageTimer()}
    timeout = cfg.protocol.peer_timeout_s
    qc = FibreReceiverChannel(cfg, faults, overlay)
    pool, store = KeyPool.open(files.pool), open_store(files.store)
    t0 = time.perf_counter()

    async def open_channels() -> chan.Channel:
        channel = await chan.connect(*connect, pool, timeout=timeout)
        if fibre is None:  # a board: the real fibre
            return channel
        try:
            sock = await asyncio.to_thread(socket.create_connection, fibre, timeout)
        except OSError as exc:
            await channel.abort(AbortReason.PEER_LOST.value)
            raise LinkAbort(AbortReason.PEER_LOST, f"cannot connect the fibre to "
                            f"{fibre[0]}:{fibre[1]} ({type(exc).__name__})") from None
        qc.attach(sock)
        return channel

    try:
        abort = await bob_session(cfg, open_channels, store, pool, qc, report, timers["bob"],
                                  progress)
    finally:
        qc.close()
        pool.close()
        store.close()
    finish_report(report, {"bob": abort} if abort is not None else {}, t0, timers, progress)
    report.keys_bob = count_ready(files.store)
    return report
