"""Slice (multilevel) reverse reconciliation for high SNR, with multistage decoding.

Van Assche, Cardinal, Cerf, "Reconciliation of a quantum-distributed Gaussian key",
IEEE TIT 50, 394 (2004) (sliced error correction); Bloch, Thangaraj, McLaughlin, Merolla,
"LDPC-based Gaussian key reconciliation", ITW 2006 (multilevel coding, multistage decoding);
Jouguet, Kunz-Jacques, Leverrier, PRA 84, 062317 (2011) (slices vs. MDR across SNR).

Per real dimension Bob quantises his y into 2^q intervals (`boundaries`, equiprobable by
default) and labels the interval index j in natural binary; slice i (0-based) is bit i of j,
slice 0 the least significant and noisiest. Slices whose conditional capacity is too small to
code are disclosed (Bob sends the bits), the others are coded: Bob sends the syndrome of each
slice word under a 5G NR BG1 code cut to the slice's rate (`nr5g_slice_code`). Alice decodes
the slices in order, each with the exact LLR given x and the slices already known:

    P(S_i = b | x, s_<i) ∝ sum over intervals j with bits_<i(j) = s_<i, bit_i(j) = b of
                           P(y in I_j | x),   y = x + z, z ~ N(0, sigma2).

Efficiency (standard for sliced reconciliation): beta = (H(Q(Y)) - leak) / I(X;Y) with
H(Q(Y)) the entropy of the quantised variable and leak the bits disclosed per dimension (raw
slices: 1 each; coded slices: syndrome bits minus the random bits Bob adds at the code's
punctured positions, per dimension). Units: x, y in SNU; Alice passes x scaled so that
y = x + z (as in reconcile.mdr); bits per real dimension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import log_ndtr, ndtri

from reconcile import mdr, standard_codes
from reconcile.ldpc_code import LdpcCode
from reconcile.ldpc_decoder import decode

LLR_CLIP = 1.0e4  # the decoder clips at this value too
NR_KB = standard_codes.NR_BASE[1][2]  # BG1 information columns: frames of (kb + 2) z samples


def equiprobable_boundaries(q: int, var_y: float) -> np.ndarray:
    """The 2^q - 1 inner boundaries (SNU) of 2^q equiprobable intervals of N(0, var_y)."""
    if not 1 <= q <= 12:
        raise ValueError(f"slices q must be in 1..12, got {q}")
    if not var_y > 0:
        raise ValueError("var_y must be > 0")
    return math.sqrt(var_y) * ndtri(np.arange(1, 2**q) / 2**q)


def quantise(y: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    """Interval index (int64, 0..len(boundaries)) of each sample of y."""
    return np.searchsorted(np.asarray(boundaries), np.asarray(y), side="right").astype(np.int64)


def slice_bits(index: np.ndarray, q: int) -> np.ndarray:
    """Natural-binary labels: uint8 array of shape (q, *index.shape), slice 0 the LSB."""
    shifts = np.arange(q).reshape((q,) + (1,) * np.ndim(index))
    return ((np.asarray(index)[None] >> shifts) & 1).astype(np.uint8)


def quantised_entropy(boundaries: np.ndarray, var_y: float) -> float:
    """H(Q(Y)) in bits for Y ~ N(0, var_y)."""
    edges = np.concatenate(([-np.inf], boundaries, [np.inf])) / math.sqrt(var_y)
    p = np.diff(np.exp(log_ndtr(edges)))
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def _log_interval_probs(x: np.ndarray, sigma2: float, boundaries: np.ndarray) -> np.ndarray:
    """log P(x + z in I_j), z ~ N(0, sigma2): shape (*x.shape, 2^q); accurate in both tails."""
    s = math.sqrt(sigma2)
    edges = np.concatenate(([-np.inf], boundaries, [np.inf]))
    a = (edges[:-1] - np.asarray(x, np.float64)[..., None]) / s
    b = (edges[1:] - np.asarray(x, np.float64)[..., None]) / s
    # Upper tail (a > 0): P = sf(a) - sf(b) = cdf(-a) - cdf(-b); lower: cdf(b) - cdf(a).
    upper = a > 0
    hi = np.where(upper, -a, b)
    lo = np.where(upper, -b, a)
    lhi, llo = log_ndtr(hi), log_ndtr(lo)
    with np.errstate(divide="ignore"):
        return lhi + np.log1p(-np.exp(llo - lhi))


def _logsumexp(v: np.ndarray, mask: np.ndarray) -> np.ndarray:
    w = np.where(mask, v, -np.inf)
    top = w.max(axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(w - top).sum(axis=-1)) + top[..., 0]


def slice_llr(
    x: np.ndarray, sigma2: float, boundaries: np.ndarray, level: int, lower: np.ndarray | None
) -> np.ndarray:
    """Exact LLR ln P(S_level = 0 | x, s_<level) / P(S_level = 1 | ...), float64.

    x: Alice's samples (any shape), scaled so that y = x + z with Var z = sigma2 (SNU).
    lower: uint8 (level, *x.shape) bits of slices 0..level-1 (None for level 0).
    """
    n_int = len(boundaries) + 1
    q = n_int.bit_length() - 1
    if 2**q != n_int or not 0 <= level < q:
        raise ValueError("need 2^q intervals and 0 <= level < q")
    logp = _log_interval_probs(x, sigma2, boundaries)
    j = np.arange(n_int)
    consistent = np.ones((*np.shape(x), n_int), bool)
    for i in range(level):
        consistent &= ((j >> i) & 1) == np.asarray(lower[i])[..., None]
    bit = ((j >> level) & 1).astype(bool)
    l0 = _logsumexp(logp, consistent & ~bit)
    l1 = _logsumexp(logp, consistent & bit)
    with np.errstate(invalid="ignore"):
        llr = l0 - l1
    llr = np.where(np.isnan(llr), 0.0, llr)  # both impossible only if lower bits are wrong
    return np.clip(llr, -LLR_CLIP, LLR_CLIP)


def slice_capacities(
    sigma2: float, boundaries: np.ndarray, var_x: float = 1.0, grid: int = 4001
) -> np.ndarray:
    """Conditional capacities C_i = 1 - H(S_i | X, S_<i) in bits per dimension, per slice.

    By numerical integration over x ~ N(0, var_x) (trapezoid on +-9 sd) of the exact interval
    probabilities; sum_i (H(S_i | S_<i) - H(S_i | X, S_<i)) = I(X; Q(Y)). With equiprobable
    intervals H(S_i | S_<i) = 1, so C_i is the rate a perfect code on slice i could reach.
    """
    n_int = len(boundaries) + 1
    q = n_int.bit_length() - 1
    xs = np.linspace(-9, 9, grid) * math.sqrt(var_x)
    w = np.exp(-0.5 * xs**2 / var_x)
    w /= w.sum()
    p = np.exp(_log_interval_probs(xs, sigma2, boundaries))  # (grid, n_int)
    j = np.arange(n_int)
    h_cond = np.zeros(q)
    for i in range(q):
        # P(S_<=i = pattern | x) by summing intervals over the higher bits.
        groups = j & ((1 << (i + 1)) - 1)
        pat = np.zeros((grid, 1 << (i + 1)))
        np.add.at(pat.T, groups, p.T)
        lower_p = pat[:, : 1 << i] + pat[:, 1 << i :]  # P(s_<i | x)
        p1 = np.divide(pat[:, 1 << i :], lower_p, out=np.zeros_like(lower_p), where=lower_p > 0)
        h_cond[i] = float((w[:, None] * lower_p * _h2(p1)).sum())
    return 1.0 - h_cond


def _h2(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-300, 1.0)
    r = np.clip(1.0 - p, 1e-300, 1.0)
    return -(p * np.log2(p) + r * np.log2(r))


@dataclass(frozen=True)
class SliceCode:
    """A code for one slice: `transmitted` (n_dims,) indices of the slice bits in the word,
    `filled` indices Bob fills with CSPRNG bits (punctured), shortened bits are 0."""

    code: LdpcCode
    transmitted: np.ndarray
    filled: np.ndarray

    @property
    def leak(self) -> float:
        """Net bits disclosed per dimension: (syndrome bits - filled random bits) / n_dims."""
        return (self.code.m - self.filled.size) / self.transmitted.size


def nr5g_slice_code(checks: int, n_dims: int, z: int, bg: int = 1) -> SliceCode:
    """A 5G NR code (base graph `bg`, lifting size z) cut to its first `checks` checks, with
    n_dims slice bits. Variables left without a check are dropped; the first 2z columns stay
    punctured (Bob fills them with random bits); the last information bits are shortened (0)
    so that exactly n_dims bits are transmitted. Leak per dimension = (checks - 2z) / n_dims.
    Needs 4z <= checks <= rows z and 0 <= kb z + checks - 2z - n_dims <= (kb - 2) z."""
    m_b, _, kb = standard_codes.NR_BASE[bg]
    if not 4 * z <= checks <= m_b * z:
        raise ValueError(f"checks must be in {4 * z}..{m_b * z}, got {checks}")
    full = standard_codes.nr5g_code(bg, z, -(-checks // z))
    ptr = full.check_ptr[: checks + 1]
    var_idx = full.var_idx[: ptr[-1]]
    used = np.unique(var_idx)
    remap = np.full(full.n, -1, np.int64)
    remap[used] = np.arange(used.size)
    n = used.size
    if not np.array_equal(used[: kb * z], np.arange(kb * z)):
        raise ValueError("an information column lost all its checks")
    shorten = n - 2 * z - n_dims
    if not 0 <= shorten <= (kb - 2) * z:
        raise ValueError(f"{n_dims} dimensions do not fit {checks} checks of BG{bg} at z={z}")
    shortened = np.arange(kb * z - shorten, kb * z, dtype=np.int32)
    filled = np.arange(2 * z, dtype=np.int32)
    code = LdpcCode(
        name=f"5gnr_bg{bg}_z{z}_c{checks}_n{n_dims}",
        n=n,
        m=checks,
        check_ptr=ptr,
        var_idx=remap[var_idx],
        punctured=filled,
        shortened=shortened,
    )
    keep = np.ones(n, bool)
    keep[filled] = False
    keep[shortened] = False
    return SliceCode(code, np.flatnonzero(keep), filled)


def nr5g_for_leak(leak: float, n_dims: int, z: int) -> SliceCode | None:
    """The 5G slice code with the fewest checks giving at least `leak` bits per dimension:
    BG2 (the low-rate graph, less shortening) where it fits, else BG1; None if neither fits."""
    checks = max(4 * z, math.ceil(leak * n_dims) + 2 * z)
    for bg in (2, 1):
        m_b, _, kb = standard_codes.NR_BASE[bg]
        shorten = kb * z + checks - 2 * z - n_dims
        if checks <= m_b * z and 0 <= shorten <= (kb - 2) * z:
            return nr5g_slice_code(checks, n_dims, z, bg)
    return None


def met_slice_code(leak: float, n_dims: int, max_puncture: float = 0.6) -> SliceCode:
    """A punctured member of the project's MET family (reconcile.met_codes, rates 0.02-0.2)
    for a low-rate slice: the member with the largest design rate not above 1 - leak, at the
    admissible length n whose k / n_dims is closest to 1 - leak, with p = n - n_dims degree-one
    variables punctured (reconcile.rate_adapt.with_counts; Bob fills them with random bits).
    Leak per dimension = 1 - k / n_dims."""
    from reconcile import met_codes, rate_adapt

    target = 1.0 - leak
    members = sorted(met_codes.specs().values(), key=lambda s: s.rate)
    below = [s for s in members if s.rate <= target] or members[:1]
    spec = below[-1]
    if target < spec.rate:
        raise ValueError(f"slice rate {target:.4f} is below the MET family's lowest rate")
    n = met_codes.nearest_n(spec.name, target * n_dims / spec.rate)
    if n < n_dims:
        n = -(-n_dims // spec.base_n) * spec.base_n
    if n - n_dims > max_puncture * n:
        raise ValueError(f"slice rate {target:.3f} needs more than {max_puncture:.0%} punctured")
    adapted = rate_adapt.with_counts(met_codes.get_code(spec.name, n), n - n_dims, 0)
    return SliceCode(adapted.code, adapted.transmitted, adapted.code.punctured)


@dataclass(frozen=True)
class SlicePlan:
    """Quantiser and per-slice codes (None = slice disclosed) for frames of n_dims samples."""

    boundaries: np.ndarray
    codes: tuple[SliceCode | None, ...]
    n_dims: int

    @property
    def q(self) -> int:
        return len(self.codes)

    def leak(self) -> float:
        """Bits disclosed per dimension (all slices)."""
        return sum(1.0 if c is None else c.leak for c in self.codes)

    def beta(self, var_x: float, sigma2: float) -> float:
        """(H(Q(Y)) - leak) / I(X;Y), I(X;Y) = 1/2 log2(1 + var_x / sigma2)."""
        h = quantised_entropy(self.boundaries, var_x + sigma2)
        return (h - self.leak()) / (0.5 * math.log2(1.0 + var_x / sigma2))


def design(
    snr: float,
    q: int,
    z: int,
    margin: float | tuple[float, ...] = 0.05,
    disclose_below: float = 0.02,
    met_below: float = 0.15,
    var_x: float = 1.0,
) -> SlicePlan:
    """Plan for SNR (linear, per real dimension): equiprobable q-slice quantiser of
    Y ~ N(0, var_x (1 + 1/snr)), frames of n_dims = (kb + 2) z = 24 z samples (the most a BG1
    code of 4z checks carries, rate 11/12). Slice i is disclosed if C_i < disclose_below or
    its leak would reach 1, otherwise coded with leak 1 - C_i + margin_i bits per dimension
    (at least 2z / n_dims, the highest BG1 rate). Slices of rate below `met_below` use a
    punctured MET code (`met_slice_code`) where one fits the frame, the others a shortened 5G
    code (`nr5g_for_leak`); a slice no code fits is disclosed."""
    if not snr > 0:
        raise ValueError("snr must be > 0")
    sigma2 = var_x / snr
    bounds = equiprobable_boundaries(q, var_x + sigma2)
    caps = slice_capacities(sigma2, bounds, var_x)
    margins = (margin,) * q if isinstance(margin, (int, float)) else tuple(margin)
    if len(margins) != q:
        raise ValueError(f"need {q} margins, got {len(margins)}")
    from reconcile import met_codes

    met_min = min(s.rate for s in met_codes.specs().values())
    n_dims = (NR_KB + 2) * z
    codes: list[SliceCode | None] = []
    for cap, mar in zip(caps, margins, strict=True):
        leak = 1.0 - cap + mar
        if cap < disclose_below or leak >= 1.0:
            codes.append(None)
            continue
        code = None
        if met_min <= 1.0 - leak < met_below:
            try:
                code = met_slice_code(leak, n_dims)
            except ValueError:  # frame too short for that member's lifting: try 5G
                code = None
        codes.append(code or nr5g_for_leak(leak, n_dims, z))
    return SlicePlan(bounds, tuple(codes), n_dims)


@dataclass(frozen=True)
class BobMessage:
    """Public message of one batch of frames: per slice, raw bits (disclosed) or syndrome."""

    disclosed: dict[int, np.ndarray]
    syndromes: dict[int, np.ndarray]


def bob_encode(
    plan: SlicePlan, y: np.ndarray, sim_rng: np.random.Generator | None = None
) -> tuple[BobMessage, list[np.ndarray]]:
    """Bob's side for y of shape (frames, n_dims) (SNU). Returns the public message and his
    words per slice ((frames, n_dims) slice bits if disclosed, (frames, code n) words if
    coded). The punctured positions get bits from the OS CSPRNG, or from `sim_rng` (a seeded
    generator, for simulations only)."""
    y = np.atleast_2d(np.asarray(y, np.float64))
    if y.shape[1] != plan.n_dims:
        raise ValueError(f"need frames of {plan.n_dims} samples, got {y.shape[1]}")
    bits = slice_bits(quantise(y, plan.boundaries), plan.q)
    disclosed, syndromes, words = {}, {}, []
    for i, sc in enumerate(plan.codes):
        if sc is None:
            disclosed[i] = bits[i]
            words.append(bits[i])
            continue
        word = np.zeros((y.shape[0], sc.code.n), np.uint8)
        word[:, sc.transmitted] = bits[i]
        shape = (y.shape[0], sc.filled.size)
        word[:, sc.filled] = (
            mdr.random_bits(shape[0] * shape[1]).reshape(shape)
            if sim_rng is None
            else sim_rng.integers(0, 2, shape, dtype=np.uint8)
        )
        syndromes[i] = sc.code.syndrome(word)
        words.append(word)
    return BobMessage(disclosed, syndromes), words


@dataclass(frozen=True)
class AliceResult:
    """Alice's words per slice (as Bob's), success (frames,) and decoder iterations per slice."""

    words: list[np.ndarray]
    ok: np.ndarray
    iterations: dict[int, np.ndarray]


def alice_decode(
    plan: SlicePlan,
    x: np.ndarray,
    sigma2: float,
    message: BobMessage,
    max_iter: int = 200,
    threads: int = 1,
) -> AliceResult:
    """Multistage decoding: slice 0 first from x alone, then each slice given the decoded lower
    ones. x (frames, n_dims) scaled so that y = x + z, Var z = sigma2 (SNU). A frame fails
    (ok False) if any slice's decoder does not match its syndrome; failed frames keep going
    with their (wrong) decisions, which the verification hash then rejects."""
    x = np.atleast_2d(np.asarray(x, np.float64))
    frames = x.shape[0]
    ok = np.ones(frames, bool)
    known = np.zeros((plan.q, frames, plan.n_dims), np.uint8)
    words, iters = [], {}
    for i, sc in enumerate(plan.codes):
        if sc is None:
            known[i] = message.disclosed[i]
            words.append(known[i].copy())
            continue
        llr = np.zeros((frames, sc.code.n), np.float32)
        llr[:, sc.transmitted] = slice_llr(x, sigma2, plan.boundaries, i, known[:i])
        llr[:, sc.code.shortened] = np.inf
        res = decode(sc.code, llr, message.syndromes[i], max_iter=max_iter, threads=threads)
        ok &= res.converged
        iters[i] = res.iterations
        known[i] = res.bits[:, sc.transmitted]
        words.append(res.bits)
    return AliceResult(words, ok, iters)
