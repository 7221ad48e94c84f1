"""Pre-shared key files and the one-time Poly1305 key pool."""

from __future__ import annotations

import os
import stat

import pytest
from channel_util import make_pool_pair
from cryptography.hazmat.primitives.poly1305 import Poly1305

from controller.auth import KEY_BITS, KeyPool, PoolExhausted, Role, mac_tag, mac_verify
from controller.psk import create_psk_file, create_secret_file, read_psk_file


def test_psk_file_mode_atomic_and_no_overwrite(tmp_path):
    old = os.umask(0)
    try:
        psk_id = create_psk_file(tmp_path / "a.psk", 10)
    finally:
        os.umask(old)
    st_ = os.stat(tmp_path / "a.psk")
    assert stat.S_IMODE(st_.st_mode) == 0o600
    assert st_.st_size == 8 + 16 + 10 * 32
    assert read_psk_file(tmp_path / "a.psk")[0] == psk_id
    before = (tmp_path / "a.psk").read_bytes()
    with pytest.raises(ValueError, match="refusing to overwrite"):
        create_psk_file(tmp_path / "a.psk", 10)
    assert (tmp_path / "a.psk").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.psk"]  # no temporary left behind


def test_psk_file_refused_when_readable_by_others_or_truncated(tmp_path):
    create_psk_file(tmp_path / "a.psk", 4)
    (tmp_path / "a.psk").chmod(0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        read_psk_file(tmp_path / "a.psk")
    create_secret_file(tmp_path / "b.psk", (tmp_path / "a.psk").read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_psk_file(tmp_path / "b.psk")
    with pytest.raises(ValueError, match="not found"):
        read_psk_file(tmp_path / "missing.psk")


def test_pool_creation_wipes_psk_and_is_private(tmp_path):
    create_psk_file(tmp_path / "a.psk", 8)
    pool = KeyPool.create(tmp_path / "pool.db", tmp_path / "a.psk", Role.ALICE)
    assert not (tmp_path / "a.psk").exists()
    assert stat.S_IMODE(os.stat(tmp_path / "pool.db").st_mode) == 0o600
    assert pool.stats().total_bits == 8 * KEY_BITS
    pool.close()
    with pytest.raises(FileExistsError):
        create_psk_file(tmp_path / "b.psk", 8)
        KeyPool.create(tmp_path / "pool.db", tmp_path / "b.psk", Role.BOB)


def test_mac_matches_poly1305_one_shot():
    key, msg = os.urandom(32), os.urandom(100)
    tag = mac_tag(key, msg[:30], msg[30:])
    assert tag == Poly1305.generate_tag(key, msg)
    assert mac_verify(key, tag, msg)
    assert not mac_verify(key, tag, msg[:-1] + bytes([msg[-1] ^ 1]))


def test_both_ends_derive_the_same_keys_per_direction(tmp_path):
    pa, pb = make_pool_pair(tmp_path, n_keys=64)
    with KeyPool.open(pa) as alice, KeyPool.open(pb) as bob:
        seq_a, keys_a = alice.take_send(3)
        seq_b, keys_b = bob.take_send(2)
        assert (seq_a, seq_b) == (0, 0)
        assert bob.recv_keys(0, 3) == keys_a
        assert alice.recv_keys(0, 2) == keys_b
        assert not set(keys_a) & set(keys_b)  # direction-separated streams


def test_no_key_reuse_across_restarts(tmp_path):
    pa, _ = make_pool_pair(tmp_path, n_keys=200)
    seen: set[bytes] = set()
    for _ in range(5):  # each "restart" burns the reserved rest, never reissues
        pool = KeyPool.open(pa, reserve=16)
        _seq, keys = pool.take_send(3)
        assert not seen & set(keys)
        seen |= set(keys)
        pool._conn.close()  # simulated crash: no flush, no clean close
    pool = KeyPool.open(pa)
    assert pool.send_next == 5 * 16  # every reserved batch counted as used
    assert pool.stats().used_bits == 5 * 16 * KEY_BITS
    pool.close()


def test_exhaustion_and_refill(tmp_path):
    pa, pb = make_pool_pair(tmp_path, n_keys=8)  # 4 keys per direction
    with KeyPool.open(pa, reserve=1) as alice, KeyPool.open(pb) as bob:
        alice.take_send(4)
        with pytest.raises(PoolExhausted, match="refill"):
            alice.take_send(1)
        material = os.urandom(64 * 32)
        assert alice.refill(material, "key-1") == 64
        assert alice.refill(material, "key-1") == 0  # idempotent per source
        with pytest.raises(ValueError, match="another size"):
            alice.refill(material[:32], "key-1")
        with pytest.raises(ValueError, match="multiple of 32"):
            alice.refill(b"x" * 33, "key-2")
        bob.refill(material, "key-1")
        seq, keys = alice.take_send(2)
        assert seq == 4 and bob.recv_keys(4, 2) == keys
        assert keys[0] == material[0:32]  # slot 8 = refill slot 0 (direction 0)
        st = alice.stats()
        assert st.total_bits == 72 * KEY_BITS and st.refilled_bits == 64 * KEY_BITS
        assert st.send_available_bits == (36 - 6) * KEY_BITS  # 72 slots, half per direction


def test_receive_counter_persisted_and_material_deleted(tmp_path):
    _pa, pb = make_pool_pair(tmp_path, n_keys=16)
    with KeyPool.open(pb, recv_flush=1000) as bob:
        bob.recv_keys(0, 2)
        bob.accept_recv(2)
    with KeyPool.open(pb) as bob:
        assert bob.recv_next == 2
        with pytest.raises(Exception, match="already consumed"):
            bob.recv_keys(1, 1)
        n = bob._conn.execute("SELECT COUNT(*) FROM slots WHERE idx IN (0, 2)").fetchone()[0]
        assert n == 0
