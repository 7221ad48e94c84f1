"""Two-step commit of distilled keys across both ends, and recovery of interrupted commits.

Alice is the coordinator, Bob the participant (see docs/key-store.md for the invariants):

1. Alice stores the batch as `prepared` (keys pending), durably.
2. Alice -> KEY_PREPARE {batch, key UUIDs, sizes, link, digest}; the frame reserves one fresh
   one-time pool key k; digest = Poly1305_k(batch || UUIDs || sizes || material).
3. Bob checks the digest against his own material (constant time); if equal he stores the
   batch `prepared`, durably, and answers KEY_PREPARE_ACK {ok=1}; else {ok=0} and stores nothing.
4. Alice marks the batch `committed` (keys ready): THE COMMIT POINT. Then KEY_COMMIT.
5. Bob marks it `committed`, answers KEY_COMMIT_ACK; Alice records `peer_acked`.

The digest is a Wegman-Carter tag under a key used once: it is uniformly distributed and
independent of the key material, so the comparison leaks nothing about the keys beyond the
one-bit outcome (unlike a public hash of the key). It costs 256 bits of pool per batch.

Recovery (`recover_coordinator` / `recover_participant`, run at the start of every session)
resolves every batch left `prepared` at either end and every commit Bob has not acknowledged:
Alice decides commit if both ends hold the batch, otherwise abort; Bob follows Alice's durable
decision. It is idempotent, so a crash during recovery is resolved by the next one.
"""

from __future__ import annotations

import hmac
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from controller.auth import KeyPool, mac_tag
from controller.channel import Channel
from controller.framing import MsgType
from controller.keystore import (
    ABORTED,
    APP,
    AUTH,
    COMMITTED,
    COORDINATOR,
    PARTICIPANT,
    PREPARED,
    READY,
    KeyStore,
)
from controller.psk import ONE_TIME_KEY_BYTES

_STATUS_CODES = {None: 0, PREPARED: 1, COMMITTED: 2, ABORTED: 3}


class CommitError(Exception):
    """The two ends could not agree on a batch (message safe to log)."""


@dataclass(frozen=True)
class RecoveryReport:
    committed: list[str]
    aborted: list[str]


def batch_digest(otk: bytes, batch_id: str, keys: Sequence[tuple[str, bytes, int]]) -> bytes:
    """One-time Poly1305 tag over a batch: identical at both ends iff the batches are."""
    parts = [b"cvqkd-commit-v1", uuid.UUID(batch_id).bytes]
    for key_id, material, size_bits in keys:
        parts += [uuid.UUID(key_id).bytes, struct.pack("<I", size_bits), material]
    return mac_tag(otk, *parts)


def _pack_ids(ids: Sequence[str]) -> bytes:
    return b"".join(uuid.UUID(i).bytes for i in ids)


def _unpack_ids(raw: object) -> list[str]:
    if not isinstance(raw, bytes) or len(raw) % 16:
        raise CommitError("malformed list of UUIDs")
    return [str(uuid.UUID(bytes=raw[i : i + 16])) for i in range(0, len(raw), 16)]


def _batch_field(msg_fields: dict, expected: str | None = None) -> str:
    ids = _unpack_ids(msg_fields.get("batch"))
    if len(ids) != 1 or (expected is not None and ids[0] != expected):
        raise CommitError(f"message for an unexpected batch (expected {expected})")
    return ids[0]


async def commit_keys(
    channel: Channel,
    store: KeyStore,
    materials: Sequence[bytes],
    *,
    link_id: str,
    peer_id: str,
    purpose: str = APP,
) -> list[str]:
    """Coordinator side: store, prepare, commit. Returns the new key UUIDs.

    purpose=AUTH dedicates the batch to refilling the authentication key pool
    (`refill_pool`); its keys are never delivered to applications."""
    if purpose == AUTH and any(len(m) % ONE_TIME_KEY_BYTES for m in materials):
        raise ValueError(f"authentication keys must be multiples of {ONE_TIME_KEY_BYTES} bytes")
    batch_id = str(uuid.uuid4())
    keys = [(str(uuid.uuid4()), bytes(m), 8 * len(m)) for m in materials]
    store.add_batch(batch_id, keys, link_id=link_id, peer_id=peer_id, role=COORDINATOR,
                    purpose=purpose)
    await channel.send(MsgType.KEY_PREPARE, lambda otk: {
        "batch": _pack_ids([batch_id]),
        "ids": _pack_ids([k[0] for k in keys]),
        "sizes": np.array([k[2] for k in keys], dtype=np.uint32),
        "link": link_id,
        "purpose": purpose,
        "digest": batch_digest(otk[0], batch_id, keys),
    }, app_keys=1)
    ack = await channel.recv(MsgType.KEY_PREPARE_ACK)
    _batch_field(ack.fields, batch_id)
    if ack.fields.get("ok") != 1:
        store.abort_batch(batch_id)
        raise CommitError(f"batch {batch_id} aborted: peer's keys differ "
                          f"({ack.fields.get('reason', 'no reason given')})")
    store.commit_batch(batch_id)  # the commit point
    await channel.send(MsgType.KEY_COMMIT, {"batch": _pack_ids([batch_id])})
    done = await channel.recv(MsgType.KEY_COMMIT_ACK)
    _batch_field(done.fields, batch_id)
    store.mark_peer_acked([batch_id])
    return [k[0] for k in keys]


