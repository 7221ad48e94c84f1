"""Rate adaptation of a mother LDPC code by puncturing and shortening.

Elkouss, Martínez-Mateo, Martin, "Information reconciliation for quantum key distribution",
QIC 11, 226 (2011); for MET codes in CV-QKD, Wang et al., arXiv:1703.04916. From a mother code
(n, k = n - m), puncturing p bits and shortening s bits gives the effective rate

    R' = (k - s) / (n - p - s)

bits of reconciled key per quantum symbol: punctured bits are random bits of Bob's word that no
quantum symbol carries (Alice's LLR 0); shortened bits are zeros known to both (LLR +inf); the
n - p - s other bits are carried by the quantum symbols through MDR. Puncturing raises the rate
(use at a higher SNR), shortening lowers it.

Positions are taken among the degree-one variables of a MET code, in one fixed pseudo-random
order (public, seeded): the first p for puncturing, the last s for shortening, so the family is
nested. Puncturing a degree-one variable removes its check from the decoding (the raptor-like
ensemble just loses some LDGM rows); shortening one turns its check into a known parity
constraint on the core.
"""

from __future__ import annotations

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


def candidate_order(code: LdpcCode, seed: int = 0) -> np.ndarray:
    """Degree-one variables of `code` in the fixed pseudo-random order used for adaptation."""
    ones = np.flatnonzero(code.var_degrees() == 1)
    if ones.size == 0:
        raise ValueError(f"code {code.name!r} has no degree-one variables to adapt with")
    return ones[np.argsort(random_u64(seed, 5000, ones.size), kind="stable")]


def with_counts(code: LdpcCode, punctured: int, shortened: int, seed: int = 0) -> Adaptation:
    """The code with `punctured` and `shortened` degree-one variables (nested choice)."""
    if code.punctured.size or code.shortened.size:
        raise ValueError("the mother code must have no punctured or shortened bits")
    order = candidate_order(code, seed)
    if punctured < 0 or shortened < 0 or punctured + shortened > order.size:
        raise ValueError(
            f"cannot puncture {punctured} and shorten {shortened} of {order.size} candidates"
        )
    p_idx = np.sort(order[:punctured])
    s_idx = np.sort(order[order.size - shortened :]) if shortened else np.zeros(0, np.int64)
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
