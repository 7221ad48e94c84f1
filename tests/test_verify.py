"""Verification hash: determinism, error detection, collision statistics, key dependence."""

from __future__ import annotations

import os

import numpy as np
import pytest

from reconcile import verify


def _frame(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, n).astype(np.uint8)


def _key(seed: int) -> bytes:
    return np.random.default_rng(seed).bytes(verify.KEY_BYTES)


def _poly_all_keys(bits: np.ndarray, q: int) -> np.ndarray:
    """Independent evaluation of the hash for every key k in GF(p), vectorised over k."""
    p = (1 << q) - 1
    w = q - 1
    nblk = -(-bits.size // w)
    padded = np.zeros(nblk * w, np.int64)
    padded[: bits.size] = bits
    msg = [bits.size] + [int("".join(map(str, blk)), 2) for blk in padded.reshape(-1, w)]
    k = np.arange(p, dtype=np.int64)
    h = np.zeros(p, np.int64)
    for m in msg:
        h = (h * k + m) % p
    return h


def test_equal_frames_equal_tags_and_verify() -> None:
    a = _frame(100_003, 1)
    key = _key(2)
    t = verify.tag(key, a)
    assert len(t) == 8
    assert verify.tag(key, a.copy()) == t
    assert verify.tag(key, a.astype(bool)) == t
    assert verify.verify(key, a, t)


def test_every_single_bit_change_is_detected() -> None:
    a = _frame(3000, 3)
    key = _key(4)
    t = verify.tag(key, a)
    for i in range(a.size):
        b = a.copy()
        b[i] ^= 1
        assert not verify.verify(key, b, t)


def test_length_is_bound_into_the_tag() -> None:
    a = _frame(600, 5)
    key = _key(6)
    # trailing zeros share the padded blocks but not the length block
    assert verify.tag(key, a) != verify.tag(key, np.concatenate([a, [0]]).astype(np.uint8))


def test_tag_changes_with_the_key() -> None:
    a = _frame(10_000, 7)
    tags = {verify.tag(os.urandom(verify.KEY_BYTES), a) for _ in range(200)}
    assert len(tags) == 200


def test_matches_independent_polynomial_evaluation() -> None:
    q = 13
    bits = _frame(100, 8)
    ref = _poly_all_keys(bits, q)
    for k in (0, 1, 2, 4095, 8190, 1234):
        key = int(k).to_bytes(verify.KEY_BYTES, "big")
        assert int.from_bytes(verify.tag(key, bits, q), "big") == ref[k]


def test_collisions_on_a_small_field() -> None:
    """q = 13 (p = 8191): for each pair of distinct equal-length frames the number of keys
    that collide is at most L_d - 1 (roots of the difference polynomial), and over random
    pairs the collision rate is near 1/p and below the documented bound."""
    q, n = 13, 96  # 8 data blocks of 12 bits
    p = (1 << q) - 1
    rng = np.random.default_rng(9)
    l_data = -(-n // (q - 1))
    counts = []
    for _ in range(300):
        a = rng.integers(0, 2, n).astype(np.uint8)
        b = a.copy()
        flips = rng.choice(n, size=rng.integers(1, 6), replace=False)
        b[flips] ^= 1
        c = int(np.count_nonzero(_poly_all_keys(a, q) == _poly_all_keys(b, q)))
        assert c <= l_data - 1
        counts.append(c)
    rate = np.mean(counts) / p
    assert rate <= verify.collision_bound(n, q)
    # a random polynomial has on average about one root: rate ~ 1/p, far from 0 and the bound
    assert 0.5 / p < rate < 2.0 / p


def test_collision_bound_values() -> None:
    assert verify.collision_bound(10**6) == pytest.approx(16667 / (2**61 - 1) + 8 / 2**64)
    assert verify.collision_bound(10**6) < 1e-14


def test_forced_wrong_decodes_are_caught() -> None:
    bob = _frame(200_000, 10)
    rng = np.random.default_rng(11)
    for trial in range(50):
        key = _key(100 + trial)
        alice = bob.copy()
        if trial % 2:  # a burst, like a decoder stuck on a wrong codeword neighbourhood
            start = int(rng.integers(0, bob.size - 64))
            alice[start : start + 64] ^= rng.integers(0, 2, 64).astype(np.uint8) | (
                np.arange(64) == 0
            ).astype(np.uint8)
        else:  # scattered errors
            alice[rng.choice(bob.size, size=int(rng.integers(1, 500)), replace=False)] ^= 1
        assert not verify.verify(key, alice, verify.tag(key, bob))


def test_bad_input_is_rejected_without_echoing_the_key() -> None:
    secret = b"\x13\x37" * 8
    with pytest.raises(ValueError, match="8 bytes") as exc:
        verify.tag(secret, _frame(10, 0))
    assert secret.hex() not in str(exc.value)
    with pytest.raises(ValueError, match="bits 0 and 1"):
        verify.tag(_key(0), np.array([0, 2, 1], np.uint8))
    with pytest.raises(ValueError, match="exponent"):
        verify.tag(_key(0), _frame(10, 0), q=64)
