"""Output length of privacy amplification: how many bits the hash may output.

Quantum leftover hash lemma (Tomamichel, Schaffner, Smith, Renner, IEEE TIT 57, 5524 (2011),
Lemma 3 / Eq. (9)); with a 2-universal family the output of length

    l = floor( H_min^eps(X|E) - leak_EC - leak_verify - 2 log2(1 / (2 eps_PA)) )

is eps_PA-close (plus the smoothing eps) to a uniform key independent of Eve. Every public
message correlated with X lowers the smooth min-entropy by at most its length (chain rule):
the error-correction syndrome (leak_EC) and the verification tag (leak_verify).

The bound comes from the security core (`reconcile.finite_size`, H1) as a rate per symbol:
- beta-style rates (beta I_AB - chi_BE - penalties) already pay the syndrome inside beta:
  leak_ec_bits must then be 0 (the default), or it would be subtracted twice.
- LGG's Delta(n) holds (2/n) log2(1/eps_PA) and the composable Theta holds
  2 log2(sqrt(2) eps_h): with those rates pa_term_in_rate=True. Only a rate without it
  (the asymptotic one) takes pa_term_in_rate=False, and the 2 log2(1/(2 eps_PA)) is paid here.
- The verification tag is in no rate formula: always subtracted here.
- Authentication does not leak X (Wegman-Carter tags are one-time padded), but it spends key
  from the pool: the hash outputs `hash_output_bits`, of which `auth_key_bits` refill the
  authentication pool and `net_key_bits` are new key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PaLength:
    """Output length of one privacy-amplification block and every term of it (bits)."""

    hash_output_bits: int  # m: the hash output length, floor of the bound below, >= 0
    net_key_bits: int  # m - auth_key_bits, >= 0: what the key store gains
    entropy_bound_bits: float  # n_symbols x secret_bits_per_symbol
    leak_ec_bits: int  # subtracted here (0 when the rate already holds the syndrome)
    leak_verify_bits: int
    pa_penalty_bits: float  # 2 log2(1/(2 eps_PA)), 0 when the rate already holds it
    auth_key_bits: int


def pa_penalty_bits(eps_pa: float) -> float:
    """2 log2(1 / (2 eps_PA)) bits (Tomamichel et al. 2011), eps_PA in (0, 1/2)."""
    if not 0.0 < eps_pa < 0.5:
        raise ValueError(f"eps_pa must be in (0, 0.5), got {eps_pa!r}")
    return 2.0 * math.log2(1.0 / (2.0 * eps_pa))


def output_length(
    n_symbols: int, secret_bits_per_symbol: float, *,
    input_bits: int, leak_verify_bits: int, auth_key_bits: int, eps_pa: float,
    pa_term_in_rate: bool, leak_ec_bits: int = 0,
) -> PaLength:
    """Hash output length for a block of `n_symbols` symbols hashed from `input_bits` bits.

    secret_bits_per_symbol: the security core's lower bound on the smooth min-entropy per
    symbol at worst-case parameters, so that n_symbols x secret_bits_per_symbol bounds
    H_min^eps(X|E) of the hashed string (for example the LGG bracket
    beta I_AB - chi_BE(T_min, xi_max) - Delta(n) per key symbol; not a rate already scaled by
    the PE fraction or the frame error rate). leak_verify_bits: the verification tag length;
    auth_key_bits: key spent authenticating this block's messages; eps_pa: the
    privacy-amplification failure probability; pa_term_in_rate: whether the rate already
    subtracts the 2 log2(1/eps_PA)-type term; leak_ec_bits: syndrome bits, only for rates that
    do not already pay them (see the module docstring).
    Never longer than the bound, never longer than input_bits, never negative.
    """
    for name, v in (("n_symbols", n_symbols), ("input_bits", input_bits),
                    ("leak_verify_bits", leak_verify_bits), ("auth_key_bits", auth_key_bits),
                    ("leak_ec_bits", leak_ec_bits)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
    try:
        rate = float(secret_bits_per_symbol)
    except (TypeError, ValueError) as exc:
        raise ValueError("secret_bits_per_symbol must be a number") from exc
    if math.isnan(rate) or rate == math.inf:  # -inf: nothing certified, gives 0
        raise ValueError(f"secret_bits_per_symbol must be finite or -inf, got {rate}")
    if not isinstance(pa_term_in_rate, bool):
        raise ValueError("pa_term_in_rate must be True or False")
    full_penalty = pa_penalty_bits(eps_pa)
    penalty = 0.0 if pa_term_in_rate else full_penalty
    bound = n_symbols * rate if n_symbols else 0.0
    remaining = bound - leak_ec_bits - leak_verify_bits - penalty
    m = min(math.floor(remaining), input_bits) if remaining >= 1.0 else 0
    return PaLength(
        hash_output_bits=m,
        net_key_bits=max(m - auth_key_bits, 0),
        entropy_bound_bits=bound,
        leak_ec_bits=leak_ec_bits,
        leak_verify_bits=leak_verify_bits,
        pa_penalty_bits=penalty,
        auth_key_bits=auth_key_bits,
    )
