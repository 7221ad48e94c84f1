"""Rate adaptation of a mother LDPC code by puncturing and shortening.

Elkouss, Martínez-Mateo, Martin, "Information reconciliation for quantum key distribution",
QIC 11, 226 (2011); for MET codes in CV-QKD, Wang et al., arXiv:1703.04916. From a mother code
(n, k = n - m), puncturing p bits and shortening s bits gives the effective rate

    R' = (k - s) / (n - p - s)

bits of reconciled key per quantum symbol: punctured bits are random bits of Bob's word that no
quantum symbol carries (Alice's LLR 0); shortened bits are zeros known to both (LLR +inf); the
n - p - s other bits are carried by the quantum symbols through MDR. Puncturing raises the rate
(use at a higher SNR), shortening lowers it.

Punctured positions are degree-one variables of the MET code, shortened ones core variables
(degree > 1), each in one fixed pseudo-random order (public, seeded), so the family is nested.
Puncturing a degree-one variable removes its LDGM row from the decoding (the raptor-like
ensemble just loses some rows). Shortening core variables injects known bits where they help
most; shortening degree-one variables instead (turning LDGM rows into known parities on the
core) was measured to fail: with 3 % of the rate-0.1 code shortened that way, no frame decoded
at beta 0.88, while shortening the core decodes (docs/reconciliation.md).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from reconcile.ldpc_code import LdpcCode
from reconcile.ldpc_construct import random_u64
from reconcile.met_design import capacity_awgn

SHORTENED_LLR = np.float32(np.inf)  # the decoder clips and treats +-inf as a known bit


@dataclass(frozen=True)
class Adaptation:
    """An adapted code and the layout of Bob's word.

    `transmitted`: variable indices carried by quantum symbols, in the order of the symbols
    (a multiple of the MDR dimension d). Effective `rate` = (k - s)/(n - p - s).
    """

    code: LdpcCode
    transmitted: np.ndarray
    rate: float

    @property
    def punctured(self) -> int:
        return int(self.code.punctured.size)

    @property
    def shortened(self) -> int:
        return int(self.code.shortened.size)

    def beta(self, snr: float) -> float:
        """Reconciliation efficiency R'/C(SNR) at a channel SNR (linear, per real dimension)."""
        return self.rate / capacity_awgn(snr)


# candidate orders by graph (the var_idx array an adapted code shares with its mother) and
# seed: the argsort is ~14 ms of a 242000-bit code's adaptation, which runs every frame
_ORDERS: dict[tuple[int, int, int, bool], tuple[weakref.ref, np.ndarray]] = {}
_ORDERS_MAX = 8


def candidate_order(code: LdpcCode, seed: int = 0, core: bool = False) -> np.ndarray:
    """Degree-one variables of `code` (or, with `core`, the others) in the fixed
    pseudo-random order used for adaptation (read-only; cached per graph and seed)."""
    key = (id(code.var_idx), code.n, seed, core)
    hit = _ORDERS.get(key)
    if hit is not None and hit[0]() is code.var_idx:
        return hit[1]
    deg = code.var_degrees()
    cand = np.flatnonzero(deg > 1) if core else np.flatnonzero(deg == 1)
    if cand.size == 0:
        kind = "core" if core else "degree-one"
        raise ValueError(f"code {code.name!r} has no {kind} variables to adapt with")
    order = cand[np.argsort(random_u64(seed, 5001 if core else 5000, cand.size), kind="stable")]
    order.setflags(write=False)
    if len(_ORDERS) >= _ORDERS_MAX:
        _ORDERS.pop(next(iter(_ORDERS)))
    _ORDERS[key] = (weakref.ref(code.var_idx), order)
    return order


def with_counts(code: LdpcCode, punctured: int, shortened: int, seed: int = 0) -> Adaptation:
    """The code with `punctured` degree-one and `shortened` core variables (nested choice:
    a larger count extends the smaller one's set)."""
    if code.punctured.size or code.shortened.size:
        raise ValueError("the mother code must have no punctured or shortened bits")
    ones = candidate_order(code, seed)
    core = candidate_order(code, seed, core=True) if shortened else np.zeros(0, np.int64)
    if punctured < 0 or shortened < 0 or punctured > ones.size or shortened > core.size:
        raise ValueError(
            f"cannot puncture {punctured} of {ones.size} degree-one variables and shorten "
            f"{shortened} of {core.size} core variables"
        )
    p_idx = np.sort(ones[:punctured])
    s_idx = np.sort(core[:shortened])
    keep = np.ones(code.n, bool)
    keep[p_idx] = False
    keep[s_idx] = False
    adapted = LdpcCode(
        name=f"{code.name}_p{punctured}_s{shortened}",
        n=code.n,
        m=code.m,
        check_ptr=code.check_ptr,
        var_idx=code.var_idx,
        punctured=p_idx,
        shortened=s_idx,
    )
    return Adaptation(adapted, np.flatnonzero(keep), adapted.rate)


