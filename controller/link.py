"""`cvqkd link --sim`: both ends of the link in one process, as two asyncio tasks.

Alice listens on loopback TCP (the transmitter's classical endpoint), Bob connects; every
message between them crosses the authenticated channel (controller.channel). The quantum
channel is one link model in the loopback topology (controller.link_quantum). Each end has its
own key pool and key store in the work directory, created on first use:

    WORKDIR/alice-pool.sqlite, bob-pool.sqlite   one-time authentication keys (same PSK)
    WORKDIR/<endpoints.store_alice>, <endpoints.store_bob>  key stores (+ .devkey files)

A session starts with commit recovery (controller.key_commit) and a pool refill, so an earlier
interrupted run loses no stored key. Protocol: docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from controller import channel as chan
from controller.auth import KeyPool, Role
from controller.config import LinkConfig
from controller.key_commit import (
    CommitError,
    recover_coordinator,
    recover_participant,
    refill_pool,
)
from controller.keystore import (
    READY,
    KeyStore,
    create_device_key,
    default_device_key_path,
)
from controller.link_alice import run_alice
from controller.link_bob import run_bob
from controller.link_end import EndContext
from controller.link_protocol import AbortReason, LinkAbort, channel_abort
from controller.link_quantum import ModelReceiver, SimQuantumChannel, Transmitter
from controller.link_report import LinkReport, StageTimer
from controller.psk import create_psk_file

# what a malformed or inconsistent (but authenticated) peer message raises while it is parsed
MALFORMED = (KeyError, TypeError, ValueError, IndexError, CommitError)


def as_abort(exc: Exception) -> LinkAbort:
    """The session-level abort for an exception that ended one end's task. The text of a
    parsing error is not kept (only its class): it might quote data."""
    if isinstance(exc, LinkAbort):
        return exc
    if isinstance(exc, chan.ChannelError):
        return channel_abort(exc)
    if isinstance(exc, CommitError):  # its message is safe to log (key_commit)
        return LinkAbort(AbortReason.PEER_LOST, f"key commit failed: {exc}")
    return LinkAbort(AbortReason.PEER_LOST, f"malformed or inconsistent peer message "
                                            f"({type(exc).__name__})")


@dataclass(frozen=True)
class WorkDir:
    root: Path
    pool_alice: Path
    pool_bob: Path
    store_alice: Path
    store_bob: Path


def prepare_workdir(cfg: LinkConfig, root: Path) -> WorkDir:
    """Create the PSK-derived pools and both key stores if they are not there yet."""
    root.mkdir(parents=True, exist_ok=True)
    wd = WorkDir(root, root / "alice-pool.sqlite", root / "bob-pool.sqlite",
                 root / cfg.endpoints.store_alice, root / cfg.endpoints.store_bob)
    if wd.pool_alice.exists() != wd.pool_bob.exists():
        raise ValueError(f"{root}: only one of the two key pools exists; remove the work "
                         "directory to start afresh")
    if not wd.pool_alice.exists():
        psk = root / cfg.endpoints.psk_file
        if psk.exists():
            raise ValueError(f"{psk} exists without pools: remove it or the work directory")
        create_psk_file(psk)
        KeyPool.create(wd.pool_alice, psk, Role.ALICE, wipe_psk=False).close()
        KeyPool.create(wd.pool_bob, psk, Role.BOB).close()  # wipes the PSK file
    for store in (wd.store_alice, wd.store_bob):
        if not store.exists():
            dev = default_device_key_path(store)
            if not dev.exists():
                create_device_key(dev)
            KeyStore.create(store, dev).close()
    return wd


def open_store(path: Path) -> KeyStore:
    return KeyStore.open(path, default_device_key_path(path))


def count_ready(path: Path) -> int:
    with KeyStore.open(path) as store:
        return len(store.list_keys(READY))


async def alice_session(ctx: EndContext, qc: Transmitter, frames: int | None,
                        done: Callable[[], Awaitable[None]] | None = None,
                        duration_s: float | None = None) -> LinkAbort | None:
    """Alice's whole session on an accepted channel: commit recovery, pool refill, the frames
    (`frames` of them, or as many as start within `duration_s` seconds of wall time: see
    run_alice), close. Returns the session abort (None when it ended normally); `done` runs at
    the end either way (e.g. closing the fibre)."""
    try:
        with ctx.timer.stage("setup"):
            await recover_coordinator(ctx.channel, ctx.store)
            refill_pool(ctx.pool, ctx.store)
        await run_alice(ctx, qc, frames, duration_s)
        await ctx.channel.close()
        return None
    except (chan.ChannelError, LinkAbort, *MALFORMED) as exc:
        abort = as_abort(exc)
        with contextlib.suppress(chan.ChannelError):
            await ctx.channel.abort(abort.reason.value)
        return abort
    finally:
        if done is not None:
            await done()


async def bob_session(cfg: LinkConfig, connect: Callable[[], Awaitable[chan.Channel]],
                      store: KeyStore, pool: KeyPool, qc: ModelReceiver, report: LinkReport,
                      timer: StageTimer, progress: Callable[[str], None]) -> LinkAbort | None:
    """Bob's whole session: connect, commit recovery, pool refill, the frames, close."""
    channel = None
    try:
        with timer.stage("setup"):
            channel = await connect()
            await recover_participant(channel, store)
            refill_pool(pool, store)
        ctx = EndContext(cfg, channel, store, pool, timer, progress, "alice")
        await run_bob(ctx, qc, report)
        await channel.close()
        return None
    except (chan.ChannelError, LinkAbort, *MALFORMED) as exc:
        abort = as_abort(exc)
        if channel is not None:
            with contextlib.suppress(chan.ChannelError):
                await channel.abort(abort.reason.value)
        return abort


