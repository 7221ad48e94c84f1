"""Crash-safe key store: SQLite (WAL, synchronous=FULL), keys encrypted with AES-GCM.

Each key row holds its UUID, size (bits), link and peer IDs, creation time, state and the
AES-256-GCM ciphertext of its material under the device key (NIST SP 800-38D), with a random
96-bit nonce and the associated data "cvqkd-key-v1" || UUID || size || link || peer, so a
ciphertext moved to another row (or a row whose metadata was altered) fails authentication.

Keys belong to commit batches (see controller.key_commit for the two-step commit across both
ends). A batch's status is the durable record of the commit decision:

    prepared  -> keys "pending": stored, not usable
    committed -> keys "ready" (then "delivered" or "erased" one by one)
    aborted   -> keys "erased"

Every state change is one SQLite transaction, so a crash leaves each batch entirely in one
state. Erasure overwrites the ciphertext with zeros in the same transaction that marks the key
erased; `PRAGMA secure_delete=ON` makes SQLite zero freed cells and pages, and
`checkpoint_wal()` overwrites the write-ahead log's old page images. Delivery hands the material
out once and erases it the same way. Metadata is stored in clear; listing needs no device key.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from controller.psk import create_secret_file, read_secret_file

DEVICE_KEY_MAGIC = b"CVQKDEV1"
DEVICE_KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12
SCHEMA_VERSION = 1

PENDING, READY, DELIVERED, ERASED = "pending", "ready", "delivered", "erased"
STATES = (PENDING, READY, DELIVERED, ERASED)
PREPARED, COMMITTED, ABORTED = "prepared", "committed", "aborted"
COORDINATOR, PARTICIPANT = "coordinator", "participant"
APP, AUTH = "app", "auth"  # batch purpose: keys for applications / for the channel's key pool

_CHECK_PLAINTEXT = b"cvqkd key store device key check"


class Aead(Protocol):
    """AES-256-GCM under the device key: `cryptography`'s AESGCM, or a PKCS#11 token
    (controller.keystore_pkcs11). decrypt raises cryptography.exceptions.InvalidTag."""

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes) -> bytes: ...


class KeyStoreError(Exception):
    """A key store operation failed; the message never contains key material."""


class StoreNotFound(KeyStoreError):
    pass


class WrongDeviceKey(KeyStoreError):
    pass


class KeyCorrupted(KeyStoreError):
    """A row's AES-GCM tag failed: that row only is unreadable."""


class KeyNotFound(KeyStoreError):
    pass


class InvalidState(KeyStoreError):
    pass


@dataclass(frozen=True)
class KeyRecord:
    """Metadata of one stored key (never its material). Times are Unix seconds."""

    key_id: str
    batch_id: str
    link_id: str
    peer_id: str
    size_bits: int
    created: float
    updated: float
    state: str


@dataclass(frozen=True)
class BatchRecord:
    batch_id: str
    role: str
    status: str
    peer_acked: bool
    purpose: str
    n_keys: int


def create_device_key(path: str | os.PathLike) -> Path:
    """Create a device key file (mode 0600, atomic, never overwritten) from the OS CSPRNG."""
    return create_secret_file(path, DEVICE_KEY_MAGIC + os.urandom(DEVICE_KEY_BYTES))


def load_device_key(path: str | os.PathLike) -> bytes:
    data = read_secret_file(path, "device key file")
    if len(data) != len(DEVICE_KEY_MAGIC) + DEVICE_KEY_BYTES or not data.startswith(
        DEVICE_KEY_MAGIC
    ):
        raise KeyStoreError(f"{path} is not a cvqkd device key file")
    return data[len(DEVICE_KEY_MAGIC) :]


def _resolve_aead(device_key_path: str | os.PathLike | None, aead: Aead | None) -> Aead | None:
    if device_key_path is not None and aead is not None:
        raise ValueError("give a device key file or a PKCS#11 key, not both")
    if device_key_path is not None:
        return AESGCM(load_device_key(device_key_path))
    return aead


def default_device_key_path(store: str | os.PathLike) -> Path:
    """Embedded default: the device key beside the store, as `<store>.devkey`."""
    return Path(f"{store}.devkey")


