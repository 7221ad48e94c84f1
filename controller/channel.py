"""Authenticated classical channel: asyncio TCP, binary frames, one-time Poly1305 tags.

Session set-up (protocol version negotiation and session binding):

1. The initiator sends HELLO {versions, nonce_a, psk_id, role} at its next send sequence
   number. The responder accepts any seq >= its persisted receive counter (the initiator may
   have burned keys in a crash) and checks the tag.
2. The responder picks the highest common protocol version and answers HELLO_ACK {version,
   nonce_a (echo), nonce_b}; the initiator checks the echo, so an old HELLO_ACK cannot be
   replayed into a new session.
3. Both derive session_id = SHA-256("cvqkd-session-v1" || nonce_a || nonce_b || version).

Every tag covers session_id || header || payload (the handshake frames use an all-zero
session_id), so frames of an old session fail authentication in a new one. Inside a session
each direction's sequence numbers must be exactly consecutive (`seq` = expected), so a replayed,
dropped or reordered frame is detected. Any violation, a bad tag, a malformed or oversized frame
or a timeout aborts the session: one log line without key material, the connection is closed,
and a `ChannelError` is raised. The channel never touches the key store, so an abort loses no
stored key (controller.key_commit resolves keys left pending).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from controller.auth import KeyPool, PoolError, PoolExhausted, mac_tag, mac_verify
from controller.framing import (
    DEFAULT_MAX_PAYLOAD,
    HEADER_SIZE,
    TAG_SIZE,
    FieldValue,
    FrameError,
    FrameHeader,
    MsgType,
    decode_payload,
    encode_payload,
    pack_header,
    parse_header,
)

log = logging.getLogger("cvqkd.channel")

PROTOCOL_VERSIONS: tuple[int, ...] = (1,)
NONCE_BYTES = 32
DEFAULT_TIMEOUT = 30.0  # seconds per frame read or write
_NO_SESSION = bytes(32)


class ChannelError(Exception):
    """The session was aborted; the message is safe to log (no key material)."""


class AuthenticationError(ChannelError):
    """A frame's Poly1305 tag did not verify (forged or corrupted)."""


class SequenceError(ChannelError):
    """A frame was replayed, reordered or dropped."""


class MalformedFrame(ChannelError):
    """A frame was truncated, oversized or did not parse."""


class ChannelTimeout(ChannelError):
    """The peer did not send or accept a frame in time."""


class HandshakeError(ChannelError):
    """Session set-up failed (no common version, wrong pre-shared key, bad echo)."""


class ChannelClosed(ChannelError):
    """The peer closed the session or the connection."""


class AuthKeysExhausted(ChannelError):
    """The one-time authentication key pool is empty for a direction: refill it."""


def _pool_error(exc: PoolError) -> ChannelError:
    cls = AuthKeysExhausted if isinstance(exc, PoolExhausted) else ChannelError
    return cls(str(exc))


class ProtocolError(ChannelError):
    """A well-formed, authentic message arrived that the protocol did not expect."""


@dataclass(frozen=True)
class Message:
    msg_type: MsgType
    fields: dict[str, FieldValue]
    seq: int
    app_keys: list[bytes] = field(default_factory=list, repr=False)


FieldsArg = Mapping[str, FieldValue] | Callable[[list[bytes]], Mapping[str, FieldValue]] | None


