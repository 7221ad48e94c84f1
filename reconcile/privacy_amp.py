"""Privacy amplification by Toeplitz hashing over GF(2) (C kernel `reconcile._pa`).

Families (both 2-universal: Pr_seed[h(x) = h(x')] <= 2^-m for x != x'):
- "toeplitz": y = T x, T the m x n Toeplitz matrix T[i][j] = s[i - j + n - 1] from a uniform
  seed s of n + m - 1 bits (Carter and Wegman, JCSS 18, 143 (1979); Krawczyk, CRYPTO 1994).
- "modified-toeplitz": y = (T' | I_m) x = T' x[:n-m] xor x[n-m:], T' the m x (n - m) Toeplitz
  matrix of the same form from n - 1 seed bits (Hayashi and Tsurumaru, IEEE TIT 62, 2213
  (2016)). The default: m fewer seed bits and m fewer columns to multiply.

Bit convention (both ends must use it): a bit vector of length L is a numpy uint8 array of 0/1
values, or packed bytes with bit j in bit (j % 8) of byte j // 8, least significant bit first
(`np.packbits(bits, bitorder="little")`); padding bits of the last byte are ignored on input
and zero on output. The product is computed exactly (carry-less arithmetic), so both ends get
identical output for identical key and seed. The seed is public but must be uniform: draw it
with `new_seed` (os.urandom) on one end and send it to the other.

Key material never enters an exception message. The C call releases the GIL and keeps no
state, so several hashes may run in threads at once.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np

try:
    from reconcile._pa import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on the build
    raise ImportError(
        "reconcile._pa is not built: run `make ext` or `.venv/bin/python c_ext/build_pa.py`"
    ) from exc

Family = Literal["toeplitz", "modified-toeplitz"]
Kernel = Literal["auto", "portable", "pclmul", "vpclmul", "pmull"]

BIT_ORDER = "little"
FAMILIES: tuple[str, ...] = ("toeplitz", "modified-toeplitz")
KERNELS: dict[str, int] = {"auto": 0, "portable": 1, "pclmul": 2, "vpclmul": 3, "pmull": 4}

_ERRORS = {-1: "invalid sizes or kernel", -2: "out of memory"}


def available_kernels() -> tuple[str, ...]:
    """Kernels this CPU can run ("auto" picks the fastest of them)."""
    return tuple(name for name, code in KERNELS.items() if lib.pa_impl_available(code))


def seed_length(n: int, m: int, family: Family = "modified-toeplitz") -> int:
    """Seed bits the family needs to hash n bits to m bits."""
    _check_sizes(n, m, family)
    return n + m - 1 if family == "toeplitz" else n - 1


def new_seed(n: int, m: int, family: Family = "modified-toeplitz") -> bytes:
    """A uniform seed from the OS CSPRNG, packed (little bit order), padding bits zero."""
    nbits = seed_length(n, m, family)
    seed = bytearray(os.urandom((nbits + 7) // 8))
    if nbits % 8:
        seed[-1] &= (1 << (nbits % 8)) - 1
    return bytes(seed)


def pack_bits(bits: np.ndarray) -> bytes:
    """uint8/bool 0/1 vector -> packed bytes (little bit order)."""
    return np.packbits(_bit_vector("bits", bits), bitorder=BIT_ORDER).tobytes()


def unpack_bits(data: bytes | bytearray | memoryview | np.ndarray, n: int) -> np.ndarray:
    """Packed bytes -> uint8 0/1 vector of the first n bits."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size * 8 < n:
        raise ValueError(f"{buf.size} bytes hold fewer than {n} bits")
    return np.unpackbits(buf, count=n, bitorder=BIT_ORDER)


def hash_packed(
    key: bytes | bytearray | memoryview | np.ndarray, n: int,
    seed: bytes | bytearray | memoryview | np.ndarray, m: int, *,
    family: Family = "modified-toeplitz", kernel: Kernel = "auto",
) -> bytes:
    """Hash the first n bits of `key` to m bits (packed in, packed out, ceil(m/8) bytes)."""
    _check_sizes(n, m, family)
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    key_buf = _byte_view("key", key, n)
    seed_buf = _byte_view("seed", seed, seed_length(n, m, family))
    if m == 0:
        return b""
    out = bytearray((m + 7) // 8)
    fn = lib.pa_toeplitz_hash if family == "toeplitz" else lib.pa_modified_toeplitz_hash
    seed_c = ffi.from_buffer(seed_buf) if seed_buf.size else ffi.new("uint8_t[1]")
    rc = fn(ffi.from_buffer(key_buf), n, seed_c, ffi.from_buffer(out), m, KERNELS[kernel], 0, 0)
    if rc != 0:
        raise ValueError(f"Toeplitz hash failed: {_ERRORS.get(rc, rc)} (kernel {kernel!r})")
    return bytes(out)


def hash_bits(
    key_bits: np.ndarray, seed_bits: np.ndarray, m: int, *,
    family: Family = "modified-toeplitz", kernel: Kernel = "auto",
) -> np.ndarray:
    """Hash a 0/1 key vector to an m-bit 0/1 vector (uint8) with a 0/1 seed vector."""
    key = _bit_vector("key_bits", key_bits)
    seed = _bit_vector("seed_bits", seed_bits)
    n = key.size
    need = seed_length(n, m, family)
    if seed.size != need:
        raise ValueError(f"seed_bits has {seed.size} bits, the {family} family needs {need}")
    out = hash_packed(np.packbits(key, bitorder=BIT_ORDER), n,
                      np.packbits(seed, bitorder=BIT_ORDER), m, family=family, kernel=kernel)
    return unpack_bits(out, m)


def scratch_bytes(n: int, m: int) -> int:
    """Heap bytes the C kernel allocates to hash n bits to m bits (its peak, beyond the caller's
    key, seed and output buffers)."""
    _check_sizes(n, m, "toeplitz")
    return int(lib.pa_scratch_bytes(n, max(m, 1), 0, 0))


def _check_sizes(n: int, m: int, family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    for name, v in (("n", n), ("m", m)):
        if not isinstance(v, int | np.integer) or isinstance(v, bool):
            raise ValueError(f"{name} must be an integer, got {type(v).__name__}")
    if n < 1:
        raise ValueError(f"input length n must be >= 1 bit, got {n}")
    if not 0 <= m <= n:
        raise ValueError(f"output length m must satisfy 0 <= m <= n = {n}, got {m}")


def _byte_view(name: str, data: object, nbits: int) -> np.ndarray:
    try:
        buf = np.frombuffer(data, dtype=np.uint8)  # type: ignore[call-overload]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a bytes-like object or uint8 array") from exc
    if isinstance(data, np.ndarray) and (data.dtype != np.uint8 or data.ndim != 1):
        raise ValueError(f"{name} must be a 1-D uint8 array of packed bits")
    if buf.size < (nbits + 7) // 8:
        raise ValueError(f"{name} has {buf.size} bytes, {nbits} bits need {(nbits + 7) // 8}")
    return buf


def _bit_vector(name: str, bits: np.ndarray) -> np.ndarray:
    arr = np.asarray(bits)
    if arr.ndim != 1 or arr.dtype not in (np.uint8, np.bool_):
        raise ValueError(f"{name} must be a 1-D uint8 or bool array of 0/1 values")
    arr = arr.view(np.uint8)
    if arr.size and arr.max() > 1:
        raise ValueError(f"{name} must hold only 0 and 1")
    return np.ascontiguousarray(arr)
