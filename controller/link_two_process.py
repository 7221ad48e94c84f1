"""The two ends of the link as separate processes (`cvqkd tx --listen`, `cvqkd rx --connect`).

Each process has its own work directory with its own key pool and key store, made beforehand
with `cvqkd setup` from one PSK file (docs/protocol.md, "Two processes"):

    ALICE_DIR/alice-pool.sqlite, ALICE_DIR/<endpoints.store_alice> (+ .devkey)
    BOB_DIR/bob-pool.sqlite,     BOB_DIR/<endpoints.store_bob> (+ .devkey)

Alice listens for the authenticated classical channel on HOST:PORT and for the simulated
fibre on a second address (default HOST:PORT+1); Bob connects to both, the classical channel
first. The protocol is the same code as `cvqkd link --sim` (controller.link.alice_session /
bob_session); only the quantum channel differs (controller.link_fibre).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
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


async def run_tx(cfg: LinkConfig, files: EndFiles, listen: Address, fibre: Address,
                 frames: int, progress: Callable[[str], None] = lambda s: None,
                 on_listening: Callable[[Address, Address], None] = lambda a, b: None
                 ) -> LinkReport:
    """Alice: serve one session on `listen` (the fibre on `fibre`) and run `frames` frames.
    Waits for the receiver without a time limit; the session itself has the peer timeout."""
    report = LinkReport(store_alice=str(files.store), symbol_rate_hz=cfg.modulation.symbol_rate_hz)
    timers = {"alice": StageTimer()}
    aborts: dict[str, LinkAbort] = {}
    timeout = cfg.protocol.peer_timeout_s
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    try:
        fibre_srv = socket.create_server(fibre)
    except OSError as exc:
        raise ValueError(f"cannot listen for the fibre on {fibre[0]}:{fibre[1]}: "
                         f"{exc.strerror or exc}") from None
    fibre_srv.setblocking(False)
    pool, store = KeyPool.open(files.pool), open_store(files.store)
    busy = False
    t0 = time.perf_counter()

    def set_done() -> None:
        if not done.done():
            done.set_result(None)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal busy
        if busy:
            writer.close()  # one session per process
            return
        busy = True
        try:
            try:
                channel = await chan.accept(reader, writer, pool, timeout=timeout)
            except chan.ChannelError as exc:
                aborts["alice"] = channel_abort(exc)
                writer.close()
                return
            try:
                sock, _ = await asyncio.wait_for(loop.sock_accept(fibre_srv), timeout)
            except TimeoutError:
                aborts["alice"] = LinkAbort(AbortReason.PEER_TIMEOUT, "no fibre connection")
                await channel.abort(AbortReason.PEER_TIMEOUT.value)
                return
            sock.setblocking(True)
            qc = FibreTransmitter(cfg, sock)
            ctx = EndContext(cfg, channel, store, pool, timers["alice"], progress, "bob")
            abort = await alice_session(ctx, qc, frames, done=qc.close)
            if abort is not None:
                aborts["alice"] = abort
        finally:
            set_done()

    try:
        server = await asyncio.start_server(on_connect, *listen)
    except OSError as exc:
        fibre_srv.close()
        pool.close()
        store.close()
        raise ValueError(f"cannot listen on {listen[0]}:{listen[1]}: "
                         f"{exc.strerror or exc}") from None
    try:
        on_listening(server.sockets[0].getsockname()[:2], fibre_srv.getsockname()[:2])
        await done
    finally:
        server.close()
        await server.wait_closed()
        fibre_srv.close()
        pool.close()
        store.close()
    finish_report(report, aborts, t0, timers, progress)
    report.keys_alice = count_ready(files.store)
    return report


async def run_rx(cfg: LinkConfig, files: EndFiles, connect: Address, fibre: Address,
                 progress: Callable[[str], None] = lambda s: None,
                 faults: dict[int, tuple[str, dict[str, float]]] | None = None) -> LinkReport:
    """Bob: connect the classical channel, then the fibre, and run the session to its end.
    `faults` are injected into Bob's model as in `cvqkd link --sim`."""
    report = LinkReport(store_bob=str(files.store), symbol_rate_hz=cfg.modulation.symbol_rate_hz)
    timers = {"bob": StageTimer()}
    timeout = cfg.protocol.peer_timeout_s
    qc = FibreReceiverChannel(cfg, faults)
    pool, store = KeyPool.open(files.pool), open_store(files.store)
    t0 = time.perf_counter()

    async def open_channels() -> chan.Channel:
        channel = await chan.connect(*connect, pool, timeout=timeout)
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
