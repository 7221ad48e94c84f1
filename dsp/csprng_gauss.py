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


def _keystream(key: bytes, stream_id: int):
    """The ChaCha20(key, nonce = stream_id) encryptor, block counter from 0: `update(zeros)`
    returns the keystream, continuing from one call to the next."""
    if len(key) != KEY_BYTES:
        raise ValueError(f"ChaCha20 key must be {KEY_BYTES} bytes")
    if not 0 <= stream_id < 1 << 96:
        raise ValueError("stream_id must fit in the 96-bit ChaCha20 nonce")
    # cryptography's 16-byte nonce = 32-bit little-endian block counter || 96-bit nonce.
    nonce = (0).to_bytes(4, "little") + stream_id.to_bytes(12, "little")
    return Cipher(algorithms.ChaCha20(key, nonce), mode=None).encryptor()


def chacha20_words(key: bytes, stream_id: int, n_words: int) -> np.ndarray:
    """`n_words` uint64 keystream words of ChaCha20(key, nonce = stream_id), counter from 0."""
    enc = _keystream(key, stream_id)
    out = np.empty(n_words, dtype=np.uint64)
    for start in range(0, n_words, _BLOCK_WORDS):
        m = min(_BLOCK_WORDS, n_words - start)
        out[start:start + m] = np.frombuffer(enc.update(bytes(8 * m)), dtype="<u8")
    return out


def uniforms_52(words: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Uniform float64 in (0, 1) from the top 52 bits of each uint64 word: (k + 1/2) / 2**52
    (every step exact). `out`: a float64 array of the same length to write into."""
    if out is None:
        out = np.empty(words.shape, np.float64)
    out[...] = words >> np.uint64(12)
    out += 0.5
    out *= 1.0 / 4503599627370496.0
    return out


def box_muller(u1: np.ndarray, u2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two independent N(0, 1) arrays from two independent uniform (0, 1) arrays."""
    r = np.sqrt(-2.0 * np.log(u1))
    phase = 2.0 * np.pi * u2
    return r * np.cos(phase), r * np.sin(phase)


_CHUNK_SYMBOLS = 1 << 13  # symbols per pass of gaussian_symbols (its buffers stay in cache)


def gaussian_symbols(key: bytes, stream_id: int, n: int, v_a: float) -> np.ndarray:
    """`n` complex Gaussian symbols, each quadrature N(0, v_a) (SNU), from ChaCha20(key).

    Symbol i is sqrt(v_a) (z1 + j z2) from the uniforms of keystream words 2i, 2i + 1
    (`box_muller`). Computed a chunk at a time with numpy's own ufuncs applied to the same
    memory layout as the whole-array form (the first uniform of each pair read with a stride
    of two words): the same functions on the same values, so bit-identical to it, without its
    tens of MB of temporaries.
    """
    if n < 0 or not np.isfinite(v_a) or v_a < 0:
        raise ValueError("need n >= 0 and a finite modulation variance v_a >= 0 (SNU)")
    enc = _keystream(key, stream_id)
    out = np.empty(n, np.complex128)
    scale = np.sqrt(v_a)
    c = max(1, min(_CHUNK_SYMBOLS, n))
    u = np.empty(2 * c)
    r = np.empty(c)
    phase = np.empty(c)
    z = np.empty(c)
    for start in range(0, n, c):
        m = min(c, n - start)
        uniforms_52(np.frombuffer(enc.update(bytes(16 * m)), dtype="<u8"), u[:2 * m])
        u1, u2 = u[0:2 * m:2], u[1:2 * m:2]
        rm, pm, zm = r[:m], phase[:m], z[:m]
        np.log(u1, out=rm)  # r = sqrt(-2 ln u1)
        np.multiply(-2.0, rm, out=rm)
        np.sqrt(rm, out=rm)
        np.multiply(2.0 * np.pi, u2, out=pm)
        np.cos(pm, out=zm)  # z1 = r cos(2 pi u2)
        np.multiply(rm, zm, out=zm)
        np.multiply(scale, zm, out=out.real[start:start + m])
        np.sin(pm, out=zm)  # z2 = r sin(2 pi u2)
        np.multiply(rm, zm, out=zm)
        np.multiply(scale, zm, out=out.imag[start:start + m])
    return out
