"""SQLite key store (AES-GCM at rest) and the two-step commit over the channel."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import uuid

import pytest
from channel_util import make_pool_pair, open_store, recover_both, run

from controller.auth import KeyPool
from controller.channel import Channel, ChannelError
from controller.key_commit import (
    CommitError,
    accept_commit,
    commit_keys,
    recover_coordinator,
    recover_participant,
    refill_pool,
)
from controller.keystore import (
    ABORTED,
    AUTH,
    COMMITTED,
    COORDINATOR,
    DELIVERED,
    ERASED,
    PARTICIPANT,
    PENDING,
    PREPARED,
    READY,
    InvalidState,
    KeyCorrupted,
    KeyStore,
    KeyStoreError,
    StoreNotFound,
    WrongDeviceKey,
    create_device_key,
)


def _keys(n, tag="k"):
    return [(str(uuid.uuid4()), hashlib.sha256(f"{tag}{i}".encode()).digest(), 256)
            for i in range(n)]


@pytest.fixture
def store(tmp_path):
    create_device_key(tmp_path / "dev.key")
    with KeyStore.create(tmp_path / "keys.db", tmp_path / "dev.key") as s:
        yield s


def test_files_private_and_never_overwritten(tmp_path, store):
    for name in ("dev.key", "keys.db"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
    with pytest.raises(ValueError, match="refusing to overwrite"):
        create_device_key(tmp_path / "dev.key")
    with pytest.raises(FileExistsError):
        KeyStore.create(tmp_path / "keys.db", tmp_path / "dev.key")
    mode = store._conn.execute("PRAGMA journal_mode").fetchone()[0]
    sync = store._conn.execute("PRAGMA synchronous").fetchone()[0]
    sec = store._conn.execute("PRAGMA secure_delete").fetchone()[0]
    assert (mode, sync, sec) == ("wal", 2, 1)  # WAL, FULL, secure_delete on


def test_batch_life_cycle(store):
    keys = _keys(3)
    store.add_batch(str(uuid.uuid4()), [], link_id="l", peer_id="p",
                    role=COORDINATOR)  # an empty batch is allowed
    bid = str(uuid.uuid4())
    store.add_batch(bid, keys, link_id="link-25km", peer_id="bob", role=COORDINATOR)
    assert {r.state for r in store.batch_keys(bid)} == {PENDING}
    assert store.material(keys[0][0]) == keys[0][1]
    store.commit_batch(bid)
    store.commit_batch(bid)  # idempotent
    assert [r.state for r in store.batch_keys(bid)] == [READY] * 3
    rec = store.record(keys[1][0])
    assert (rec.size_bits, rec.link_id, rec.peer_id, rec.batch_id) == (256, "link-25km", "bob",
                                                                       bid)
    with pytest.raises(InvalidState, match="not yet confirmed"):
        store.deliver(keys[0][0])
    store.mark_peer_acked([bid])
    assert store.deliver(keys[0][0]) == keys[0][1]
    assert store.record(keys[0][0]).state == DELIVERED
    with pytest.raises(InvalidState, match="no longer exists"):
        store.material(keys[0][0])
    store.erase(keys[1][0])
    assert store.record(keys[1][0]).state == ERASED
    with pytest.raises(InvalidState):
        store.abort_batch(bid)


def test_abort_erases_and_commit_after_abort_refused(store):
    bid = str(uuid.uuid4())
    keys = _keys(2)
    store.add_batch(bid, keys, link_id="l", peer_id="p", role=PARTICIPANT)
    store.abort_batch(bid)
    assert store.batch_status(bid) == ABORTED
    assert {r.state for r in store.batch_keys(bid)} == {ERASED}
    with pytest.raises(InvalidState, match="aborted"):
        store.commit_batch(bid)
    blobs = store._conn.execute("SELECT ciphertext FROM keys WHERE batch = ?", (bid,))
    assert all(set(b) == {0} for (b,) in blobs)


def test_erasure_leaves_no_ciphertext_in_files(tmp_path, store):
    bid = str(uuid.uuid4())
    keys = _keys(20)
    store.add_batch(bid, keys, link_id="l", peer_id="p", role=PARTICIPANT, status=COMMITTED)
    target = keys[7][0]
    (ct,) = store._conn.execute("SELECT ciphertext FROM keys WHERE id = ?", (target,)).fetchone()
    store.checkpoint_wal()
    assert ct in (tmp_path / "keys.db").read_bytes()
    store.erase(target)
    for f in tmp_path.iterdir():
        assert ct not in f.read_bytes(), f.name


def test_missing_store_wrong_key_and_corrupted_row(tmp_path, store):
    with pytest.raises(StoreNotFound, match="not found"):
        KeyStore.open(tmp_path / "nope.db")
    assert not (tmp_path / "nope.db").exists()
    bid = str(uuid.uuid4())
    keys = _keys(3)
    store.add_batch(bid, keys, link_id="l", peer_id="p", role=PARTICIPANT, status=COMMITTED)
    create_device_key(tmp_path / "other.key")
    with pytest.raises(WrongDeviceKey, match="does not belong"):
        KeyStore.open(tmp_path / "keys.db", tmp_path / "other.key")
    # Flip one ciphertext byte of key 1 behind the store's back.
    raw = sqlite3.connect(tmp_path / "keys.db")
    (ct,) = raw.execute("SELECT ciphertext FROM keys WHERE id = ?", (keys[1][0],)).fetchone()
    raw.execute("UPDATE keys SET ciphertext = ? WHERE id = ?",
                (bytes([ct[0] ^ 1]) + ct[1:], keys[1][0]))
    raw.commit()
    raw.close()
    with pytest.raises(KeyCorrupted, match="AES-GCM authentication failed") as info:
        store.material(keys[1][0])
    assert keys[1][1].hex() not in str(info.value)
    assert store.material(keys[0][0]) == keys[0][1]  # nothing else lost
    assert store.material(keys[2][0]) == keys[2][1]


def test_swapped_ciphertexts_detected(tmp_path, store):
    bid = str(uuid.uuid4())
    keys = _keys(2)
    store.add_batch(bid, keys, link_id="l", peer_id="p", role=PARTICIPANT, status=COMMITTED)
    raw = sqlite3.connect(tmp_path / "keys.db")
    rows = raw.execute("SELECT id, nonce, ciphertext FROM keys ORDER BY rowid").fetchall()
    raw.execute("UPDATE keys SET nonce = ?, ciphertext = ? WHERE id = ?",
                (*rows[1][1:], rows[0][0]))
    raw.commit()
    raw.close()
    with pytest.raises(KeyCorrupted):
        store.material(keys[0][0])


def test_metadata_access_without_device_key(tmp_path, store):
    store.add_batch(str(uuid.uuid4()), _keys(2), link_id="l", peer_id="p", role=PARTICIPANT)
    with KeyStore.open(tmp_path / "keys.db") as ro:
        assert len(ro.list_keys()) == 2 and len(ro.list_keys(PENDING)) == 2
        with pytest.raises(KeyStoreError, match="needs the device key"):
            ro.material(ro.list_keys()[0].key_id)


def test_bad_sizes_rejected(store):
    with pytest.raises(ValueError, match="bytes for"):
        store.add_batch(str(uuid.uuid4()), [(str(uuid.uuid4()), b"\x00" * 32, 300)],
                        link_id="l", peer_id="p", role=PARTICIPANT)


# -- two-step commit over the authenticated channel -----------------------------------------

@pytest.fixture
def link(tmp_path):
    pa, pb = make_pool_pair(tmp_path, n_keys=512)
    for end in ("a", "b"):
        create_device_key(tmp_path / f"{end}.key")
        KeyStore.create(tmp_path / f"{end}.db", tmp_path / f"{end}.key").close()
    return tmp_path, pa, pb




def _materials(n, seed):
    return [hashlib.sha256(f"{seed}-{i}".encode()).digest() for i in range(n)]


def test_two_end_commit(link):
    d, pa, pb = link
    mats = _materials(5, "x")

    async def alice(ch: Channel):
        with open_store(d, "a") as s:
            await recover_coordinator(ch, s)
            ids = await commit_keys(ch, s, mats, link_id="L1", peer_id="bob")
        await ch.close()
        return ids

    async def bob(ch: Channel):
        with open_store(d, "b") as s:
            await recover_participant(ch, s)
            return await accept_commit(ch, s, mats, link_id="L1", peer_id="alice")

    ids_a, ids_b = run(pa, pb, alice, bob)
    assert ids_a == ids_b and len(ids_a) == 5
    with open_store(d, "a") as sa, open_store(d, "b") as sb:
        for i, key_id in enumerate(ids_a):
            assert sa.record(key_id).state == sb.record(key_id).state == READY
            assert sa.material(key_id) == sb.material(key_id) == mats[i]
        assert sb.record(ids_a[0]).peer_id == "alice"
        assert sa.deliver(ids_a[0]) == mats[0]  # peer acknowledged: deliverable


def test_mismatched_material_refused_at_both_ends(link):
    d, pa, pb = link
    mats = _materials(4, "x")
    other = [*mats[:3], bytes(32)]

    async def alice(ch):
        with open_store(d, "a") as s:
            return await commit_keys(ch, s, mats, link_id="L1", peer_id="bob")

    async def bob(ch):
        with open_store(d, "b") as s:
            return await accept_commit(ch, s, other, link_id="L1", peer_id="alice")

    a, b = run(pa, pb, alice, bob, errors=(CommitError,))
    assert isinstance(a, CommitError) and "key material differs" in str(a)
    assert isinstance(b, CommitError)
    with open_store(d, "a") as sa, open_store(d, "b") as sb:
        assert [r.state for r in sa.list_keys()] == [ERASED] * 4
        assert sb.list_keys() == []


def test_forged_commit_message_then_recovery(link, caplog):
    """A forged KEY_COMMIT aborts the session; both ends keep the batch pending (nothing
    lost), and the next session's recovery commits it at both ends."""
    d, pa, pb = link
    mats = _materials(3, "y")

    async def alice(ch: Channel):
        with open_store(d, "a") as s:
            orig = ch.send

            async def forging_send(msg_type, fields=None, *, app_keys=0):
                if msg_type.name == "KEY_COMMIT":  # attacker flips a bit on the wire
                    frame = bytearray(b"".join(ch._seal(msg_type, fields, app_keys)))
                    frame[22] ^= 1
                    ch._writer.write(bytes(frame))
                    await ch._writer.drain()
                    return
                await orig(msg_type, fields, app_keys=app_keys)

            ch.send = forging_send
            return await commit_keys(ch, s, mats, link_id="L1", peer_id="bob")

    async def bob(ch):
        with open_store(d, "b") as s:
            return await accept_commit(ch, s, mats, link_id="L1", peer_id="alice")

    a, b = run(pa, pb, alice, bob, alice_kw={"timeout": 1.0})
    assert isinstance(b, ChannelError) and "authentication failed" in str(b)
    assert isinstance(a, ChannelError)
    with open_store(d, "a") as sa, open_store(d, "b") as sb:
        (bid,) = sa.batches()
        assert sa.batch_status(bid) == COMMITTED and not sa.batch(bid).peer_acked
        assert sb.batch_status(bid) == PREPARED

    async def alice2(ch):
        with open_store(d, "a") as s:
            rep = await recover_coordinator(ch, s)
        await ch.close()
        return rep

    async def bob2(ch):
        with open_store(d, "b") as s:
            return await recover_participant(ch, s)

    rep_a, rep_b = run(pa, pb, alice2, bob2)
    assert rep_a.committed == rep_b.committed == [bid]
    with open_store(d, "a") as sa, open_store(d, "b") as sb:
        assert sa.batch(bid).peer_acked and sb.batch_status(bid) == COMMITTED
        for r in sa.batch_keys(bid):
            assert sa.material(r.key_id) == sb.material(r.key_id)