class Channel:
    """One authenticated session over a TCP connection. Use `connect` or `serve`/`accept`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pool: KeyPool,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.pool = pool
        self.timeout = timeout
        self.max_payload = max_payload
        self.session_id = _NO_SESSION
        self.protocol_version = 0
        self.closed = False

    @property
    def session_tag(self) -> str:
        """Short public session label for logs."""
        return self.session_id[:4].hex() if self.session_id != _NO_SESSION else "handshake"

    # -- framing with authentication -------------------------------------------------------
    async def send(self, msg_type: MsgType, fields: FieldsArg = None, *, app_keys: int = 0) -> None:
        """Send one message. With `app_keys` > 0, `fields` may be a callable that receives
        that many fresh one-time pool keys (shared with the receiver's `Message.app_keys`)."""
        if self.closed:
            raise ChannelClosed("session already closed")
        try:
            self._writer.writelines(self._seal(msg_type, fields, app_keys))
            async with asyncio.timeout(self.timeout):
                await self._writer.drain()
        except ChannelError as exc:
            await self._abort(exc)
        except FrameError as exc:
            await self._abort(MalformedFrame(f"cannot encode {msg_type.name}: {exc}"))
        except PoolError as exc:
            await self._abort(_pool_error(exc), exc)
        except TimeoutError:
            await self._abort(ChannelTimeout(f"peer did not accept {msg_type.name} within "
                                             f"{self.timeout} s"))
        except (ConnectionError, OSError) as exc:
            reason = f"connection lost while sending ({exc.__class__.__name__})"
            await self._abort(ChannelClosed(reason))

    def _seal(self, msg_type: MsgType, fields: FieldsArg, app_keys: int) -> list[bytes]:
        """Header, payload and tag of the next frame; consumes its one-time keys."""
        if callable(fields):
            seq, keys = self.pool.take_send(1 + app_keys)
            payload = encode_payload(fields(keys[1:]))
        else:  # encode first: a bad message burns no key
            payload = encode_payload(fields or {})
            seq, keys = self.pool.take_send(1 + app_keys)
        if len(payload) > self.max_payload:
            raise MalformedFrame(f"outgoing payload of {len(payload)} bytes exceeds "
                                 f"{self.max_payload}")
        header = pack_header(msg_type, seq, len(payload), app_keys)
        return [header, payload, mac_tag(keys[0], self.session_id, header, payload)]

    async def recv(self, expect: MsgType | Iterable[MsgType] | None = None) -> Message:
        """Receive, authenticate and decode the next message of this session."""
        if self.closed:
            raise ChannelClosed("session already closed")
        try:
            msg = await self._recv_frame(handshake=False)
        except ChannelError as exc:
            await self._abort(exc)
        except PoolError as exc:
            await self._abort(_pool_error(exc), exc)
        if msg.msg_type == MsgType.CLOSE:
            await self._shutdown()
            raise ChannelClosed("peer closed the session")
        if msg.msg_type == MsgType.ABORT:
            reason = str(msg.fields.get("reason", "?"))[:200]
            await self._abort(ChannelClosed(f"peer aborted: {reason!r}"))
        if expect is not None:
            allowed = {expect} if isinstance(expect, MsgType) else set(expect)
            if msg.msg_type not in allowed:
                names = ", ".join(sorted(t.name for t in allowed))
                await self._abort(ProtocolError(f"expected {names}, got {msg.msg_type.name}"))
        return msg

    async def _read(self, n: int, what: str) -> bytes:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        # that arrives as the read completes (the caller would then never see it).
        try:
            async with asyncio.timeout(self.timeout):
                return await self._reader.readexactly(n)
        except asyncio.IncompleteReadError as exc:
            if not exc.partial and what == "header":
                raise ChannelClosed("connection closed by peer") from None
            raise MalformedFrame(f"truncated frame ({what}: {len(exc.partial)} of {n} bytes)"
                                 ) from None
        except TimeoutError:
            raise ChannelTimeout(f"no complete frame {what} within {self.timeout} s") from None
        except (ConnectionError, OSError) as exc:
            raise ChannelClosed(f"connection lost ({exc.__class__.__name__})") from None

    async def _recv_frame(self, *, handshake: bool) -> Message:
        raw_header = await self._read(HEADER_SIZE, "header")
        try:
            header: FrameHeader = parse_header(raw_header, self.max_payload)
        except FrameError as exc:
            raise MalformedFrame(str(exc)) from None
        expected = self.pool.recv_next
        if handshake and header.seq < expected:
            raise SequenceError(f"replayed handshake frame: seq {header.seq} < {expected}")
        if not handshake and header.seq != expected:
            kind = "replayed" if header.seq < expected else "reordered or dropped"
            raise SequenceError(f"{kind} frame: seq {header.seq}, expected {expected}")
        body = await self._read(header.payload_len + TAG_SIZE, "payload")
        payload, tag = body[: header.payload_len], body[header.payload_len :]
        keys = self.pool.recv_keys(header.seq, 1 + header.app_keys)
        if not mac_verify(keys[0], tag, self.session_id, raw_header, payload):
            if handshake and header.msg_type == MsgType.HELLO and \
                    _claimed_psk_id(payload) not in (None, self.pool.psk_id):
                raise HandshakeError("peer's key pool comes from another pre-shared key file "
                                     "(unauthenticated claim; HELLO tag did not verify)")
            raise AuthenticationError(
                f"authentication failed for frame seq {header.seq} ({header.msg_type.name})")
        self.pool.accept_recv(header.seq + 1 + header.app_keys)
        try:
            fields = decode_payload(payload)
        except FrameError as exc:
            raise MalformedFrame(f"{header.msg_type.name} payload: {exc}") from None
        return Message(header.msg_type, fields, header.seq, keys[1:])

    # -- session life cycle ----------------------------------------------------------------
    async def _initiate(self, versions: tuple[int, ...]) -> None:
        nonce_a = os.urandom(NONCE_BYTES)
        await self.send(MsgType.HELLO, {
            "versions": np.array(versions, dtype=np.uint8), "nonce": nonce_a,
            "psk_id": self.pool.psk_id, "role": self.pool.role.value})
        try:
            ack = await self._recv_frame(handshake=True)
            if ack.msg_type != MsgType.HELLO_ACK:
                raise HandshakeError(f"expected HELLO_ACK, got {ack.msg_type.name}")
            if ack.fields.get("echo") != nonce_a:
                raise HandshakeError("HELLO_ACK does not echo this session's nonce (replay?)")
            version = ack.fields.get("version")
            nonce_b = ack.fields.get("nonce")
            if version not in versions or not isinstance(nonce_b, bytes) or \
                    len(nonce_b) != NONCE_BYTES:
                raise HandshakeError("malformed HELLO_ACK")
        except ChannelError as exc:
            await self._abort(exc)
        except PoolError as exc:
            await self._abort(_pool_error(exc), exc)
        self._establish(nonce_a, nonce_b, version)

    async def _respond(self, versions: tuple[int, ...]) -> None:
        try:
            hello = await self._recv_frame(handshake=True)
            f = hello.fields
            if hello.msg_type != MsgType.HELLO:
                raise HandshakeError(f"expected HELLO, got {hello.msg_type.name}")
            if f.get("psk_id") != self.pool.psk_id:
                raise HandshakeError("peer's key pool comes from another pre-shared key file")
            if f.get("role") != self.pool.role.peer.value:
                raise HandshakeError(f"peer claims role {f.get('role')!r}; this end is "
                                     f"{self.pool.role.value}")
            nonce_a = f.get("nonce")
            offered = f.get("versions")
            if not isinstance(nonce_a, bytes) or len(nonce_a) != NONCE_BYTES or \
                    not isinstance(offered, np.ndarray) or offered.dtype != np.uint8:
                raise HandshakeError("malformed HELLO")
            common = set(versions) & {int(v) for v in offered.ravel()}
            if not common:
                raise HandshakeError(f"no common protocol version (peer offers "
                                     f"{sorted(int(v) for v in offered.ravel())}, this end "
                                     f"supports {sorted(versions)})")
        except ChannelError as exc:
            await self._abort(exc)
        except PoolError as exc:
            await self._abort(_pool_error(exc), exc)
        version = max(common)
        nonce_b = os.urandom(NONCE_BYTES)
        await self.send(MsgType.HELLO_ACK, {"version": version, "echo": nonce_a,
                                            "nonce": nonce_b})
        self._establish(nonce_a, nonce_b, version)

    def _establish(self, nonce_a: bytes, nonce_b: bytes, version: int) -> None:
        self.protocol_version = version
        self.session_id = hashlib.sha256(
            b"cvqkd-session-v1" + nonce_a + nonce_b + bytes([version])).digest()
        log.info("channel session %s established (protocol v%d, %s)", self.session_tag,
                 version, self.pool.role.value)

    async def abort(self, reason: str) -> None:
        """Tell the peer why this end gives up (authenticated ABORT; `reason` must not
        contain secrets), log it and close the session. Raises `ChannelClosed`."""
        if not self.closed:
            try:
                await self.send(MsgType.ABORT, {"reason": reason[:200]})
            except ChannelError:
                pass
        await self._abort(ChannelClosed(f"aborted by this end: {reason[:200]!r}"))

    async def close(self) -> None:
        """Close the session cleanly (CLOSE frame, persist counters, close the socket)."""
        if self.closed:
            return
        try:
            await self.send(MsgType.CLOSE)
        except ChannelError:
            return
        await self._shutdown()

    async def _shutdown(self) -> None:
        self.closed = True
        self.pool.flush()
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)
        except (TimeoutError, ConnectionError, OSError):
            pass

    async def _abort(self, exc: ChannelError, cause: BaseException | None = None) -> None:
        """Log one line, close the connection and raise `exc`."""
        if not self.closed:
            log.error("channel session %s aborted: %s", self.session_tag, exc)
            await self._shutdown()
        raise exc from cause


