"""Privacy-amplification output length: every term, no double counting, never above the bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconcile.finite_size import finite_size_rate
from reconcile.keyrate import fibre_transmittance
from reconcile.pa_length import output_length, pa_penalty_bits

BASE = {"input_bits": 10**9, "leak_verify_bits": 64, "auth_key_bits": 512, "eps_pa": 1e-10}


def test_penalty_is_the_leftover_hash_term():
    # 2 log2(1/(2 eps)): eps = 2^-31 gives 2 * 30 = 60 bits exactly
    assert pa_penalty_bits(2.0**-31) == pytest.approx(60.0, abs=1e-12)
    assert pa_penalty_bits(1e-10) == pytest.approx(2 * math.log2(5e9), rel=1e-15)
    for bad in (0.0, 0.5, -1e-3, 1.0):
        with pytest.raises(ValueError, match="eps_pa"):
            pa_penalty_bits(bad)


def test_every_term_is_subtracted_once():
    eps = 2.0**-31  # penalty 60 bits
    r = output_length(1_000_000, 0.05, **{**BASE, "eps_pa": eps}, pa_term_in_rate=False,
                      leak_ec_bits=1000)
    # 50000 - 1000 (syndrome) - 64 (verification) - 60 (leftover hash)
    assert r.hash_output_bits == 50_000 - 1000 - 64 - 60
    assert r.net_key_bits == r.hash_output_bits - 512  # authentication spends pool key
    assert (r.leak_ec_bits, r.leak_verify_bits, r.auth_key_bits) == (1000, 64, 512)
    assert r.pa_penalty_bits == 60.0 and r.entropy_bound_bits == pytest.approx(50_000.0)


def test_rates_that_hold_the_pa_term_do_not_pay_it_again():
    with_term = output_length(1_000_000, 0.05, **BASE, pa_term_in_rate=True)
    without = output_length(1_000_000, 0.05, **BASE, pa_term_in_rate=False)
    assert with_term.pa_penalty_bits == 0.0
    assert with_term.hash_output_bits == 50_000 - 64
    assert with_term.hash_output_bits - without.hash_output_bits == math.floor(
        pa_penalty_bits(1e-10)) + 1  # 64.4 bits: floor shifts by 65 at this integer bound


def test_nothing_left_gives_zero_not_negative():
    for rate in (0.0, -0.3, -math.inf, 1e-5):
        r = output_length(1000, rate, **BASE, pa_term_in_rate=False)
        assert r.hash_output_bits == 0 and r.net_key_bits == 0
    # enough for the hash but not for authentication: new key is 0, never negative
    r = output_length(10_000, 0.05, **BASE, pa_term_in_rate=True)
    assert r.hash_output_bits == 500 - 64 and r.net_key_bits == 0
    assert output_length(0, 0.1, **BASE, pa_term_in_rate=True).hash_output_bits == 0


def test_output_never_exceeds_the_input():
    r = output_length(1000, 2.0, **{**BASE, "input_bits": 1500}, pa_term_in_rate=True)
    assert r.hash_output_bits == 1500


@given(n=st.integers(0, 10**10), rate=st.floats(-1.0, 2.0), ver=st.integers(0, 10**4),
       ec=st.integers(0, 10**6), eps=st.floats(1e-30, 0.49), in_rate=st.booleans())
def test_never_longer_than_the_bound(n, rate, ver, ec, eps, in_rate):
    r = output_length(n, rate, **{**BASE, "leak_verify_bits": ver, "eps_pa": eps},
                      pa_term_in_rate=in_rate, leak_ec_bits=ec)
    penalty = 0.0 if in_rate else 2 * math.log2(1 / (2 * eps))
    bound = n * rate - ec - ver - penalty
    assert 0 <= r.hash_output_bits <= min(max(bound, 0.0) + 1e-6, BASE["input_bits"])
    assert r.hash_output_bits > min(bound, BASE["input_bits"]) - 1 - 1e-6 * max(1.0, n)
    assert 0 <= r.net_key_bits <= r.hash_output_bits


def test_with_the_finite_size_rate_of_a_25_km_link():
    """The security core's LGG rate (per symbol of the block, FER and PE share included) holds
    Delta(n) with its (2/n) log2(1/eps_PA): converted back to the per-key-symbol bracket and
    used with pa_term_in_rate=True. Heterodyne MDR: 2 reconciled bits per key symbol."""
    n_total, fer = 10**8, 0.1
    rate = finite_size_rate(4.0, fibre_transmittance(25.0), 0.02, 0.95, n_total=n_total,
                            eta=0.7, v_el=0.1, fer=fer)
    n_key = int(rate.n_key)
    n_ok = int(n_key * (1 - fer))  # key symbols in frames that decoded
    per_key_symbol = float(rate.k_finite) * n_total / (n_key * (1 - fer))
    r = output_length(n_ok, per_key_symbol, input_bits=2 * n_ok, leak_verify_bits=64,
                      auth_key_bits=10_000, eps_pa=1e-10, pa_term_in_rate=True)
    bound = float(rate.k_finite) * n_total - 64  # the same bits, counted per block symbol
    assert bound - 1.001 < r.hash_output_bits <= bound + 1e-6
    ratio = r.hash_output_bits / (2 * n_ok)
    assert 0.02 < ratio < 0.05  # m/n of this link, the ratio the benchmark must sustain


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_symbols": -1}, "n_symbols"),
        ({"n_symbols": 1.5}, "n_symbols"),
        ({"leak_verify_bits": -64}, "leak_verify_bits"),
        ({"auth_key_bits": True}, "auth_key_bits"),
        ({"secret_bits_per_symbol": float("nan")}, "secret_bits_per_symbol"),
        ({"secret_bits_per_symbol": "x"}, "secret_bits_per_symbol"),
        ({"pa_term_in_rate": 1}, "pa_term_in_rate"),
        ({"eps_pa": 0.0}, "eps_pa"),
    ],
)
def test_bad_input(kwargs, message):
    args = {"n_symbols": 1000, "secret_bits_per_symbol": 0.1, **BASE, "pa_term_in_rate": True}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        output_length(args.pop("n_symbols"), args.pop("secret_bits_per_symbol"), **args)


def test_both_ends_hash_to_the_same_key_of_the_computed_length():
    """The pipeline's use: length from the bound, seed drawn by one end and sent as bytes,
    both ends hash their (identical, verified) reconciled bits."""
    from reconcile import privacy_amp

    rng = np.random.default_rng(3)
    n_symbols = 200_000  # heterodyne key symbols, 2 MDR bits each
    bits = rng.integers(0, 2, 2 * n_symbols, dtype=np.uint8)
    length = output_length(n_symbols, 0.08, input_bits=bits.size, leak_verify_bits=64,
                           auth_key_bits=1024, eps_pa=1e-10, pa_term_in_rate=False)
    m = length.hash_output_bits
    assert m == math.floor(16_000 - 64 - pa_penalty_bits(1e-10))
    wire = privacy_amp.new_seed(bits.size, m)  # public, sent to the peer
    alice = privacy_amp.hash_packed(privacy_amp.pack_bits(bits), bits.size, wire, m)
    bob = privacy_amp.hash_bits(bits.copy(), privacy_amp.unpack_bits(bytes(wire), bits.size - 1),
                                m)
    assert privacy_amp.pack_bits(bob) == alice and len(alice) == (m + 7) // 8
