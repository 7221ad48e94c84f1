"""Standard normals for the model's simulation noise, drawn inside numba loops: SFC64 + ziggurat.

A capture needs two detector-noise normals per output sample (10^7 per 2^20-symbol frame);
numpy's `Generator.standard_normal` costs ~10 ns each on this machine and fills an array that
the render loop then reads back. Here the loop draws them itself (~2 ns each).

Generator: SFC64 ("small fast chaotic", C. Doty-Humphrey, PractRand 0.94; passes its and
TestU01's BigCrush batteries), a 256-bit state (a, b, c, counter):

    out = a + b + counter;  counter += 1;  a = b ^ (b >> 11);  b = c + (c << 3);
    c = rotl(c, 24) + out                                           (mod 2^64)

seeded as its author recommends: (a, b, c) from the seed, counter 1, 12 outputs discarded;
with a `numpy.random.SeedSequence` this is the stream of `numpy.random.SFC64` (tested). Not
cryptographic: simulation noise only, never key material.

Normals: the ziggurat method (G. Marsaglia and W. W. Tsang, "The ziggurat method for generating
random variables", J. Stat. Softw. 5(8), 2000). f(x) = exp(-x^2 / 2) on x >= 0 is covered by
256 layers of equal area v: the base [0, X0] x [0, f(r)] (the rectangle plus the tail beyond
X1 = r), and [0, X_i] x [f(X_i), f(X_i+1)] for i >= 1, X_i+1 = f^-1(f(X_i) + v / X_i), X_256 = 0.
A draw picks a layer i and x uniform on [0, X_i): x < X_i+1 lies under the curve (99 % of
draws); otherwise the base layer samples the tail (Marsaglia 1964: a = -ln(U1) / r,
b = -ln(U2) until 2 b > a^2, x = r + a) and the others accept x if a uniform height in the
wedge is below f(x), else start again. Each 32-bit word gives a draw: bits 0-7 the layer,
bit 8 the sign, bits 9-31 the position (23 bits, at X_i 2^-23 resolution): separate bits for
layer and position (reusing them correlates the two: J. Leong et al., J. Stat. Softw. 12(7),
2005).
"""

from __future__ import annotations

import math

import numba
import numpy as np

LAYERS = 256
ZIG_R = 3.6541528853610088  # X1 for 256 layers (Marsaglia & Tsang 2000, Table 1)
_POS_BITS = 23
_U64 = np.uint64