@pytest.mark.parametrize("a_status, b_status, outcome", [
    (PREPARED, None, ABORTED),
    (PREPARED, PREPARED, COMMITTED),
    (COMMITTED, PREPARED, COMMITTED),
    (ABORTED, PREPARED, ABORTED),
    (COMMITTED, COMMITTED, COMMITTED),
])
def test_recovery_table(link, a_status, b_status, outcome):
    d, pa, pb = link
    bid = str(uuid.uuid4())
    keys = _keys(2)
    with open_store(d, "a") as sa, open_store(d, "b") as sb:
        sa.add_batch(bid, keys, link_id="L", peer_id="bob", role=COORDINATOR)
        if a_status == COMMITTED:
            sa.commit_batch(bid)
        elif a_status == ABORTED:
            sa.abort_batch(bid)
        if b_status is not None:
            sb.add_batch(bid, keys, link_id="L", peer_id="alice", role=PARTICIPANT)
            if b_status == COMMITTED:
                sb.commit_batch(bid)

    recover_both(d, pa, pb)
    with open_store(d, "a") as sa, open_store(d, "b") as sb:
        assert sa.batch_status(bid) == outcome
        assert sb.batch_status(bid) in ((outcome,) if b_status else (None,))
        assert sa.batches(PREPARED) == sb.batches(PREPARED) == []



