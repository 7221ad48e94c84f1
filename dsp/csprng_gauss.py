"""Secret Gaussian symbols from a CSPRNG: ChaCha20 keystream -> 52-bit uniforms -> Box-Muller.

Alice's modulation values are secret, so they never come from numpy's default generator.
The keystream of ChaCha20 (RFC 8439 block function, via the `cryptography` package) keyed by a
32-byte key is read as little-endian uint64 words; the top 52 bits of each word give a uniform
u = (k + 1/2) / 2**52 in (0, 1), exactly representable in float64 (k + 1/2 needs 53 bits) and
never 0 or 1 (with 53 bits, k = 2**53 - 1 would round to u = 1). Pairs of
uniforms (u1, u2) become two independent standard normals by the Box-Muller transform
(Box & Muller, Ann. Math. Stat. 29, 610 (1958)):

    r = sqrt(-2 ln u1),  z1 = r cos(2 pi u2),  z2 = r sin(2 pi u2)

The transform is exact in exact arithmetic; in float64 its only departures are rounding
(relative 1e-16) and the tail cut at u1 >= 2**-53, i.e. |z| <= sqrt(2 * 53 ln 2) = 8.57 sigma
(probability of a larger normal deviate: 1e-17 per draw).
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

KEY_BYTES = 32
_BLOCK_WORDS = 1 << 17  # uint64 words per keystream request (1 MiB)


def chacha20_words(key: bytes, stream_id: int, n_words: int) -> np.ndarray:
    """`n_words` uint64 keystream words of ChaCha20(key, nonce = stream_id), counter from 0."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"ChaCha20 key must be {KEY_BYTES} bytes")
    if not 0 <= stream_id < 1 << 96:
        raise ValueError("stream_id must fit in the 96-bit ChaCha20 nonce")
    # cryptography's 16-byte nonce = 32-bit little-endian block counter || 96-bit nonce.
    nonce = (0).to_bytes(4, "little") + stream_id.to_bytes(12, "little")
    enc = Cipher(algorithms.ChaCha20(key, nonce), mode=None).encryptor()
    out = np.empty(n_words, dtype=np.uint64)
    for start in range(0, n_words, _BLOCK_WORDS):
        m = min(_BLOCK_WORDS, n_words - start)
        out[start:start + m] = np.frombuffer(enc.update(bytes(8 * m)), dtype="<u8")
    return out


def uniforms_52(words: np.ndarray) -> np.ndarray:
    """Uniform float64 in (0, 1) from the top 52 bits of each uint64 word: (k + 1/2) / 2**52."""
    k = (words >> np.uint64(12)).astype(np.float64)
    return (k + 0.5) * (1.0 / 4503599627370496.0)


def box_muller(u1: np.ndarray, u2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two independent N(0, 1) arrays from two independent uniform (0, 1) arrays."""
    r = np.sqrt(-2.0 * np.log(u1))
    phase = 2.0 * np.pi * u2
    return r * np.cos(phase), r * np.sin(phase)


def gaussian_symbols(key: bytes, stream_id: int, n: int, v_a: float) -> np.ndarray:
    """`n` complex Gaussian symbols, each quadrature N(0, v_a) (SNU), from ChaCha20(key)."""
    if n < 0 or not np.isfinite(v_a) or v_a < 0:
        raise ValueError("need n >= 0 and a finite modulation variance v_a >= 0 (SNU)")
    u = uniforms_52(chacha20_words(key, stream_id, 2 * n))
    z1, z2 = box_muller(u[0::2], u[1::2])
    scale = np.sqrt(v_a)
    return (scale * z1) + 1j * (scale * z2)