def for_rate(
    code: LdpcCode, rate: float, d: int = 8, max_fraction: float = 0.3, seed: int = 0
) -> Adaptation:
    """Puncture or shorten so that the effective rate is as close to `rate` as possible with
    n - p - s a multiple of d; at most `max_fraction` of n is punctured or shortened."""
    n, k = code.n, code.n - code.m
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate}")
    limit = int(max_fraction * n)
    if rate >= k / n:
        p_real = n - k / rate
        cands = [(p, 0) for p in range(max(0, int(p_real) - d), int(p_real) + d + 1)]
    else:
        s_real = (k - rate * n) / (1 - rate)
        cands = [(0, s) for s in range(max(0, int(s_real) - d), int(s_real) + d + 1)]
    cands = [(p, s) for p, s in cands if (n - p - s) % d == 0 and s < k]
    p, s = min(cands, key=lambda c: abs((k - c[1]) / (n - c[0] - c[1]) - rate))
    if p + s > limit:
        raise ValueError(
            f"rate {rate:.4f} needs {p + s} of {n} bits adapted (limit {limit}); "
            f"use another code of the family (mother rate {k / n:.4f})"
        )
    return with_counts(code, p, s, seed)


def for_snr(
    code: LdpcCode,
    snr: float,
    beta: float,
    d: int = 8,
    max_fraction: float = 0.3,
    seed: int = 0,
) -> Adaptation:
    """Adapt so that the efficiency R'/C(snr) is `beta` at the measured SNR (linear)."""
    if not snr > 0 or not 0 < beta < 1:
        raise ValueError("need snr > 0 and 0 < beta < 1")
    return for_rate(code, beta * capacity_awgn(snr), d, max_fraction, seed)


def select(snr: float, beta: float, n: int, d: int = 8, max_puncture: float = 0.6) -> Adaptation:
    """Rate adaptation over the MET family: the member with the largest design rate not above
    the target rate beta C(snr), built at the admissible length nearest n, punctured up to the
    target. Shortening is used only when the target is below the lowest member's rate."""
    from reconcile import met_codes

    target = beta * capacity_awgn(snr)
    specs = sorted(met_codes.specs().values(), key=lambda s: s.rate)
    below = [s for s in specs if s.rate <= target]
    spec = below[-1] if below else specs[0]
    code = met_codes.get_code(spec.name, met_codes.nearest_n(spec.name, n))
    return for_rate(code, target, d, max_fraction=max_puncture)


def bob_word(adaptation: Adaptation, random_bits: np.ndarray) -> np.ndarray:
    """Bob's n-bit word: `random_bits` (n - s uniform bits from a CSPRNG) fill the transmitted
    and punctured positions in index order; shortened positions are 0."""
    code = adaptation.code
    word = np.zeros(code.n, np.uint8)
    free = np.ones(code.n, bool)
    free[code.shortened] = False
    if np.shape(random_bits) != (int(free.sum()),):
        raise ValueError(f"need {int(free.sum())} random bits, got {np.shape(random_bits)}")
    word[free] = random_bits
    return word


def alice_llr(adaptation: Adaptation, llr_transmitted: np.ndarray) -> np.ndarray:
    """The decoder's n LLRs: MDR LLRs at the transmitted positions, 0 where punctured,
    +inf (known 0) where shortened. float32."""
    code = adaptation.code
    if np.shape(llr_transmitted) != adaptation.transmitted.shape:
        raise ValueError(
            f"need {adaptation.transmitted.size} LLRs, got {np.shape(llr_transmitted)}"
        )
    out = np.zeros(code.n, np.float32)
    out[adaptation.transmitted] = llr_transmitted
    out[code.shortened] = SHORTENED_LLR
    return out
