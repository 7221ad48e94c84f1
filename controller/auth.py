"""Wegman-Carter authentication of the classical channel and its one-time key pool.

Every frame is tagged with Poly1305 (RFC 8439, section 2.5) under a fresh 32-byte one-time key.
Poly1305 with a one-time key (r, s) is an ε-almost-Δ-universal hash plus a one-time pad, i.e.
a Wegman-Carter MAC (Wegman & Carter, JCSS 22, 1981; Bernstein, "The Poly1305-AES
message-authentication code", FSE 2005): a forgery succeeds with probability at most
8*ceil(L/16)/2^106 for an L-byte message, information-theoretically, provided that no key is
ever used for two messages.

Key pool layout. The pool is an append-only array of 32-byte slots: first the pre-shared key
file, then every `refill` (distilled key), in the same order on both ends. Each direction of the
link owns every other slot: frame number n sent by Alice uses slot 2n, frame n sent by Bob uses
slot 2n+1. Both ends therefore derive the same key from (direction, seq) without coordination.

Never reuse. Before the sender uses slot n it persists `next_send > n` (in reserved batches,
with the slots' material deleted in the same SQLite transaction, secure_delete on); a crash
burns the unused part of a batch but can never make a key be used twice. The receiver persists
its counter lazily; replays across sessions are stopped by the session binding of the channel
(see controller.channel), and a new session's first frame must carry seq >= the persisted value.

Accounting: `bits_used` counts every slot consumed or burned by either direction, which the net
key rate must subtract.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.poly1305 import Poly1305

from controller.psk import ONE_TIME_KEY_BYTES, read_psk_file, wipe_file

KEY_BITS = 8 * ONE_TIME_KEY_BYTES
DEFAULT_RESERVE = 16  # send keys persisted as used per transaction
DEFAULT_RECV_FLUSH = 64  # received frames between persists of the receive counter


class PoolError(RuntimeError):
    """The authentication key pool cannot serve a request."""


class PoolExhausted(PoolError):
    """No one-time authentication key is left for a direction."""


class Role(Enum):
    ALICE = "alice"
    BOB = "bob"

    @property
    def send_direction(self) -> int:
        return 0 if self is Role.ALICE else 1

    @property
    def peer(self) -> Role:
        return Role.BOB if self is Role.ALICE else Role.ALICE


def mac_tag(key: bytes, *parts: bytes) -> bytes:
    """16-byte Poly1305 tag of the concatenated `parts` under a one-time 32-byte key."""
    mac = Poly1305(key)
    for part in parts:
        mac.update(part)
    return mac.finalize()


def mac_verify(key: bytes, tag: bytes, *parts: bytes) -> bool:
    """Constant-time check of a Poly1305 tag over the concatenated `parts`."""
    mac = Poly1305(key)
    for part in parts:
        mac.update(part)
    try:
        mac.verify(tag)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class PoolStats:
    """Key pool accounting, in bits."""

    total_bits: int  # pre-shared + refilled material ever held
    used_bits: int  # consumed or burned by either direction
    send_available_bits: int
    recv_available_bits: int
    refilled_bits: int


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS slots(idx INTEGER PRIMARY KEY, key BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS refills(source TEXT PRIMARY KEY, first_slot INTEGER NOT NULL,
                                   n_slots INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters(direction INTEGER PRIMARY KEY, next INTEGER NOT NULL);
"""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA secure_delete=ON")
    return conn