def _claimed_psk_id(payload: bytes) -> bytes | None:
    try:
        value = decode_payload(payload).get("psk_id")
    except FrameError:
        return None
    return value if isinstance(value, bytes) else None


async def connect(
    host: str,
    port: int,
    pool: KeyPool,
    *,
    versions: tuple[int, ...] = PROTOCOL_VERSIONS,
    timeout: float = DEFAULT_TIMEOUT,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
) -> Channel:
    """Open a TCP connection and run the initiator's side of the handshake."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (TimeoutError, OSError) as exc:
        raise ChannelClosed(f"cannot connect to {host}:{port} ({exc.__class__.__name__})") from None
    channel = Channel(reader, writer, pool, timeout=timeout, max_payload=max_payload)
    await channel._initiate(versions)
    return channel


async def accept(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    pool: KeyPool,
    *,
    versions: tuple[int, ...] = PROTOCOL_VERSIONS,
    timeout: float = DEFAULT_TIMEOUT,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
) -> Channel:
    """Run the responder's side of the handshake on an accepted connection."""
    channel = Channel(reader, writer, pool, timeout=timeout, max_payload=max_payload)
    await channel._respond(versions)
    return channel



async def serve(
    host: str,
    port: int,
    pool: KeyPool,
    handler: Callable[[Channel], Awaitable[None]],
    *,
    versions: tuple[int, ...] = PROTOCOL_VERSIONS,
    timeout: float = DEFAULT_TIMEOUT,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
) -> asyncio.Server:
    """Listen on host:port; each connection runs the responder handshake, then
    `handler(channel)`. Sessions run one at a time: a pool serves one session at once."""
    lock = asyncio.Lock()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with lock:
            try:
                channel = await accept(reader, writer, pool, versions=versions, timeout=timeout,
                                       max_payload=max_payload)
                await handler(channel)
            except ChannelError:
                pass  # already logged by the channel
            finally:
                writer.close()

    return await asyncio.start_server(on_connect, host, port)