def test_authentication_batch_refills_both_pools_identically(link):
    """purpose=AUTH batches go into the key pool at both ends, in the same order, once."""
    d, pa, pb = link
    mats = [os.urandom(64) for _ in range(3)]  # 3 keys of 2 one-time keys each

    async def alice(ch):
        with open_store(d, "a") as s:
            ids = await commit_keys(ch, s, mats, link_id="L1", peer_id="bob", purpose=AUTH)
        await ch.close()
        return ids

    async def bob(ch):
        with open_store(d, "b") as s:
            return await accept_commit(ch, s, mats, link_id="L1", peer_id="alice",
                                       purpose=AUTH)

    ids, _ = run(pa, pb, alice, bob)
    with open_store(d, "a") as sa, open_store(d, "b") as sb, KeyPool.open(pa) as pool_a, \
            KeyPool.open(pb) as pool_b:
        with pytest.raises(InvalidState, match="reserved for channel authentication"):
            sa.deliver(ids[0])
        # Crash simulation at Bob: the first key reached the pool, its erasure did not.
        pool_b.refill(sb.material(ids[0]), source=ids[0])
        assert refill_pool(pool_a, sa) == 6
        assert refill_pool(pool_b, sb) == 4  # the first key is not appended twice
        assert refill_pool(pool_a, sa) == refill_pool(pool_b, sb) == 0
        assert {r.state for r in sa.list_keys() + sb.list_keys()} == {DELIVERED}
        total = pool_a.total_slots
        assert total == pool_b.total_slots == 512 + 6
        # Alice's frames that use refilled slots verify with Bob's keys.
        first_refill_seq = 256  # slots 512.. belong to frame 256.. of each direction
        pool_a._send_next = pool_a._send_reserved = first_refill_seq
        pool_a._reserved.clear()
        seq, keys = pool_a.take_send(3)
        assert keys == pool_b.recv_keys(seq, 3)
        assert keys[0] == mats[0][:32] and keys[1] == mats[1][:32]  # slots 512, 514


def test_refill_waits_for_settled_batches(link):
    d, pa, _ = link
    with open_store(d, "a") as sa, KeyPool.open(pa) as pool:
        first, second = str(uuid.uuid4()), str(uuid.uuid4())
        sa.add_batch(first, _keys(1), link_id="L", peer_id="bob", role=COORDINATOR,
                     purpose=AUTH)
        sa.add_batch(second, _keys(1), link_id="L", peer_id="bob", role=COORDINATOR,
                     purpose=AUTH, status=COMMITTED)
        sa.mark_peer_acked([second])
        assert refill_pool(pool, sa) == 0  # `first` still prepared: nothing may overtake it
        sa.commit_batch(first)
        assert refill_pool(pool, sa) == 0  # committed but Bob's ack not yet recorded
        sa.mark_peer_acked([first])
        assert refill_pool(pool, sa) == 2