class KeyPool:
    """Persistent pool of one-time Poly1305 keys shared by the two ends of a link."""

    def __init__(self, conn: sqlite3.Connection, reserve: int, recv_flush: int) -> None:
        self._conn = conn
        meta = dict(conn.execute("SELECT name, value FROM meta"))
        self.role = Role(meta["role"].decode())
        self.psk_id: bytes = meta["psk_id"]
        self._send_dir = self.role.send_direction
        self._recv_dir = 1 - self._send_dir
        counters = dict(conn.execute("SELECT direction, next FROM counters"))
        self._send_next = self._send_reserved = counters[self._send_dir]
        self._recv_next = self._recv_persisted = counters[self._recv_dir]
        self._reserved: list[bytes] = []  # material of [_send_next, _send_reserved)
        self._reserve = reserve
        self._recv_flush = recv_flush

    # -- creation ------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        psk_path: str | os.PathLike,
        role: Role | str,
        *,
        wipe_psk: bool = True,
        reserve: int = DEFAULT_RESERVE,
    ) -> KeyPool:
        """Create a pool database (mode 0600) from a PSK file, then wipe the PSK file."""
        path = Path(path)
        role = Role(role)
        psk_id, material = read_psk_file(psk_path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)
        conn = _connect(path)
        try:
            conn.executescript(_SCHEMA)
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO meta VALUES (?, ?)",
                             [("role", role.value.encode()), ("psk_id", psk_id)])
            conn.executemany("INSERT INTO counters VALUES (?, 0)", [(0,), (1,)])
            conn.executemany(
                "INSERT INTO slots VALUES (?, ?)",
                ((i, material[i * ONE_TIME_KEY_BYTES : (i + 1) * ONE_TIME_KEY_BYTES])
                 for i in range(len(material) // ONE_TIME_KEY_BYTES)),
            )
            conn.execute("INSERT INTO refills VALUES ('psk', 0, ?)",
                         (len(material) // ONE_TIME_KEY_BYTES,))
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            path.unlink()
            raise
        if wipe_psk:
            wipe_file(psk_path)
        return cls(conn, reserve, DEFAULT_RECV_FLUSH)

    @classmethod
    def open(cls, path: str | os.PathLike, *, reserve: int = DEFAULT_RESERVE,
             recv_flush: int = DEFAULT_RECV_FLUSH) -> KeyPool:
        """Open an existing pool database."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"authentication key pool not found: {path}")
        try:
            conn = _connect(path)
            return cls(conn, reserve, recv_flush)
        except (sqlite3.DatabaseError, KeyError) as exc:
            raise ValueError(f"{path} is not a cvqkd key pool ({exc.__class__.__name__})") from None

    # -- geometry --------------------------------------------------------------------------
    @property
    def total_slots(self) -> int:
        row = self._conn.execute("SELECT COALESCE(MAX(first_slot + n_slots), 0) FROM refills")
        return int(row.fetchone()[0])

    def _capacity(self, direction: int) -> int:
        """Number of frame indices n with a slot 2n + direction in the pool."""
        return max(0, (self.total_slots - direction + 1) // 2)

    @staticmethod
    def _slot(direction: int, n: int) -> int:
        return 2 * n + direction

    # -- sending ---------------------------------------------------------------------------
    @property
    def send_next(self) -> int:
        """Sequence number of the next frame this end sends."""
        return self._send_next

    def take_send(self, count: int) -> tuple[int, list[bytes]]:
        """Consume `count` consecutive send keys; returns (first seq, keys)."""
        seq = self._send_next
        if seq + count > self._send_reserved:
            self._reserve_more(seq + count)
        keys = self._reserved[:count]
        del self._reserved[:count]
        self._send_next = seq + count
        return seq, keys

    def _reserve_more(self, needed_end: int) -> None:
        cap = self._capacity(self._send_dir)
        if needed_end > cap:
            raise PoolExhausted(
                f"authentication key pool exhausted for {self.role.value}'s sending direction "
                f"({cap} keys used); refill it from distilled key or install a new pre-shared "
                "key file"
            )
        start = self._send_reserved
        end = min(max(needed_end, start + self._reserve), cap)
        slots = [self._slot(self._send_dir, n) for n in range(start, end)]
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            rows = dict(conn.execute(
                f"SELECT idx, key FROM slots WHERE idx IN ({','.join('?' * len(slots))})", slots))
            if len(rows) != len(slots):
                raise PoolError("authentication key pool is missing slots (database damaged?)")
            conn.execute(f"DELETE FROM slots WHERE idx IN ({','.join('?' * len(slots))})", slots)
            conn.execute("UPDATE counters SET next = ? WHERE direction = ?", (end, self._send_dir))
            conn.execute("COMMIT")  # persisted as used before any of these keys is used
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._reserved.extend(rows[s] for s in slots)
        self._send_reserved = end

    # -- receiving -------------------------------------------------------------------------
    @property
    def recv_next(self) -> int:
        """Lowest sequence number the peer may still use."""
        return self._recv_next

    def recv_keys(self, seq: int, count: int) -> list[bytes]:
        """Keys of received frame `seq` and its `count - 1` application keys (not consumed)."""
        if seq < self._recv_next:
            raise PoolError(f"receive key {seq} already consumed")
        if seq + count > self._capacity(self._recv_dir):
            raise PoolExhausted(
                f"no authentication key for {self.role.peer.value}'s frame {seq}: pool "
                f"exhausted at {self._capacity(self._recv_dir)} keys for that direction (or the "
                "peer's pool holds refills this end lacks); refill it from distilled key or "
                "install a new pre-shared key file"
            )
        slots = [self._slot(self._recv_dir, n) for n in range(seq, seq + count)]
        rows = dict(self._conn.execute(
            f"SELECT idx, key FROM slots WHERE idx IN ({','.join('?' * len(slots))})", slots))
        if len(rows) != len(slots):
            raise PoolError("authentication key pool is missing slots (database damaged?)")
        return [rows[s] for s in slots]

    def accept_recv(self, next_seq: int) -> None:
        """Mark receive keys below `next_seq` consumed (persisted lazily, see module doc)."""
        if next_seq < self._recv_next:
            raise PoolError("receive counter cannot move backwards")
        self._recv_next = next_seq
        if self._recv_next - self._recv_persisted >= self._recv_flush:
            self.flush()

    def flush(self) -> None:
        """Persist the receive counter and delete the material of consumed receive keys."""
        if self._recv_next == self._recv_persisted:
            return
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE counters SET next = ? WHERE direction = ?",
                     (self._recv_next, self._recv_dir))
        conn.execute("DELETE FROM slots WHERE idx < ? AND idx % 2 = ?",
                     (self._slot(self._recv_dir, self._recv_next), self._recv_dir))
        conn.execute("COMMIT")
        self._recv_persisted = self._recv_next

    # -- refill and accounting -------------------------------------------------------------
    def refill(self, material: bytes, source: str | None = None) -> int:
        """Append distilled key to the pool; returns the number of one-time keys added.

        Both ends must refill with the same bytes in the same order (e.g. right after the
        commit of a key batch, from that batch). `source` (e.g. the key or batch UUID) makes
        the call idempotent: a repeated source with the same length is a no-op.
        """
        source = source if source is not None else f"anon-{os.urandom(8).hex()}"
        if not material or len(material) % ONE_TIME_KEY_BYTES:
            raise ValueError(f"refill material must be a positive multiple of "
                             f"{ONE_TIME_KEY_BYTES} bytes, got {len(material)}")
        n = len(material) // ONE_TIME_KEY_BYTES
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT n_slots FROM refills WHERE source = ?",
                               (source,)).fetchone()
            if row is not None:
                conn.execute("ROLLBACK")
                if row[0] != n:
                    raise ValueError(f"refill source {source!r} already used with another size")
                return 0
            first = int(conn.execute(
                "SELECT COALESCE(MAX(first_slot + n_slots), 0) FROM refills").fetchone()[0])
            conn.executemany(
                "INSERT INTO slots VALUES (?, ?)",
                ((first + i, material[i * ONE_TIME_KEY_BYTES : (i + 1) * ONE_TIME_KEY_BYTES])
                 for i in range(n)))
            conn.execute("INSERT INTO refills VALUES (?, ?, ?)", (source, first, n))
            conn.execute("COMMIT")
        except sqlite3.Error:
            conn.execute("ROLLBACK")
            raise
        return n

    def stats(self) -> PoolStats:
        total = self.total_slots
        refilled = int(self._conn.execute(
            "SELECT COALESCE(SUM(n_slots), 0) FROM refills WHERE source != 'psk'").fetchone()[0])
        send_used = self._send_reserved
        recv_used = self._recv_next
        return PoolStats(
            total_bits=total * KEY_BITS,
            used_bits=(send_used + recv_used) * KEY_BITS,
            send_available_bits=max(0, self._capacity(self._send_dir) - send_used) * KEY_BITS,
            recv_available_bits=max(0, self._capacity(self._recv_dir) - recv_used) * KEY_BITS,
            refilled_bits=refilled * KEY_BITS,
        )

    @property
    def bits_used(self) -> int:
        """Authentication key consumed or burned so far (both directions), bits."""
        return self.stats().used_bits

    def close(self) -> None:
        self.flush()
        self._reserved.clear()
        self._conn.close()

    def __enter__(self) -> KeyPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

