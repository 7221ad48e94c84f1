"""The rules both ends apply identically (controller.link_protocol, controller.link_end)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from mdr_frames import mdr_frames

from controller import channel as ch
from controller.config import LinkConfig, config_from_dict
from controller.link_end import AUTH_UNIT_BITS, PackedBits, split_key
from controller.link_protocol import (
    AbortReason,
    LinkAbort,
    PeMoments,
    block_bound,
    channel_abort,
    check_estimate,
    check_tags,
    codeword_tags,
    config_digest,
    estimate,
    estimate_moments,
    mother_code_key,
    pe_indices,
    verify_keys_needed,
)
from reconcile import privacy_amp
from reconcile.estimation import estimate_channel


def test_pe_subset_depends_on_both_nonces() -> None:
    a, b = os.urandom(32), os.urandom(32)
    idx = pe_indices(a, b, 100_000, 0.1)
    assert idx.size == 10_000 and np.all(np.diff(idx) > 0)  # sorted, without repetition
    assert 0 <= idx[0] and idx[-1] < 100_000
    assert np.array_equal(idx, pe_indices(a, b, 100_000, 0.1))  # both ends agree
    assert not np.array_equal(idx, pe_indices(a, os.urandom(32), 100_000, 0.1))
    assert not np.array_equal(idx, pe_indices(os.urandom(32), b, 100_000, 0.1))
    # roughly uniform over the frame: each tenth holds ~1000 (binomial sd ~30)
    counts = np.bincount(idx // 10_000, minlength=10)
    assert np.all(np.abs(counts - 1000) < 150)
    with pytest.raises(ValueError, match="32 bytes"):
        pe_indices(b"short", b, 1000, 0.1)


def test_split_key() -> None:
    key = os.urandom(1000)
    m = 8 * 1000 - 3
    app, auth = split_key(key, m, auth_key_bits=3 * AUTH_UNIT_BITS, key_bytes=32)
    assert auth == [key[:96]]
    assert len(app) == (1000 - 96 - 1) // 32 and all(len(k) == 32 for k in app)
    assert app[0] == key[96:128]
    app, auth = split_key(key, 100, auth_key_bits=AUTH_UNIT_BITS, key_bytes=32)
    assert app == [] and auth == []  # 100 bits: not even one pool key


def test_abort_reasons_have_messages_and_scope() -> None:
    for r in AbortReason:
        assert r.message and isinstance(r.value, str)
    assert AbortReason.PEER_TIMEOUT.session_level and not AbortReason.LO_UNLOCK.session_level
    exc = LinkAbort(AbortReason.SATURATION, "12 clipped")
    assert str(exc) == "detector/ADC saturation during the capture: 12 clipped"
    assert channel_abort(ch.ChannelTimeout("x")).reason == AbortReason.PEER_TIMEOUT
    assert channel_abort(ch.AuthenticationError("x")).reason == \
        AbortReason.AUTHENTICATION_FAILURE
    assert channel_abort(ch.HandshakeError("x")).reason == AbortReason.AUTHENTICATION_FAILURE
    assert channel_abort(ch.ChannelClosed("x")).reason == AbortReason.PEER_LOST


def test_config_digest_covers_what_both_ends_use() -> None:
    base = LinkConfig()
    # the simulated channel's own settings may differ between the ends...
    assert config_digest(base) == config_digest(config_from_dict({"physics": {"seed": 9}}))
    assert config_digest(base) == config_digest(config_from_dict({"physics": {
        "linewidth_hz": 1e3, "clock_ppm": -3.0}}))
    # ...but not the protocol, the detector efficiency both estimates use, or the code the
    # planned channel picks (the operating point depends on the planned xi)
    assert config_digest(base) != config_digest(config_from_dict({"protocol": {"code_n": 32000}}))
    assert config_digest(base) != config_digest(config_from_dict({"physics": {"xi": 0.03}}))
    fixed = {"protocol": {"reconciliation": "fixed"}}
    assert config_digest(config_from_dict(fixed)) == config_digest(config_from_dict(
        {**fixed, "physics": {"xi": 0.03}}))
    assert config_digest(base) != config_digest(config_from_dict({"physics": {"eta": 0.6}}))
    near = config_from_dict({"physics": {"distance_km": 50.0}})
    assert mother_code_key(near) != mother_code_key(base)
    assert config_digest(near) != config_digest(base)


def test_estimate_from_running_sums_equals_estimate_channel() -> None:
    """A block's estimate from per-frame PE sums equals reconcile.estimation's on the
    concatenated pairs (the same formulas; sums in another order: float64 rounding only)."""
    cfg = LinkConfig()
    frames = [_pe(n, 0.02, seed) for n, seed in ((30_000, 1), (50_000, 2), (7, 3))]
    total = PeMoments()
    for x, y in frames:
        total = total + PeMoments.of(x, y)
    ref = estimate_channel(np.concatenate([x for x, _ in frames]),
                           np.concatenate([y for _, y in frames]), eta=cfg.physics.eta,
                           v_el=0.1, detection="heterodyne", eps_pe=cfg.protocol.eps_pe)
    got = estimate_moments(cfg, total, 0.1)
    assert got.m == ref.m == 2 * 80_007
    for name in ("t", "sigma2", "v_a", "transmittance", "excess_noise", "snr",
                 "transmittance_min", "excess_noise_max"):
        assert getattr(got, name) == pytest.approx(getattr(ref, name), rel=1e-9, abs=1e-12)


def test_packed_bits_equal_packing_the_concatenation() -> None:
    rng = np.random.default_rng(5)
    parts = [rng.integers(0, 2, n, dtype=np.uint8) for n in (13, 0, 8, 1001, 3, 64_000)]
    acc = PackedBits()
    for p in parts:
        acc.append(p)
    allbits = np.concatenate(parts)
    assert acc.size == allbits.size
    assert acc.packed() == privacy_amp.pack_bits(allbits)
    assert np.array_equal(privacy_amp.unpack_bits(acc.packed(), acc.size), allbits)


def test_verification_tags_per_codeword() -> None:
    rng = np.random.default_rng(3)
    words = rng.integers(0, 2, (10, 500), dtype=np.uint8)
    keys = [os.urandom(32) for _ in range(verify_keys_needed(10))]
    tagged = np.ones(10, bool)
    tagged[4] = False
    tags = codeword_tags(keys, words, tagged)
    other = words.copy()
    other[2, 17] ^= 1
    ok = check_tags(keys, other, tagged, tags)
    assert ok.tolist() == [True, True, False, True, False, True, True, True, True, True]
    assert verify_keys_needed(10) == 3 and verify_keys_needed(256) == 64
    with pytest.raises(ValueError, match="longer code"):
        verify_keys_needed(257)


def _pe(n: int, xi: float, seed: int, t_ch: float = 0.5, eta: float = 0.7, v_el: float = 0.1):
    """Heterodyne PE pairs with the project's convention (test data from a seeded PRNG)."""
    rng = np.random.default_rng(seed)
    v_a = 4.0
    x = math.sqrt(v_a) * (rng.standard_normal(n) + 1j * rng.standard_normal(n))
    g = eta * t_ch
    noise = math.sqrt(1 + v_el + g * xi / 2)
    y = math.sqrt(g / 2) * x + noise * (rng.standard_normal(n) + 1j * rng.standard_normal(n))
    return x, y


