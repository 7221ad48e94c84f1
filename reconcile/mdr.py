"""Multidimensional reconciliation (MDR) for d = 1, 2, 4, 8, reverse direction.

Leverrier, Alléaume, Boutros, Zémor, Grangier, "Multidimensional reconciliation for a
continuous-variable quantum key distribution", PRA 77, 042325 (2008).

The Gaussian data are cut into blocks of d reals and normalised, x' = x/|x|, y' = y/|y|.
Bob draws uniform bits c (d per block, from a CSPRNG), maps them to a point of the unit
hypercube-sphere u_i = (1 - 2 c_i)/sqrt(d) and publishes alpha = u * conj(y') (a product in
the reals, complex numbers, quaternions or octonions). Since alpha * y' = u, Alice's
v = alpha * x' is a noisy copy of u, and her LLRs go to a syndrome decoder.

Units: `x` is Alice's data scaled so that Bob's data is y = x + z with i.i.d. noise z of
variance `sigma2` per real dimension (for y = t x_A + z, pass x = t x_A). Any common unit
(SNU is the project's) works as long as x, y and sigma2 share it.
"""

from __future__ import annotations

import os

import numba as nb
import numpy as np

DIMENSIONS = (1, 2, 4, 8)

# Octonion product p = a * b (Cayley-Dickson, (a,b)(c,d) = (ac - conj(d) b, da + b conj(c))):
# p_k = sum_i _SIGN[k, i] a_i b_(k xor i). Indices 0..3 are the quaternions, 0..1 the complex
# numbers, so the same table serves d = 1, 2, 4, 8. Transcribed from the product table in
# Leverrier et al. (2008) (see docs/reconciliation.md); tests check it against an independent
# Cayley-Dickson recursion.
_SIGN = np.array(
    [
        [+1, -1, -1, -1, -1, -1, -1, -1],
        [+1, +1, +1, -1, +1, -1, -1, +1],
        [+1, -1, +1, +1, +1, +1, -1, -1],
        [+1, +1, -1, +1, +1, -1, +1, -1],
        [+1, -1, -1, -1, +1, +1, +1, +1],
        [+1, +1, -1, +1, -1, +1, -1, +1],
        [+1, +1, +1, -1, -1, +1, +1, -1],
        [+1, -1, +1, +1, -1, -1, +1, +1],
    ],
    dtype=np.float64,
)
_PARTNER = np.bitwise_xor.outer(np.arange(8), np.arange(8))


def _check_dim(d: int) -> None:
    if d not in DIMENSIONS:
        raise ValueError(f"MDR dimension must be one of {DIMENSIONS}, got {d}")


def multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Product of hypercomplex numbers stored along the last axis (length d in 1, 2, 4, 8)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = a.shape[-1]
    _check_dim(d)
    if b.shape[-1] != d:
        raise ValueError("operands must have the same dimension")
    if a.shape == b.shape:
        out = np.empty(a.shape, dtype=np.float64)
        _multiply_rows(np.ascontiguousarray(a).reshape(-1, d),
                       np.ascontiguousarray(b).reshape(-1, d), _SIGN, _PARTNER,
                       out.reshape(-1, d))
        return out
    out = np.zeros(np.broadcast_shapes(a.shape, b.shape), dtype=np.float64)
    for k in range(d):
        for i in range(d):
            out[..., k] += _SIGN[k, i] * a[..., i] * b[..., _PARTNER[k, i]]
    return out


@nb.njit(cache=True, nogil=True)
def _multiply_rows(a: np.ndarray, b: np.ndarray, sign: np.ndarray, partner: np.ndarray,
                   out: np.ndarray) -> None:
    """out[r] = a[r] * b[r] for rows of d components (the same sums, in the same order, as
    the broadcasting form in `multiply`)."""
    d = a.shape[1]
    for r in range(a.shape[0]):
        for k in range(d):
            acc = 0.0
            for i in range(d):
                acc += sign[k, i] * a[r, i] * b[r, partner[k, i]]
            out[r, k] = acc


def conj(a: np.ndarray) -> np.ndarray:
    """Conjugate: negate the imaginary components 1..d-1."""
    out = np.array(a, dtype=np.float64, copy=True)
    out[..., 1:] *= -1.0
    return out


def _blocks(v: np.ndarray, d: int, name: str) -> np.ndarray:
    _check_dim(d)
    v = np.asarray(v, dtype=np.float64)
    if v.ndim != 1 or v.size % d:
        raise ValueError(f"{name} must be 1-D with a length divisible by d={d}, got {v.shape}")
    return v.reshape(-1, d)