_SCHEMA = f"""
CREATE TABLE meta(name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE batches(
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('{COORDINATOR}', '{PARTICIPANT}')),
    status TEXT NOT NULL CHECK (status IN ('{PREPARED}', '{COMMITTED}', '{ABORTED}')),
    peer_acked INTEGER NOT NULL DEFAULT 0,
    purpose TEXT NOT NULL DEFAULT '{APP}' CHECK (purpose IN ('{APP}', '{AUTH}')),
    created REAL NOT NULL,
    updated REAL NOT NULL);
CREATE TABLE keys(
    id TEXT PRIMARY KEY,
    batch TEXT NOT NULL REFERENCES batches(id),
    link TEXT NOT NULL,
    peer TEXT NOT NULL,
    size_bits INTEGER NOT NULL CHECK (size_bits > 0),
    created REAL NOT NULL,
    updated REAL NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('{PENDING}', '{READY}', '{DELIVERED}', '{ERASED}')),
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL);
CREATE INDEX keys_batch ON keys(batch);
CREATE INDEX keys_state ON keys(state);
"""


def _associated_data(key_id: str, size_bits: int, link: str, peer: str) -> bytes:
    lk, pr = link.encode(), peer.encode()
    return (b"cvqkd-key-v1" + uuid.UUID(key_id).bytes + struct.pack("<IHH", size_bits,
            len(lk), len(pr)) + lk + pr)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA secure_delete=ON")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class KeyStore:
    """SQLite key store. Open with `create` or `open`; without a device key it is read-only
    metadata access (list, batch status)."""

    def __init__(self, conn: sqlite3.Connection, path: Path, aead: Aead | None) -> None:
        self._conn = conn
        self.path = path
        self._aead = aead

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, device_key_path: str | os.PathLike | None = None,
               *, aead: Aead | None = None) -> KeyStore:
        """Create a new store (mode 0600) bound to a device key file or a token's `aead`."""
        path = Path(path)
        aead = _resolve_aead(device_key_path, aead)
        if aead is None:
            raise ValueError("a new key store needs a device key file or a PKCS#11 key")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)
        conn = _connect(path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            store_id = os.urandom(16)
            nonce = os.urandom(NONCE_BYTES)
            check = aead.encrypt(nonce, _CHECK_PLAINTEXT, store_id)
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("schema_version", str(SCHEMA_VERSION).encode()), ("store_id", store_id),
                ("device_check", nonce + check)])
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            path.unlink()
            raise
        return cls(conn, path, aead)

    @classmethod
    def open(cls, path: str | os.PathLike, device_key_path: str | os.PathLike | None = None,
             *, aead: Aead | None = None) -> KeyStore:
        """Open an existing store; with a device key (file or token `aead`), check that it is
        this store's key. Without one, only metadata is accessible."""
        path = Path(path)
        if not path.is_file():
            raise StoreNotFound(f"key store not found: {path}")
        try:
            conn = _connect(path)
            meta = dict(conn.execute("SELECT name, value FROM meta"))
        except sqlite3.DatabaseError as exc:
            raise KeyStoreError(f"{path} is not a cvqkd key store ({exc})") from None
        if meta.get("schema_version") != str(SCHEMA_VERSION).encode():
            conn.close()
            raise KeyStoreError(f"{path}: unsupported key store schema")
        aead = _resolve_aead(device_key_path, aead)
        if aead is not None:
            check = meta["device_check"]
            try:
                aead.decrypt(check[:NONCE_BYTES], check[NONCE_BYTES:], meta["store_id"])
            except InvalidTag:
                conn.close()
                what = device_key_path if device_key_path is not None else "token key"
                raise WrongDeviceKey(f"device key {what} does not belong to key store {path}"
                                     ) from None
        return cls(conn, path, aead)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _need_key(self) -> Aead:
        if self._aead is None:
            raise KeyStoreError("this operation needs the device key")
        return self._aead

    # -- writing ---------------------------------------------------------------------------
    def add_batch(
        self,
        batch_id: str,
        keys: Sequence[tuple[str, bytes, int]],
        *,
        link_id: str,
        peer_id: str,
        role: str,
        status: str = PREPARED,
        purpose: str = APP,
    ) -> None:
        """Store (key UUID, material, size in bits) triples as one batch in ONE transaction.

        status=PREPARED stores the keys pending (the commit protocol); COMMITTED stores them
        ready directly (single-end use, benchmarks)."""
        aead = self._need_key()
        if status not in (PREPARED, COMMITTED):
            raise ValueError(f"a new batch is {PREPARED} or {COMMITTED}, not {status}")
        if role not in (COORDINATOR, PARTICIPANT):
            raise ValueError(f"unknown batch role {role!r}")
        if purpose not in (APP, AUTH):
            raise ValueError(f"unknown batch purpose {purpose!r}")
        state = PENDING if status == PREPARED else READY
        now = time.time()
        rows = []
        for key_id, material, size_bits in keys:
            if not 0 < size_bits <= 8 * len(material) or len(material) != (size_bits + 7) // 8:
                raise ValueError(f"key {key_id}: {len(material)} bytes for {size_bits} bits")
            nonce = os.urandom(NONCE_BYTES)
            ct = aead.encrypt(nonce, material, _associated_data(key_id, size_bits, link_id,
                                                                 peer_id))
            rows.append((key_id, batch_id, link_id, peer_id, size_bits, now, now, state, nonce,
                         ct))
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT INTO batches(id, role, status, purpose, created, updated) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (batch_id, role, status, purpose, now, now))
            conn.executemany("INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            conn.execute("ROLLBACK")
            raise KeyStoreError(f"batch {batch_id}: duplicate batch or key ID ({exc})") from None
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def commit_batch(self, batch_id: str) -> None:
        """prepared -> committed: its pending keys become ready (idempotent)."""
        self._transition(batch_id, COMMITTED, PENDING, READY)

    def abort_batch(self, batch_id: str) -> None:
        """prepared -> aborted: its pending keys are overwritten and erased (idempotent)."""
        self._transition(batch_id, ABORTED, PENDING, ERASED)

    def _transition(self, batch_id: str, status: str, from_state: str, to_state: str) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT status FROM batches WHERE id = ?", (batch_id,)).fetchone()
            if row is None:
                raise KeyNotFound(f"batch {batch_id} not in this store")
            if row[0] == status:
                conn.execute("ROLLBACK")
                return
            if row[0] != PREPARED:
                raise InvalidState(f"batch {batch_id} is {row[0]}, cannot become {status}")
            now = time.time()
            conn.execute("UPDATE batches SET status = ?, updated = ? WHERE id = ?",
                         (status, now, batch_id))
            wipe = ", ciphertext = zeroblob(length(ciphertext)), nonce = zeroblob(12)" \
                if to_state == ERASED else ""
            conn.execute(f"UPDATE keys SET state = ?, updated = ?{wipe} WHERE batch = ? "
                         "AND state = ?", (to_state, now, batch_id, from_state))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def mark_peer_acked(self, batch_ids: Iterable[str]) -> None:
        """Record that the peer confirmed the commit of these batches."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("UPDATE batches SET peer_acked = 1 WHERE id = ? AND status = ?",
                         ((b, COMMITTED) for b in batch_ids))
        conn.execute("COMMIT")

    def erase(self, key_id: str, *, checkpoint: bool = True) -> None:
        """Overwrite a key's ciphertext with zeros and mark it erased (one transaction)."""
        self._finish(key_id, ERASED)
        if checkpoint:
            self.checkpoint_wal()

    def deliver(self, key_id: str) -> bytes:
        """Hand out a ready key once: returns its material and erases it as delivered.

        A coordinator's key is deliverable only after the peer acknowledged the commit, so a
        delivered key is ready (or delivered) at both ends."""
        rec = self.record(key_id)
        batch = self.batch(rec.batch_id)
        if rec.state != READY:
            raise InvalidState(f"key {key_id} is {rec.state}, not ready")
        if batch.purpose != APP:
            raise InvalidState(f"key {key_id} is reserved for channel authentication")
        if batch.role == COORDINATOR and not batch.peer_acked:
            raise InvalidState(f"key {key_id}: peer has not yet confirmed the commit")
        material = self.material(key_id)
        self._finish(key_id, DELIVERED)
        return material

    def consume_auth_key(self, key_id: str) -> None:
        """Mark a ready key of an authentication batch delivered (to the key pool) and
        overwrite its material; see controller.key_commit.refill_pool."""
        if self.batch(self.record(key_id).batch_id).purpose != AUTH:
            raise InvalidState(f"key {key_id} is not an authentication key")
        self._finish(key_id, DELIVERED)

    def _finish(self, key_id: str, state: str) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(
                "UPDATE keys SET state = ?, updated = ?, ciphertext = zeroblob(length(ciphertext)),"
                " nonce = zeroblob(12) WHERE id = ? AND state = ?",
                (state, time.time(), key_id, READY))
            if cur.rowcount != 1:
                row = conn.execute("SELECT state FROM keys WHERE id = ?", (key_id,)).fetchone()
                if row is None:
                    raise KeyNotFound(f"key {key_id} not in this store")
                raise InvalidState(f"key {key_id} is {row[0]}, not ready")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def checkpoint_wal(self) -> None:
        """Copy the WAL into the database and truncate it (drops old page images)."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- reading ---------------------------------------------------------------------------
    _COLS = "id, batch, link, peer, size_bits, created, updated, state"

    def record(self, key_id: str) -> KeyRecord:
        row = self._conn.execute(f"SELECT {self._COLS} FROM keys WHERE id = ?",
                                 (key_id,)).fetchone()
        if row is None:
            raise KeyNotFound(f"key {key_id} not in this store")
        return KeyRecord(*row)

    def list_keys(self, state: str | None = None) -> list[KeyRecord]:
        if state is not None and state not in STATES:
            raise ValueError(f"unknown key state {state!r}")
        sql = f"SELECT {self._COLS} FROM keys"
        rows = self._conn.execute(sql + " WHERE state = ? ORDER BY rowid", (state,)) if state \
            else self._conn.execute(sql + " ORDER BY rowid")
        return [KeyRecord(*r) for r in rows]

    def material(self, key_id: str) -> bytes:
        """Decrypt a pending or ready key (administrative/audit read: no state change)."""
        aead = self._need_key()
        row = self._conn.execute(
            "SELECT link, peer, size_bits, state, nonce, ciphertext FROM keys WHERE id = ?",
            (key_id,)).fetchone()
        if row is None:
            raise KeyNotFound(f"key {key_id} not in this store")
        link, peer, size_bits, state, nonce, ct = row
        if state in (DELIVERED, ERASED):
            raise InvalidState(f"key {key_id} is {state}; its material no longer exists")
        try:
            return aead.decrypt(nonce, ct, _associated_data(key_id, size_bits, link, peer))
        except InvalidTag:
            raise KeyCorrupted(
                f"key {key_id}: AES-GCM authentication failed (ciphertext or metadata "
                "corrupted); other keys are unaffected") from None

    def batch(self, batch_id: str) -> BatchRecord:
        row = self._conn.execute(
            "SELECT b.id, b.role, b.status, b.peer_acked, b.purpose, COUNT(k.id) FROM batches b "
            "LEFT JOIN keys k ON k.batch = b.id WHERE b.id = ? GROUP BY b.id",
            (batch_id,)).fetchone()
        if row is None:
            raise KeyNotFound(f"batch {batch_id} not in this store")
        return BatchRecord(row[0], row[1], row[2], bool(row[3]), row[4], row[5])

    def batch_status(self, batch_id: str) -> str | None:
        row = self._conn.execute("SELECT status FROM batches WHERE id = ?",
                                 (batch_id,)).fetchone()
        return None if row is None else row[0]

    def batches(self, status: str | None = None, *, role: str | None = None,
                purpose: str | None = None, unacked_only: bool = False) -> list[str]:
        """Batch IDs in insertion (= commit protocol) order, optionally filtered."""
        sql = "SELECT id FROM batches WHERE 1"
        args: list[object] = []
        if purpose is not None:
            sql += " AND purpose = ?"
            args.append(purpose)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        if role is not None:
            sql += " AND role = ?"
            args.append(role)
        if unacked_only:
            sql += " AND peer_acked = 0"
        return [r[0] for r in self._conn.execute(sql + " ORDER BY rowid", args)]

    def batch_keys(self, batch_id: str) -> list[KeyRecord]:
        rows = self._conn.execute(f"SELECT {self._COLS} FROM keys WHERE batch = ? ORDER BY rowid",
                                  (batch_id,))
        return [KeyRecord(*r) for r in rows]
