"""Verification of reconciled frames with a keyed polynomial hash modulo a Mersenne prime.

After decoding, Alice and Bob each hash their frame with the same fresh secret key from the key
pool and compare the tags over the authenticated channel; an undetected decoding error would
otherwise propagate into the final key.

Construction (polynomial evaluation hash, Carter-Wegman / Bierbrauer et al. style): with
p = 2^q - 1 (q = 61 by default, a Mersenne prime), the frame of n bits is cut into
L_d = ceil(n / (q - 1)) blocks of q - 1 bits (the last zero-padded), preceded by a block holding
n, so the message is m_0 = n, m_1 .. m_(L_d). The key k in GF(p) gives

    tag = sum_(i=0..L_d) m_i k^(L_d - i)  mod p       (Horner's rule)

Two different frames give a difference polynomial in k that is non-zero (every block is < p) of
degree at most L_d (at most L_d - 1 when the lengths are equal), so for a uniform k the
collision probability is at most L_d / p = (L - 1)/p with L = L_d + 1 blocks in all, i.e.
about (L - 1)/2^61. The key is 8 bytes reduced modulo p; with 2^64 = a p + r its distribution is
within r/2^64 (= 2^-61 for q = 61) of uniform, which adds to the bound
(`collision_bound`). A key must be used for one frame only. The tag reveals at most q bits
about the frame: subtract them in privacy amplification (t_verify).

Tags are compared with `hmac.compare_digest` (time independent of where the tags differ).
"""

from __future__ import annotations

import hmac
import math

import numpy as np

KEY_BYTES = 8
MERSENNE_EXPONENTS = (13, 17, 19, 31, 61)  # small ones are for statistical tests


def _modulus(q: int) -> int:
    if q not in MERSENNE_EXPONENTS:
        raise ValueError(f"hash exponent q must be one of {MERSENNE_EXPONENTS}, got {q}")
    return (1 << q) - 1


def _key_element(key: bytes, p: int) -> int:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
        raise ValueError(f"verification key must be {KEY_BYTES} bytes")
    return int.from_bytes(key, "big") % p


def _blocks(bits: np.ndarray, q: int) -> list[int]:
    b = np.asarray(bits)
    if b.ndim != 1:
        raise ValueError(f"frame must be a 1-D bit array, got shape {b.shape}")
    if b.size and (b.min() < 0 or b.max() > 1):
        raise ValueError("frame must contain only bits 0 and 1")
    w = q - 1
    padded = np.zeros(-(-b.size // w) * w, dtype=np.uint64)
    padded[: b.size] = b
    weights = np.left_shift(np.uint64(1), np.arange(w - 1, -1, -1, dtype=np.uint64))
    values = (padded.reshape(-1, w) * weights).sum(axis=1, dtype=np.uint64)
    return [b.size, *values.tolist()]


def tag(key: bytes, bits: np.ndarray, q: int = 61) -> bytes:
    """Tag (ceil(q/8) bytes, big-endian) of a frame of bits (uint8/bool 0/1) under `key`."""
    p = _modulus(q)
    k = _key_element(key, p)
    h = 0
    for m in _blocks(bits, q):
        h = (h * k + m) % p
    return h.to_bytes((q + 7) // 8, "big")


def verify(key: bytes, bits: np.ndarray, expected: bytes, q: int = 61) -> bool:
    """True if `bits` hashes to `expected` under `key` (constant-time comparison)."""
    return hmac.compare_digest(tag(key, bits, q), bytes(expected))


def collision_bound(n_bits: int, q: int = 61) -> float:
    """Upper bound on P(tag(a) == tag(b)) for distinct frames of at most n_bits bits."""
    p = _modulus(q)
    blocks = math.ceil(n_bits / (q - 1))  # L - 1: data blocks, the length block excluded
    r = (1 << 64) % p
    return blocks / p + r / 2.0**64
