"""Authenticated channel over loopback TCP (127.0.0.1): handshake, attacks, limits."""

from __future__ import annotations

import asyncio
import logging
import re

import numpy as np
import pytest
from channel_util import make_pool_pair, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.auth import KeyPool
from controller.channel import (
    AuthenticationError,
    AuthKeysExhausted,
    Channel,
    ChannelClosed,
    ChannelError,
    ChannelTimeout,
    HandshakeError,
    MalformedFrame,
    ProtocolError,
    SequenceError,
    connect,
)
from controller.framing import MsgType, pack_header


@pytest.fixture
def pools(tmp_path):
    return make_pool_pair(tmp_path, n_keys=512)


def test_exchange_arrays_both_ways_with_shared_app_keys(pools):
    bits = np.random.default_rng(0).integers(0, 2, 10_000, dtype=np.uint8)
    samples = np.random.default_rng(1).standard_normal((500, 2)).astype(np.float32)

    async def alice(ch: Channel):
        box = {}

        def build(keys):
            box["keys"] = keys
            return {"bits": bits, "n": 7}

        await ch.send(MsgType.SIFT, build, app_keys=2)
        reply = await ch.recv(MsgType.ESTIMATION)
        await ch.close()
        return ch.protocol_version, box["keys"], reply.fields

    async def bob(ch: Channel):
        msg = await ch.recv(MsgType.SIFT)
        await ch.send(MsgType.ESTIMATION, {"y": samples, "note": "ok"})
        with pytest.raises(ChannelClosed, match="peer closed"):
            await ch.recv()
        return msg

    (version, keys_a, reply), msg = run(*pools, alice, bob)
    assert version == 1
    np.testing.assert_array_equal(msg.fields["bits"], bits)
    assert msg.fields["n"] == 7 and msg.app_keys == keys_a and len(keys_a) == 2
    np.testing.assert_array_equal(reply["y"], samples)
    # Accounting: Alice used HELLO + SIFT(+2 app keys) + CLOSE, reserved in batches of 16.
    with KeyPool.open(pools[1]) as bob_pool:
        assert bob_pool.recv_next == 5  # HELLO(0), SIFT(1) + app keys (2, 3), CLOSE(4)


def test_counters_resume_across_sessions_no_key_reuse(pools):
    async def alice(ch):
        await ch.send(MsgType.DATA, {"i": 1})
        await ch.close()
        return ch.pool.send_next

    async def bob(ch):
        msg = await ch.recv(MsgType.DATA)
        with pytest.raises(ChannelClosed):
            await ch.recv()
        return msg.seq

    first = run(*pools, alice, bob)
    second = run(*pools, alice, bob)
    # The second session starts after the 16 keys Alice reserved (burned) in the first.
    assert first == (3, 1)
    assert second == (19, 17)


def test_version_negotiation(pools):
    async def alice(ch):
        await ch.close()
        return ch.protocol_version

    async def bob(ch):
        with pytest.raises(ChannelClosed):
            await ch.recv()
        return ch.protocol_version

    assert run(*pools, alice, bob, alice_kw={"versions": (1, 2, 3)},
               bob_kw={"versions": (1, 2)}) == (2, 2)
    a, b = run(*pools, alice, bob, alice_kw={"versions": (3,)}, bob_kw={"versions": (1, 2)})
    assert isinstance(b, HandshakeError) and "no common protocol version" in str(b)
    assert isinstance(a, ChannelClosed)


def test_wrong_psk_is_reported_clearly(tmp_path):
    (tmp_path / "other").mkdir()
    pa, _ = make_pool_pair(tmp_path / "other", 16)
    _, pb = make_pool_pair(tmp_path, 16)

    async def alice(ch):
        return "unreachable"

    async def bob(ch):
        return "unreachable"

    _a, b = run(pa, pb, alice, bob)
    assert isinstance(b, HandshakeError) and "another pre-shared key file" in str(b)


def _no_secret_in(caplog):
    lines = [r.getMessage() for r in caplog.records if r.name == "cvqkd.channel"
             and r.levelno >= logging.ERROR]
    assert len(lines) == 1, lines
    assert "aborted" in lines[0]
    assert not re.search(r"[0-9a-f]{16}", lines[0])  # no key or tag dumps
    return lines[0]


async def _bob_expects(ch):
    return await ch.recv()