def test_excess_noise_check_and_block_bound() -> None:
    cfg = config_from_dict({"physics": {"eta": 0.7}, "protocol": {"xi_abort": 0.1}})
    x, y = _pe(200_000, 0.02, 1)
    est = estimate(cfg, x, y, 0.1)
    assert abs(est.excess_noise - 0.02) < 0.03 and est.excess_noise_max > est.excess_noise
    check_estimate(cfg, est)
    xs, ys = _pe(200_000, 0.5, 2)
    with pytest.raises(LinkAbort) as info:
        check_estimate(cfg, estimate(cfg, xs, ys, 0.1))
    assert info.value.reason == AbortReason.EXCESS_NOISE
    # a block of 2 x 10^6 symbols of which 2 x 10^5 PE: the bound grows with the net bits and
    # is never above beta I_AB per decoded symbol
    kw = dict(v_el=0.1, n_total=2_000_000, n_decoded=1_700_000, codewords=100, failed=5,
              input_bits=3_000_000, leak_verify_bits=61 * 95, auth_key_bits=0)
    low = block_bound(cfg, est, net_bits=int(0.58 * 1_700_000), **kw)
    high = block_bound(cfg, est, net_bits=int(0.64 * 1_700_000), **kw)
    assert high.pa.hash_output_bits > low.pa.hash_output_bits
    i_ab = math.log2(1 + est.snr)
    assert high.bits_per_symbol < high.beta * i_ab and high.fer == 0.05
    assert high.pa.hash_output_bits <= 1_700_000 * high.bits_per_symbol - 61 * 95
    none = block_bound(cfg, est, net_bits=0, **kw)
    assert none.pa.hash_output_bits == 0