def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, W, F): layer edges X[0..256] (X[1] = r, X[256] = 0), W = X / 2^23 (x per position
    step), F = f(X)."""
    r = ZIG_R
    f_r = math.exp(-0.5 * r * r)
    v = r * f_r + math.sqrt(math.pi / 2.0) * math.erfc(r / math.sqrt(2.0))  # layer area
    x = np.empty(LAYERS + 1)
    x[0] = v / f_r
    x[1] = r
    for i in range(1, LAYERS - 1):
        x[i + 1] = math.sqrt(-2.0 * math.log(v / x[i] + math.exp(-0.5 * x[i] * x[i])))
    x[LAYERS] = 0.0
    return x, x / float(1 << _POS_BITS), np.exp(-0.5 * x * x)


ZIG_X, ZIG_W, ZIG_F = _tables()


def seed_state(seed: np.random.SeedSequence) -> np.ndarray:
    """A fresh SFC64 state (uint64 [a, b, c, counter]) from a seed sequence."""
    state = np.empty(4, np.uint64)
    state[:3] = seed.generate_state(3, np.uint64)
    state[3] = 1
    raw_u64(state, 12)
    return state


# The generator's state travels through the loops as four uint64 scalars (a, b, c, w) and the
# tables are compile-time constants: a state array written at every draw, or arrays passed to
# the per-draw functions (reference counting at each call), cost 10x (measured).


@numba.njit(cache=True, nogil=True)
def sfc64_next(a: np.uint64, b: np.uint64, c: np.uint64, w: np.uint64
               ) -> tuple[np.uint64, np.uint64, np.uint64, np.uint64, np.uint64]:
    """(output, next a, b, c, w) of SFC64 (arithmetic mod 2^64)."""
    out = a + b + w
    return (out, b ^ (b >> _U64(11)), c + (c << _U64(3)),
            ((c << _U64(24)) | (c >> _U64(40))) + out, w + _U64(1))


@numba.njit(cache=True, nogil=True)
def _uniform_open(a: np.uint64, b: np.uint64, c: np.uint64, w: np.uint64
                  ) -> tuple[float, np.uint64, np.uint64, np.uint64, np.uint64]:
    """(uniform on (0, 1), next state): (k + 1/2) 2^-53 from the top 53 bits of an output."""
    out, a, b, c, w = sfc64_next(a, b, c, w)
    return (float(np.int64(out >> _U64(11))) + 0.5) * (1.0 / 9007199254740992.0), a, b, c, w


@numba.njit(cache=True, nogil=True)
def _normal_slow(layer: int, x: float, a: np.uint64, b: np.uint64, c: np.uint64, w: np.uint64
                 ) -> tuple[float, np.uint64, np.uint64, np.uint64, np.uint64]:
    """A draw that fell outside its layer's core (x >= X[layer + 1], x >= 0): the tail or the
    wedge test, drawing again until one is accepted. Returns (|normal|, next state)."""
    while True:
        if layer == 0:  # tail beyond r (Marsaglia 1964)
            while True:
                u1, a, b, c, w = _uniform_open(a, b, c, w)
                u2, a, b, c, w = _uniform_open(a, b, c, w)
                t = -math.log(u1) / ZIG_R
                if -2.0 * math.log(u2) > t * t:
                    return ZIG_R + t, a, b, c, w
        u, a, b, c, w = _uniform_open(a, b, c, w)
        if ZIG_F[layer] + u * (ZIG_F[layer + 1] - ZIG_F[layer]) < math.exp(-0.5 * x * x):
            return x, a, b, c, w
        word, a, b, c, w = sfc64_next(a, b, c, w)  # rejected: a new draw (its sign unused)
        layer = np.int64(word & _U64(LAYERS - 1))
        x = float(np.int64((word >> _U64(9)) & _U64((1 << _POS_BITS) - 1))) * ZIG_W[layer]
        if x < ZIG_X[layer + 1]:
            return x, a, b, c, w


@numba.njit(cache=True, nogil=True)
def normal_from_word(word: np.uint64, a: np.uint64, b: np.uint64, c: np.uint64, w: np.uint64
                     ) -> tuple[float, np.uint64, np.uint64, np.uint64, np.uint64]:
    """(standard normal, next state) from the low 32 bits of `word`, drawing more from the
    state (a, b, c, w) only when the word lands outside its layer's core."""
    layer = np.int64(word & _U64(LAYERS - 1))
    x = float(np.int64((word >> _U64(9)) & _U64((1 << _POS_BITS) - 1))) * ZIG_W[layer]
    if x >= ZIG_X[layer + 1]:
        x, a, b, c, w = _normal_slow(layer, x, a, b, c, w)
    return (-x if (word >> _U64(8)) & _U64(1) else x), a, b, c, w


@numba.njit(cache=True, nogil=True)
def _fill(state: np.ndarray, out: np.ndarray, pairs: bool) -> None:
    """out[k] = normals; pairs: two per output (low half, high half), else one (low half)."""
    a, b, c, w = state[0], state[1], state[2], state[3]
    k = 0
    n = out.shape[0]
    while k < n:
        word, a, b, c, w = sfc64_next(a, b, c, w)
        out[k], a, b, c, w = normal_from_word(word, a, b, c, w)
        if pairs and k + 1 < n:
            out[k + 1], a, b, c, w = normal_from_word(word >> _U64(32), a, b, c, w)
            k += 1
        k += 1
    state[0] = a
    state[1] = b
    state[2] = c
    state[3] = w


def standard_normal(state: np.ndarray, n: int, pairs: bool = True) -> np.ndarray:
    """n float64 standard normals from `state` (advanced in place): two per SFC64 output
    (low 32 bits, then high) with `pairs`, else one (low 32 bits)."""
    out = np.empty(n, np.float64)
    _fill(state, out, pairs)
    return out


@numba.njit(cache=True, nogil=True)
def _raw(state: np.ndarray, out: np.ndarray) -> None:
    a, b, c, w = state[0], state[1], state[2], state[3]
    for k in range(out.shape[0]):
        out[k], a, b, c, w = sfc64_next(a, b, c, w)
    state[0] = a
    state[1] = b
    state[2] = c
    state[3] = w


def raw_u64(state: np.ndarray, n: int) -> np.ndarray:
    """n raw SFC64 outputs (uint64) from `state` (advanced in place)."""
    out = np.empty(n, np.uint64)
    _raw(state, out)
    return out