def random_bits(n: int) -> np.ndarray:
    """n uniform bits (uint8 0/1) from the operating system's CSPRNG."""
    if n < 0:
        raise ValueError("number of bits must be >= 0")
    raw = np.frombuffer(os.urandom((n + 7) // 8), dtype=np.uint8)
    return np.unpackbits(raw)[:n].copy()


def bits_to_points(bits: np.ndarray, d: int) -> np.ndarray:
    """u_i = (1 - 2 c_i)/sqrt(d): blocks of d bits onto the unit sphere, shape (N/d, d)."""
    c = np.asarray(bits, dtype=np.float64)
    return _blocks(1.0 - 2.0 * c, d, "bits") / np.sqrt(d)


def bob_encode(y: np.ndarray, bits: np.ndarray, d: int) -> tuple[np.ndarray, np.ndarray]:
    """Bob's public message for key bits `bits` (uint8, same length as `y`).

    Returns (alpha, norms): alpha = u * conj(y/|y|) flattened (float64, shape of y), and the
    block norms |y| (float64, one per block of d). Neither depends on the bits: alpha is
    uniform on the unit sphere for any u, and |y| is a function of y alone.
    """
    yb = _blocks(y, d, "y")
    if np.asarray(bits).shape != (yb.size,):
        raise ValueError(f"need one bit per sample: {yb.size} bits, got {np.shape(bits)}")
    norms = np.linalg.norm(yb, axis=1)
    if np.any(norms == 0.0):
        raise ValueError("a block of y is exactly zero; MDR needs non-zero blocks")
    alpha = multiply(bits_to_points(bits, d), conj(yb / norms[:, None]))
    return alpha.reshape(-1), norms


def alice_project(x: np.ndarray, alpha: np.ndarray, d: int) -> np.ndarray:
    """v = alpha * (x/|x|), Alice's noisy copy of u, flattened."""
    xb = _blocks(x, d, "x")
    ab = _blocks(alpha, d, "alpha")
    if ab.shape != xb.shape:
        raise ValueError("alpha and x must have the same length")
    xn = np.linalg.norm(xb, axis=1)
    if np.any(xn == 0.0):
        raise ValueError("a block of x is exactly zero; MDR needs non-zero blocks")
    return multiply(ab, xb / xn[:, None]).reshape(-1)


def alice_llr(
    x: np.ndarray,
    alpha: np.ndarray,
    norms: np.ndarray | None,
    d: int,
    sigma2: float,
) -> np.ndarray:
    """Alice's LLRs L_i = 2 |x| |y| v_i / (sqrt(d) sigma2), float32 (L > 0 means bit 0).

    `norms` are Bob's published |y|; with `None` Alice uses sqrt(d (E|x|^2/d + sigma2)), the
    root-mean-square of |y| (no norm message, slightly weaker LLRs).
    """
    if not sigma2 > 0:
        raise ValueError("sigma2 must be > 0")
    xb = _blocks(x, d, "x")
    xn = np.linalg.norm(xb, axis=1)
    v = alice_project(x, alpha, d).reshape(-1, d)
    if norms is None:
        yn = np.full(xn.shape, np.sqrt(np.mean(xn**2) + d * sigma2))
    else:
        yn = np.asarray(norms, dtype=np.float64)
        if yn.shape != xn.shape:
            raise ValueError(f"need one norm per block: {xn.size}, got {yn.shape}")
    scale = 2.0 * xn * yn / (np.sqrt(d) * sigma2)
    return (v * scale[:, None]).astype(np.float32).reshape(-1)


def llr_mutual_information(llr: np.ndarray) -> float:
    """Monte-Carlo estimate of I(C; L) in bits per bit, for true LLRs of uniform bits.

    With p = P(c = 0 | L) = 1/(1 + e^-L), I = 1 - E[h2(p)]; this form does not need the bits
    and has a much smaller variance than 1 - E[log2(1 + exp(-(1 - 2c) L))] at low SNR.
    """
    lv = np.asarray(llr, dtype=np.float64)
    p = 0.5 * (1.0 + np.tanh(lv / 2.0))
    h = (p * np.logaddexp(0.0, -lv) + (1.0 - p) * np.logaddexp(0.0, lv)) / np.log(2.0)
    return float(1.0 - np.mean(h))