def test_reconciliation_mode_from_the_command_line() -> None:
    """--reconciliation fixed: the rate-0.2 family at --code-n and --beta with the configured
    iteration cap; auto (default): the measured operating point, whose code length and cap
    ignore --code-n; an SNR outside the measured range falls back to the fixed choice."""
    import argparse

    from controller.commands.link import add_config_arguments, build_config
    from controller.link_protocol import decoder_iterations, reconciliation_point

    p = argparse.ArgumentParser()
    add_config_arguments(p)
    fixed = build_config(p.parse_args(["--reconciliation", "fixed", "--code-n", "16000"]))
    assert reconciliation_point(fixed) is None
    assert mother_code_key(fixed) == ("met_r0.20", 16000)
    assert decoder_iterations(fixed) == fixed.protocol.decoder_iterations
    auto = build_config(p.parse_args(["--code-n", "16000"]))
    point = reconciliation_point(auto)
    assert point is not None and mother_code_key(auto) == (point.mother, point.n)
    assert point.n > 16000 and decoder_iterations(auto) == point.max_iter
    far = build_config(p.parse_args(["--distance-km", "60"]))  # SNR ~0.1: not measured
    assert reconciliation_point(far) is None


@pytest.mark.parametrize("snr", [0.42, 0.36])  # punctured, shortened
def test_alice_decodes_adaptations_with_the_mother_codes_decoder(snr: float) -> None:
    """Alice decodes every frame's adaptation with the session's mother-code decoder (the
    adaptation is in the LLRs): the same decisions as a decoder built for the adapted code,
    and another graph still gets its own decoder."""
    from types import SimpleNamespace

    from controller.link_alice import _decoder
    from controller.link_protocol import mother_code
    from reconcile import met_codes, rate_adapt
    from reconcile.ldpc_decoder import Decoder, decoder_for

    cfg = config_from_dict({"protocol": {"reconciliation": "fixed", "beta_target": 0.85,
                                         "code_n": 16_000}})
    mother = mother_code(cfg)
    ad = rate_adapt.for_snr(mother, snr * 0.99, 0.85)
    assert (ad.punctured > 0) == (snr > 0.4) and (ad.shortened > 0) == (snr < 0.4)
    dec = _decoder(SimpleNamespace(cfg=cfg), ad)
    assert dec is decoder_for(mother)
    other = rate_adapt.for_snr(met_codes.get_code("met_r0.10", 16_000), 0.2, 0.85)
    assert _decoder(SimpleNamespace(cfg=cfg), other) is decoder_for(other.code)

    n_cw = 8
    llr, words = mdr_frames(ad, snr, n_cw, np.random.default_rng(7))
    syndrome = ad.code.syndrome(words)
    got = dec.decode(llr, syndrome, 100)
    ref = Decoder(ad.code).decode(llr, syndrome, 100)
    free = np.ones(mother.n, bool)
    free[ad.code.shortened] = False
    assert ref.converged.sum() >= n_cw - 1  # the test exercises decoding, not failures
    np.testing.assert_array_equal(got.converged, ref.converged)
    ok = ref.converged.astype(bool)  # a frame that never converges wanders chaotically
    np.testing.assert_array_equal(got.bits[ok][:, free], ref.bits[ok][:, free])
    np.testing.assert_array_equal(got.bits[ok][:, free], words[ok][:, free])
    assert np.all(np.abs(got.iterations[ok] - ref.iterations[ok]) <= 1)