async def accept_commit(
    channel: Channel,
    store: KeyStore,
    materials: Sequence[bytes],
    *,
    link_id: str,
    peer_id: str,
    purpose: str = APP,
) -> list[str]:
    """Participant side: check the digest against local material, store, commit."""
    msg = await channel.recv(MsgType.KEY_PREPARE)
    batch_id = _batch_field(msg.fields)
    ids = _unpack_ids(msg.fields.get("ids"))
    sizes = msg.fields.get("sizes")
    reason = None
    if msg.fields.get("link") != link_id:
        reason = "link ID differs"
    elif msg.fields.get("purpose") != purpose:
        reason = "key purpose differs"
    elif not isinstance(sizes, np.ndarray) or sizes.dtype != np.uint32 or \
            len(sizes) != len(ids) or len(ids) != len(materials):
        reason = "number of keys differs"
    elif any(int(s) != 8 * len(m) for s, m in zip(sizes, materials, strict=True)):
        reason = "key sizes differ"
    keys = [(i, bytes(m), 8 * len(m)) for i, m in zip(ids, materials, strict=False)]
    digest = msg.fields.get("digest")
    if reason is None and not (isinstance(digest, bytes) and hmac.compare_digest(
            batch_digest(msg.app_keys[0], batch_id, keys), digest)):
        reason = "key material differs"
    if reason is not None:
        await channel.send(MsgType.KEY_PREPARE_ACK, {"batch": _pack_ids([batch_id]), "ok": 0,
                                                     "reason": reason})
        raise CommitError(f"batch {batch_id} refused: {reason}")
    store.add_batch(batch_id, keys, link_id=link_id, peer_id=peer_id, role=PARTICIPANT,
                    purpose=purpose)
    await channel.send(MsgType.KEY_PREPARE_ACK, {"batch": _pack_ids([batch_id]), "ok": 1})
    commit = await channel.recv(MsgType.KEY_COMMIT)
    _batch_field(commit.fields, batch_id)
    store.commit_batch(batch_id)
    await channel.send(MsgType.KEY_COMMIT_ACK, {"batch": _pack_ids([batch_id])})
    return ids


async def recover_coordinator(channel: Channel, store: KeyStore) -> RecoveryReport:
    """Alice: resolve prepared and unacknowledged batches with Bob."""
    queried = store.batches(PREPARED, role=COORDINATOR) + \
        store.batches(COMMITTED, role=COORDINATOR, unacked_only=True)
    await channel.send(MsgType.KEY_RECOVER_QUERY, {"ids": _pack_ids(queried)})
    report = await channel.recv(MsgType.KEY_RECOVER_REPORT)
    states = report.fields.get("states")
    if not isinstance(states, np.ndarray) or states.dtype != np.uint8 or \
            len(states) != len(queried):
        raise CommitError("malformed recovery report")
    commit: list[str] = []
    abort: list[str] = []
    peer_has = dict(zip(queried, (int(s) for s in states), strict=True))
    for batch_id in dict.fromkeys(queried + _unpack_ids(report.fields.get("prepared"))):
        mine = store.batch_status(batch_id)
        if mine == PREPARED:
            if peer_has.get(batch_id, 1) in (1, 2):  # Bob holds it (prepared) -> commit
                store.commit_batch(batch_id)
                commit.append(batch_id)
            else:
                store.abort_batch(batch_id)
                abort.append(batch_id)
        elif mine == COMMITTED:
            commit.append(batch_id)
        else:  # aborted or never stored here
            abort.append(batch_id)
    await channel.send(MsgType.KEY_RECOVER_DECISION,
                       {"commit": _pack_ids(commit), "abort": _pack_ids(abort)})
    await channel.recv(MsgType.KEY_RECOVER_ACK)
    store.mark_peer_acked(commit)
    return RecoveryReport(commit, abort)


async def recover_participant(channel: Channel, store: KeyStore) -> RecoveryReport:
    """Bob: report batch states, then apply Alice's decisions."""
    query = await channel.recv(MsgType.KEY_RECOVER_QUERY)
    ids = _unpack_ids(query.fields.get("ids"))
    states = np.array([_STATUS_CODES[store.batch_status(b)] for b in ids], dtype=np.uint8)
    await channel.send(MsgType.KEY_RECOVER_REPORT, {
        "states": states, "prepared": _pack_ids(store.batches(PREPARED, role=PARTICIPANT))})
    decision = await channel.recv(MsgType.KEY_RECOVER_DECISION)
    commit = _unpack_ids(decision.fields.get("commit"))
    abort = _unpack_ids(decision.fields.get("abort"))
    for batch_id in commit:
        if store.batch_status(batch_id) is None:
            raise CommitError(f"peer committed batch {batch_id}, which this end never stored")
        store.commit_batch(batch_id)
    for batch_id in abort:
        status = store.batch_status(batch_id)
        if status == COMMITTED:
            raise CommitError(f"peer aborts batch {batch_id}, committed here")
        if status == PREPARED:
            store.abort_batch(batch_id)
    await channel.send(MsgType.KEY_RECOVER_ACK, {})
    return RecoveryReport(commit, abort)


def refill_pool(pool: KeyPool, store: KeyStore) -> int:
    """Move committed authentication batches into the key pool; returns one-time keys added.

    Both ends add the same keys in the same order: batches in commit-protocol order, stopping
    at the first batch that is not yet settled at both ends (prepared, or committed at Alice
    but not yet acknowledged by Bob), so neither end appends a batch the other may lack before
    an earlier one. Each key is appended with its UUID as the refill source (idempotent) and
    only then marked delivered and overwritten, so a crash in between is repaired by the next
    call and the key is never also delivered to an application.
    """
    added = 0
    for batch_id in store.batches(purpose=AUTH):
        batch = store.batch(batch_id)
        if batch.status == ABORTED:
            continue
        if batch.status == PREPARED or (batch.role == COORDINATOR and not batch.peer_acked):
            break
        for rec in store.batch_keys(batch_id):
            if rec.state == READY:
                added += pool.refill(store.material(rec.key_id), source=rec.key_id)
                store.consume_auth_key(rec.key_id)
    return added