def finish_report(report: LinkReport, aborts: dict[str, LinkAbort], t0: float,
                  timers: dict[str, StageTimer], progress: Callable[[str], None]) -> None:
    """Wall time, stage times and the session abort (the end that detected the problem
    names it; the other only saw the peer go away)."""
    report.wall_s = time.perf_counter() - t0
    if "alice" in timers:
        report.seconds_alice = dict(timers["alice"].seconds)
    if "bob" in timers:
        report.seconds_bob = dict(timers["bob"].seconds)
    found = [a for a in (aborts.get("bob"), aborts.get("alice")) if a is not None]
    first = next((a for a in found if a.reason != AbortReason.PEER_LOST), None) or \
        (found[0] if found else None)
    if first is not None:
        report.session_abort = {"reason": first.reason.value, "detail": first.detail[:200],
                                "message": str(first)[:300]}
        progress(f"session aborted: {first}")


async def run_link(cfg: LinkConfig, wd: WorkDir, frames: int | None, *,
                   duration_s: float | None = None,
                   progress: Callable[[str], None] = lambda s: None,
                   faults: dict[int, tuple[str, dict[str, float]]] | None = None,
                   psk_mismatch: bool = False, bob_cfg: LinkConfig | None = None) -> LinkReport:
    """Run `frames` frames, or frames for `duration_s` seconds of wall time (the frames in
    progress then complete and the block closes); returns the report (session aborts are
    recorded, not raised).
    `faults` go to the simulated quantum channel; `psk_mismatch` (tests) gives Bob a pool
    from another PSK, so authentication must fail; `bob_cfg` (tests) gives Bob his own
    settings (the model and Alice keep `cfg`)."""
    report = LinkReport(store_alice=str(wd.store_alice), store_bob=str(wd.store_bob),
                        symbol_rate_hz=cfg.modulation.symbol_rate_hz)
    qc = SimQuantumChannel(cfg, faults)
    timers = {"alice": StageTimer(), "bob": StageTimer()}
    aborts: dict[str, LinkAbort] = {}
    host = cfg.endpoints.listen.rsplit(":", 1)[0]
    timeout = cfg.protocol.peer_timeout_s
    t0 = time.perf_counter()
    pool_a = KeyPool.open(wd.pool_alice)
    pool_b = KeyPool.open(_mismatched_pool(wd) if psk_mismatch else wd.pool_bob)
    store_a, store_b = open_store(wd.store_alice), open_store(wd.store_bob)
    alice_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def set_done() -> None:
        if not alice_done.done():
            alice_done.set_result(None)

    async def alice_on_connect(reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter) -> None:
        try:  # one session; chan.serve would hide a failed handshake from the report
            channel = await chan.accept(reader, writer, pool_a, timeout=timeout)
        except chan.ChannelError as exc:
            aborts["alice"] = channel_abort(exc)
            writer.close()
            set_done()
            return
        ctx = EndContext(cfg, channel, store_a, pool_a, timers["alice"],
                         lambda s: progress(f"alice: {s}"), "bob")
        try:
            abort = await alice_session(ctx, qc, frames, duration_s=duration_s)
            if abort is not None:
                aborts["alice"] = abort
        finally:
            set_done()

    server = await asyncio.start_server(alice_on_connect, host, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        abort = await bob_session(
            bob_cfg or cfg, lambda: chan.connect(host, port, pool_b, timeout=timeout), store_b,
            pool_b, qc, report, timers["bob"], lambda s: progress(f"bob: {s}"))
        if abort is not None:
            aborts["bob"] = abort
            set_done()
        await asyncio.wait_for(asyncio.shield(alice_done), timeout)
    except TimeoutError:
        aborts.setdefault("alice", LinkAbort(AbortReason.PEER_TIMEOUT, "no session"))
    finally:
        server.close()
        await server.wait_closed()
        for res in (pool_a, pool_b, store_a, store_b):
            res.close()
    finish_report(report, aborts, t0, timers, progress)
    report.keys_alice = count_ready(wd.store_alice)
    report.keys_bob = count_ready(wd.store_bob)
    return report


def _mismatched_pool(wd: WorkDir) -> Path:
    """A Bob pool from a fresh, different PSK (tests of authentication failure)."""
    path = wd.root / "bob-pool-other-psk.sqlite"
    if not path.exists():
        psk = wd.root / "other.psk"
        create_psk_file(psk)
        KeyPool.create(path, psk, Role.BOB).close()
    return path
