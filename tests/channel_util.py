"""Test helpers: key pool pairs from one pre-shared key file; loopback sessions."""

from __future__ import annotations

import asyncio
from pathlib import Path

from controller.auth import KeyPool, Role
from controller.channel import ChannelError, accept, connect
from controller.key_commit import recover_coordinator, recover_participant
from controller.keystore import KeyStore
from controller.psk import create_psk_file


def make_pool_pair(directory: Path, n_keys: int = 256) -> tuple[Path, Path]:
    """Alice's and Bob's pool databases, imported from one PSK file (then wiped)."""
    psk = directory / "link.psk"
    create_psk_file(psk, n_keys)
    copy = directory / "link-copy.psk"  # the operator's copy for the other end
    copy.write_bytes(psk.read_bytes())
    copy.chmod(0o600)
    paths = directory / "pool-alice.db", directory / "pool-bob.db"
    KeyPool.create(paths[0], psk, Role.ALICE).close()
    KeyPool.create(paths[1], copy, Role.BOB).close()
    return paths


HOST = "127.0.0.1"


async def _session(pa, pb, alice_script, bob_script, *, alice_kw=None, bob_kw=None,
                   errors=(ChannelError,)):
    """Run Bob as a loopback server and Alice as client; return both scripts' results
    (an exception of one of `errors` is returned as that side's result)."""
    bob_done: asyncio.Future = asyncio.get_running_loop().create_future()
    pool_b = KeyPool.open(pb)

    async def handle(reader, writer):
        try:
            ch = await accept(reader, writer, pool_b, **(bob_kw or {}))
            bob_done.set_result(await bob_script(ch))
        except BaseException as exc:
            bob_done.set_exception(exc)

    server = await asyncio.start_server(handle, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    pool_a = KeyPool.open(pa)
    try:
        alice_result = None
        try:
            ch = await connect(HOST, port, pool_a, **(alice_kw or {}))
            alice_result = await alice_script(ch)
        except errors as exc:
            alice_result = exc
        try:
            bob_result = await asyncio.wait_for(bob_done, 10)
        except errors as exc:
            bob_result = exc
        return alice_result, bob_result
    finally:
        server.close()
        await server.wait_closed()
        pool_a.close()
        pool_b.close()


def run(*args, **kw):
    return asyncio.run(_session(*args, **kw))


def open_store(d: Path, end: str) -> KeyStore:
    """The test layout of one end's key store: `{end}.db` with device key `{end}.key` in d."""
    return KeyStore.open(d / f"{end}.db", d / f"{end}.key")


def recover_both(d: Path, pa: Path, pb: Path) -> None:
    """One clean session in which both ends run commit recovery (stores 'a' and 'b' in d)."""

    async def alice(ch):
        with open_store(d, "a") as s:
            await recover_coordinator(ch, s)
        await ch.close()

    async def bob(ch):
        with open_store(d, "b") as s:
            await recover_participant(ch, s)

    run(pa, pb, alice, bob)