@pytest.mark.parametrize("attack, error, text", [
    ("forge", AuthenticationError, "authentication failed for frame seq 1"),
    ("replay", SequenceError, "replayed frame"),
    ("reorder", SequenceError, "reordered or dropped"),
    ("truncate", MalformedFrame, "truncated frame"),
    ("oversize", MalformedFrame, "exceeds the limit"),
    ("silence", ChannelTimeout, "no complete frame"),
    ("wrong_type", ProtocolError, "expected SIFT, got DATA"),
])
def test_attacks_abort_cleanly(pools, caplog, attack, error, text):
    async def alice(ch: Channel):
        w = ch._writer
        if attack == "wrong_type":
            w.write(b"".join(ch._seal(MsgType.DATA, {}, 0)))
        elif attack == "oversize":
            w.write(b"".join(ch._seal(MsgType.SIFT, {"blob": bytes(5000)}, 0)))
        elif attack != "silence":
            f1 = b"".join(ch._seal(MsgType.SIFT, {"x": np.arange(100, dtype=np.int16)}, 0))
            if attack == "forge":
                w.write(f1[:30] + bytes([f1[30] ^ 0x04]) + f1[31:])
            elif attack == "replay":
                w.write(f1 + f1)
            elif attack == "reorder":
                w.write(b"".join(ch._seal(MsgType.SIFT, {"x": 2}, 0)) + f1)
            elif attack == "truncate":
                w.write(f1[:-5])
                w.write_eof()
        await w.drain()
        await asyncio.sleep(0.6 if attack == "silence" else 0.05)

    async def bob(ch: Channel):
        first = await ch.recv(MsgType.SIFT)
        if attack == "replay":
            await ch.recv(MsgType.SIFT)
        return first

    caplog.set_level(logging.INFO, logger="cvqkd.channel")
    _, b = run(*pools, alice, bob, bob_kw={"max_payload": 1000, "timeout": 0.3})
    assert isinstance(b, error), b
    assert text in str(b)
    line = _no_secret_in(caplog)
    assert text in line


def test_old_session_cannot_be_replayed(pools):
    """Frames recorded from one session fail in a new one (session binding + sequence)."""
    recorded: list[bytes] = []

    async def alice(ch: Channel):
        frame = b"".join(ch._seal(MsgType.DATA, {"cmd": "erase-all"}, 0))
        recorded.append(frame)
        ch._writer.write(frame)
        await ch._writer.drain()
        await ch.close()

    async def bob(ch: Channel):
        await ch.recv(MsgType.DATA)
        with pytest.raises(ChannelClosed):
            await ch.recv()

    run(*pools, alice, bob)

    async def replayer(ch: Channel):  # fresh session, then inject the recorded frame
        ch._writer.write(recorded[0])
        await ch._writer.drain()
        await asyncio.sleep(0.05)

    _, b = run(*pools, replayer, _bob_expects, bob_kw={"timeout": 1.0})
    assert isinstance(b, SequenceError)


def test_pool_exhaustion_is_a_clear_error(tmp_path):
    pa, pb = make_pool_pair(tmp_path, n_keys=12)  # 6 keys per direction

    async def alice(ch: Channel):
        for i in range(10):
            await ch.send(MsgType.DATA, {"i": i})

    async def bob(ch: Channel):
        while True:
            await ch.recv(MsgType.DATA)

    a, _ = run(pa, pb, alice, bob)
    assert isinstance(a, AuthKeysExhausted) and "refill" in str(a)


class _NullWriter:
    def write(self, data): pass
    def writelines(self, data): pass
    async def drain(self): pass
    def close(self): pass
    async def wait_closed(self): pass


@pytest.fixture(scope="module")
def fuzz_pool(tmp_path_factory):
    _, pb = make_pool_pair(tmp_path_factory.mktemp("fuzz"), n_keys=8)
    with KeyPool.open(pb) as pool:
        yield pool


_HEADERS = st.sampled_from([pack_header(MsgType.DATA, 0, n) for n in (0, 5, 40, 4096, 5000)])


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=300), st.tuples(_HEADERS, st.binary(max_size=300))))
def test_fuzz_channel_receive_only_raises_channel_errors(fuzz_pool, data):
    """Random bytes, alone or after a plausible header: always a ChannelError, never a crash."""
    raw = data if isinstance(data, bytes) else data[0] + data[1]

    async def feed():
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        ch = Channel(reader, _NullWriter(), fuzz_pool, timeout=0.5, max_payload=4096)
        ch.session_id = bytes(range(32))
        ch._shutdown = _no_shutdown  # keep the shared pool open between examples
        with pytest.raises(ChannelError):
            await ch.recv()

    asyncio.run(feed())


async def _no_shutdown():
    return None


def test_serve_runs_sessions_one_after_another(pools):
    """`serve` handles consecutive client sessions on one pool."""
    from controller.channel import serve

    seen: list[int] = []

    async def handler(ch: Channel):
        msg = await ch.recv(MsgType.DATA)
        seen.append(int(msg.fields["i"]))
        await ch.send(MsgType.DATA, {"i": msg.fields["i"] + 100})

    async def main():
        with KeyPool.open(pools[1]) as pool_b, KeyPool.open(pools[0]) as pool_a:
            server = await serve("127.0.0.1", 0, pool_b, handler, timeout=5)
            port = server.sockets[0].getsockname()[1]
            replies = []
            for i in range(3):
                ch = await connect("127.0.0.1", port, pool_a, timeout=5)
                await ch.send(MsgType.DATA, {"i": i})
                replies.append((await ch.recv(MsgType.DATA)).fields["i"])
                await ch.close()
            server.close()
            await server.wait_closed()
            return replies

    assert asyncio.run(main()) == [100, 101, 102]
    assert seen == [0, 1, 2]


def test_abort_is_authenticated_and_reported_to_peer(pools, caplog):
    async def alice(ch: Channel):
        await ch.abort("parameter estimation: excess noise above threshold")

    async def bob(ch: Channel):
        await ch.recv()

    caplog.set_level(logging.ERROR, logger="cvqkd.channel")
    a, b = run(*pools, alice, bob)
    assert isinstance(a, ChannelClosed) and "aborted by this end" in str(a)
    assert isinstance(b, ChannelClosed) and "excess noise above threshold" in str(b)
