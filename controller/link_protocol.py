"""Shared rules of the per-frame link protocol (docs/protocol.md): abort reasons, the jointly
chosen parameter-estimation subset, the code adaptation and the privacy-amplification length.

Everything here is computed IDENTICALLY at both ends from public data (nonces, PE values,
estimates), so Alice and Bob reach the same decisions without further messages.
Units: quadratures in SNU, lengths in symbols (complex, heterodyne) or bits as named.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from enum import Enum

import numpy as np

from controller.config import LinkConfig
from controller.framing import MAX_APP_KEYS
from reconcile import met_codes, operating_point, rate_adapt, verify
from reconcile.estimation import ChannelEstimate, second_moments, worst_case_parameters
from reconcile.finite_size import finite_size_rate, finite_size_rate_from_estimate
from reconcile.ldpc_code import LdpcCode
from reconcile.pa_length import PaLength, output_length
from reconcile.rate_adapt import Adaptation

NONCE_BYTES = 32
VERIFY_TAG_BITS = 61  # reconcile.verify's default Mersenne exponent: the tag leaks <= 61 bits
_TAG_KEYS_PER_POOL_KEY = 4  # 8-byte hash keys per 32-byte one-time pool key


class AbortReason(Enum):
    """Why a frame, a block or the session produced no key. Values are wire codes."""

    EXCESS_NOISE = "excess_noise"  # xi_max above protocol.xi_abort
    NO_FINITE_SIZE_KEY = "no_finite_size_key"  # the finite-size bound gives <= 0 bits
    LO_UNLOCK = "lo_unlock"  # the receiver's LO lock bit was low during the capture
    SATURATION = "saturation"  # ADC clipping/overflow above protocol.clip_fraction_abort
    SYNC_FAILURE = "sync_failure"  # the receiver DSP could not lock to the frame
    SNR_OUT_OF_RANGE = "snr_out_of_range"  # no code of the family reaches the measured SNR
    VERIFICATION_FAILED = "verification_failed"  # decoded words' tags differ
    AUTHENTICATION_FAILURE = "authentication_failure"  # a channel tag or handshake failed
    PEER_TIMEOUT = "peer_timeout"  # the peer did not answer within protocol.peer_timeout_s
    PEER_LOST = "peer_lost"  # the peer closed or aborted the session
    CONFIG_MISMATCH = "config_mismatch"  # the two ends run different protocol settings
    HARDWARE_FAULT = "hardware_fault"  # a driver failure or board alarm during a capture

    @property
    def message(self) -> str:
        return _MESSAGES[self]

    @property
    def session_level(self) -> bool:
        """True if the session ends (the open block is discarded), False for one frame/block."""
        return self in (AbortReason.AUTHENTICATION_FAILURE, AbortReason.PEER_TIMEOUT,
                        AbortReason.PEER_LOST, AbortReason.CONFIG_MISMATCH,
                        AbortReason.HARDWARE_FAULT)


_MESSAGES = {
    AbortReason.EXCESS_NOISE: "excess noise above the abort threshold",
    AbortReason.NO_FINITE_SIZE_KEY: "no positive finite-size key for this block",
    AbortReason.LO_UNLOCK: "local oscillator unlocked during the capture",
    AbortReason.SATURATION: "detector/ADC saturation during the capture",
    AbortReason.SYNC_FAILURE: "receiver synchronisation failed",
    AbortReason.SNR_OUT_OF_RANGE: "measured SNR outside the range of the code family",
    AbortReason.VERIFICATION_FAILED: "verification tags of the reconciled words differ",
    AbortReason.AUTHENTICATION_FAILURE: "classical channel authentication failed",
    AbortReason.PEER_TIMEOUT: "peer timed out",
    AbortReason.PEER_LOST: "peer closed or aborted the session",
    AbortReason.CONFIG_MISMATCH: "the two ends' protocol settings differ",
    AbortReason.HARDWARE_FAULT: "receiver hardware failure (DMA, trigger or board alarm)",
}


class LinkAbort(Exception):
    """A frame, block or session aborted; `detail` is public (no key material)."""

    def __init__(self, reason: AbortReason, detail: str = "") -> None:
        super().__init__(f"{reason.message}: {detail}" if detail else reason.message)
        self.reason = reason
        self.detail = detail


def channel_abort(exc: Exception) -> LinkAbort:
    """Map a classical-channel error to the session-level abort reason."""
    from controller import channel as ch

    if isinstance(exc, ch.ChannelTimeout):
        return LinkAbort(AbortReason.PEER_TIMEOUT, str(exc))
    if isinstance(exc, ch.AuthenticationError | ch.HandshakeError | ch.SequenceError
                  | ch.AuthKeysExhausted):
        return LinkAbort(AbortReason.AUTHENTICATION_FAILURE, str(exc))
    return LinkAbort(AbortReason.PEER_LOST, str(exc))


def config_digest(cfg: LinkConfig) -> bytes:
    """SHA-256 of everything both ends must share: the modulation and protocol sections, the
    detector efficiency `physics.eta` (both ends' estimates and bounds use it), the mother
    code chosen from the planned channel (`mother_code_key`) and the reconciliation
    operating point's efficiency (`reconciliation_point`, which the planned distance, xi and
    v_el decide). The rest of [physics] describes the simulated channel (or is measured, like
    v_el) and may differ between the ends as long as they plan the same code."""
    import json
    from dataclasses import asdict

    point = reconciliation_point(cfg)
    doc = {"modulation": asdict(cfg.modulation), "protocol": asdict(cfg.protocol),
           "detector": {"eta": cfg.physics.eta}, "mother_code": list(mother_code_key(cfg)),
           "operating_point": None if point is None else repr(point.beta)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).digest()


def verify_keys_needed(n_codewords: int) -> int:
    """One-time pool keys (32 bytes) the VERIFY message reserves: one 8-byte hash key per
    codeword, four per pool key."""
    need = max(1, -(-n_codewords // _TAG_KEYS_PER_POOL_KEY))
    if need > MAX_APP_KEYS:
        raise ValueError(f"{n_codewords} codewords in a frame exceed the verification's "
                         f"{MAX_APP_KEYS * _TAG_KEYS_PER_POOL_KEY}: use a longer code")
    return need


def codeword_tags(pool_keys: list[bytes], words: np.ndarray, tagged: np.ndarray) -> np.ndarray:
    """Verification tags (uint8, shape (codewords, 8)) of the words where `tagged` is True
    (zeros elsewhere); codeword i uses 8-byte key i of the reserved one-time pool keys."""
    out = np.zeros((words.shape[0], (VERIFY_TAG_BITS + 7) // 8), np.uint8)
    for i in np.flatnonzero(tagged):
        out[i] = np.frombuffer(verify.tag(_tag_key(pool_keys, i), words[i], VERIFY_TAG_BITS),
                               np.uint8)
    return out


def check_tags(pool_keys: list[bytes], words: np.ndarray, tagged: np.ndarray,
               tags: np.ndarray) -> np.ndarray:
    """Bool per codeword: tagged and its tag matches (constant-time comparison)."""
    ok = np.zeros(words.shape[0], bool)
    for i in np.flatnonzero(tagged):
        ok[i] = verify.verify(_tag_key(pool_keys, i), words[i], bytes(tags[i]),
                              VERIFY_TAG_BITS)
    return ok


def _tag_key(pool_keys: list[bytes], i: int) -> bytes:
    k = verify.KEY_BYTES
    j, r = divmod(i, _TAG_KEYS_PER_POOL_KEY)
    return pool_keys[j][r * k:(r + 1) * k]


def pe_count(n_data: int, fraction: float) -> int:
    """Symbols of a frame of n_data that parameter estimation discloses (at least 100)."""
    return max(100, math.floor(fraction * n_data))


def pe_indices(nonce_a: bytes, nonce_b: bytes, n_data: int, fraction: float) -> np.ndarray:
    """Sorted indices (into a frame's data symbols) of the parameter-estimation subset, drawn
    without replacement from a seed both ends contribute to: SHA-256(nonce_a || nonce_b).
    The subset is public once drawn; it is fixed only after the frame was captured."""
    if len(nonce_a) != NONCE_BYTES or len(nonce_b) != NONCE_BYTES:
        raise ValueError("PE nonces must be 32 bytes each")
    m = pe_count(n_data, fraction)
    if m >= n_data:
        raise ValueError("the PE subset would take the whole frame")
    seed = int.from_bytes(hashlib.sha256(b"cvqkd-pe-v1" + nonce_a + nonce_b).digest(), "little")
    rng = np.random.Generator(np.random.PCG64(seed))
    return np.sort(rng.choice(n_data, size=m, replace=False)).astype(np.int64)


@dataclass(frozen=True)
class PeMoments:
    """Running second moments of PE pairs (Sxx, Sxy, Syy over m real samples, float64): all
    the estimate needs (reconcile.estimation), so a block keeps four numbers, not its PE data.
    Both ends add the same frames' sums in the same order, so they hold the same numbers."""

    sxx: float = 0.0
    sxy: float = 0.0
    syy: float = 0.0
    m: int = 0

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray) -> PeMoments:
        """The sums of one frame's PE pairs (complex or real SNU arrays of equal size)."""
        return cls(*second_moments(x, y))

    def __add__(self, other: PeMoments) -> PeMoments:
        return PeMoments(self.sxx + other.sxx, self.sxy + other.sxy, self.syy + other.syy,
                         self.m + other.m)


def estimate_moments(cfg: LinkConfig, pe: PeMoments, v_el: float) -> ChannelEstimate:
    """The channel estimate from PE sums: the formulas of
    reconcile.estimation.estimate_channel (LGG 2010, Sec. IV; trusted detector: eta from the
    configuration, v_el from Bob's calibration), unbiased 1/(m - 1) noise variance."""
    det, eta = cfg.modulation.detection, cfg.physics.eta
    k = 2.0 if det == "heterodyne" else 1.0
    if pe.m < 2 or pe.sxx <= 0:
        raise ValueError("parameter estimation needs at least 2 samples with non-zero x")
    t = pe.sxy / pe.sxx
    sigma2 = max(pe.syy - 2.0 * t * pe.sxy + t * t * pe.sxx, 0.0) / (pe.m - 1)
    if sigma2 <= 0:
        raise ValueError("estimated noise variance is zero: y is a noiseless copy of x")
    v_a = pe.sxx / pe.m
    transmittance = k * t * t / eta
    excess = k * (sigma2 - 1.0 - v_el) / (eta * transmittance) if transmittance > 0 \
        else math.inf
    t_min, xi_max = worst_case_parameters(t, sigma2, pe.m, v_a, eta, v_el,
                                          cfg.protocol.eps_pe, det)
    return ChannelEstimate(
        detection=det, m=pe.m, v_a=v_a, t=t, sigma2=sigma2, transmittance=transmittance,
        excess_noise=float(excess), snr=t * t * v_a / sigma2, eps_pe=cfg.protocol.eps_pe,
        transmittance_min=float(t_min), excess_noise_max=float(xi_max))


def estimate(cfg: LinkConfig, x_pe: np.ndarray, y_pe: np.ndarray, v_el: float) -> ChannelEstimate:
    """The channel estimate both ends compute from the disclosed pairs (complex SNU)."""
    return estimate_moments(cfg, PeMoments.of(x_pe, y_pe), v_el)


def check_estimate(cfg: LinkConfig, est: ChannelEstimate) -> None:
    """Abort check of one frame's estimate: raises LinkAbort(EXCESS_NOISE) when the frame's
    point estimate of xi is above protocol.xi_abort (an operational alarm: a frame's own
    worst case at eps_PE is far wider than the threshold for short frames; security rests on
    the block's pooled worst case, `block_bound`)."""
    if not est.excess_noise <= cfg.protocol.xi_abort:
        raise LinkAbort(AbortReason.EXCESS_NOISE,
                        f"xi {est.excess_noise:.4g} SNU > {cfg.protocol.xi_abort:g}")


_MOTHER: dict[tuple[str, int], LdpcCode] = {}


# A frame's SNR estimate from m real PE samples scatters by
#   sd_rel = sqrt((4 / SNR + 2) / m)
# (t^2 has twice the relative variance of t = Sxy / Sxx, 1 / (m SNR), and sigma^2 adds 2 / m):
# 0.76 % for a 2^20-symbol frame at SNR 0.4 (2.1e5 reals), 3 % for 2^16. The decoder's
# waterfall is steep in beta (0.911 -> 0.918 takes the FER from 0/64 to 5/64 in the measured
# table), so each frame's code is adapted for its estimate lowered by BACKOFF_SIGMAS sd;
# without it, 4 default frames gave FER 0.125, with it 0. The operating point is chosen at
# the planned SNR lowered by that back-off plus as much again (at least 1 %) for frames whose
# estimate comes out low: the codewords grow as the SNR falls (same code, same beta), and a
# frame they no longer fit loses a whole codeword; the margin leaves ~2 % of a default
# frame's reals unused instead.
BACKOFF_SIGMAS = 1.3


def snr_backoff(snr: float, m: int) -> float:
    """Relative SNR back-off for a frame whose estimate `snr` comes from m real PE samples."""
    return BACKOFF_SIGMAS * math.sqrt((4.0 / max(snr, 1e-6) + 2.0) / max(m, 1))


@functools.lru_cache(maxsize=16)
def reconciliation_point(cfg: LinkConfig) -> operating_point.OperatingPoint | None:
    """The measured operating point (`reconcile.operating_point.choose`) for the planned
    channel, frame and block: the one with the most secret bits per CPU second by the planned
    finite-size (LGG) rate at the FER's 95 % upper bound, among points whose codewords one
    frame fills (the decoder takes one frame per call). None with protocol.reconciliation =
    "fixed" or when no measured point covers the planned SNR (then `beta_target`/`code_n`
    apply). A pure function of the configuration, so both ends choose the same."""
    pr, ph, mo = cfg.protocol, cfg.physics, cfg.modulation
    if pr.reconciliation != "auto":
        return None
    per_symbol = 2 if mo.detection == "heterodyne" else 1
    n_pe = pe_count(pr.frame_symbols, pr.pe_fraction)

    def key_rate(beta: float, fer: float) -> float:
        return float(finite_size_rate(
            mo.v_a, ph.transmittance, ph.xi, beta, n_total=pr.block_symbols,
            pe_fraction=pr.pe_fraction, epsilon=pr.eps_pe, fer=fer, eta=ph.eta,
            v_el=ph.v_el, detection=mo.detection, detector=mo.detector).k_finite_raw)

    snr = expected_snr(cfg)
    b = snr_backoff(snr, per_symbol * n_pe)
    try:
        return operating_point.choose((1 - b - max(0.01, b)) * snr,
                                      per_symbol * (pr.frame_symbols - n_pe), key_rate=key_rate,
                                      d=pr.mdr_dimension, max_frames_per_batch=1)
    except ValueError:
        return None


def decoder_iterations(cfg: LinkConfig) -> int:
    """The decoder's iteration cap: the operating point's, else protocol.decoder_iterations."""
    point = reconciliation_point(cfg)
    return point.max_iter if point is not None else cfg.protocol.decoder_iterations


def mother_code_key(cfg: LinkConfig) -> tuple[str, int]:
    """(MET family member, length) of the mother code: the operating point's, else the
    family member for beta_target at the planned SNR with length code_n."""
    point = reconciliation_point(cfg)
    if point is not None:
        return point.mother, point.n
    snr = expected_snr(cfg)
    target = cfg.protocol.beta_target * 0.5 * math.log2(1.0 + snr)
    spec = met_codes.for_rate(min(target, 0.2))
    return spec.name, met_codes.nearest_n(spec.name, cfg.protocol.code_n)


def mother_code(cfg: LinkConfig) -> LdpcCode:
    """The MET mother code for the configured link's expected SNR (same at both ends)."""
    key = mother_code_key(cfg)
    if key not in _MOTHER:
        _MOTHER[key] = met_codes.get_code(*key)
    return _MOTHER[key]


def expected_snr(cfg: LinkConfig) -> float:
    """Planned SNR per real dimension from the configuration (heterodyne: per quadrature)."""
    p, v_a = cfg.physics, cfg.modulation.v_a
    g = p.eta * p.transmittance
    if cfg.modulation.detection == "heterodyne":
        return g * v_a / (2.0 + 2.0 * p.v_el + g * p.xi)
    return g * v_a / (1.0 + p.v_el + g * p.xi)


def adapt(cfg: LinkConfig, est: ChannelEstimate) -> Adaptation:
    """The mother code punctured (or shortened) for the operating point's efficiency (else
    beta_target) at the frame's estimated SNR."""
    point = reconciliation_point(cfg)
    try:
        if point is not None:
            return point.adapt_to((1 - snr_backoff(est.snr, est.m)) * est.snr,
                                  cfg.protocol.mdr_dimension)
        return rate_adapt.for_snr(mother_code(cfg), est.snr, cfg.protocol.beta_target,
                                  d=cfg.protocol.mdr_dimension)
    except ValueError as exc:
        raise LinkAbort(AbortReason.SNR_OUT_OF_RANGE, f"SNR {est.snr:.3f}: {exc}") from None


def key_reals(symbols: np.ndarray, key_idx: np.ndarray) -> np.ndarray:
    """Key symbols as real samples (heterodyne: re, im interleaved), float64."""
    return np.ascontiguousarray(symbols[key_idx], dtype=np.complex128).view(np.float64)


@dataclass(frozen=True)
class BlockBound:
    """Finite-size accounting of one privacy-amplification block (both ends compute it)."""

    estimate: ChannelEstimate
    beta: float
    fer: float
    n_total: int  # symbols of the block's frames (PE included)
    n_decoded: int  # key symbols in verified codewords
    bits_per_symbol: float  # bound per decoded key symbol (pa_length's input)
    rate_per_block_symbol: float  # what the key store gains per symbol of the block, >= 0
    pa: PaLength


def block_bound(cfg: LinkConfig, est: ChannelEstimate, *, v_el: float, n_total: int,
                n_decoded: int,
                net_bits: int, codewords: int, failed: int, input_bits: int,
                leak_verify_bits: int, auth_key_bits: int) -> BlockBound:
    """Hash output length of a block from its pooled PE estimate.

    beta = (net reconciled bits per decoded symbol) / I_AB(estimated SNR), capped at 1
    (conservative); the LGG/composable bracket beta I_AB - chi_BE(T_min, xi_max) - penalties
    per key symbol (the FiniteSizeRate is divided back by (n_key / N), FER passed as 0, since
    the failed codewords are simply not in the hashed string). `security_bound` picks LGG,
    composable, or the smaller of the two.
    """
    het = est.detection == "heterodyne"
    i_ab = (1.0 if het else 0.5) * math.log2(1.0 + max(est.snr, 0.0))
    r_sym = net_bits / n_decoded if n_decoded else 0.0
    beta = min(1.0, r_sym / i_ab) if i_ab > 0 else 0.0
    fer = failed / codewords if codewords else 1.0
    if beta <= 0.0 or n_decoded == 0:
        bracket = -math.inf
    else:
        fs = finite_size_rate_from_estimate(est, beta, n_total=n_total, eta=cfg.physics.eta,
                                            v_el=v_el, fer=0.0,
                                            detector=cfg.modulation.detector)
        share = float(fs.n_key) / n_total  # k = (n_key / N) bracket
        lgg, comp = float(fs.k_finite_raw) / share, float(fs.k_composable_raw) / share
        bracket = {"lgg": lgg, "composable": comp, "min": min(lgg, comp)}[
            cfg.protocol.security_bound]
    pa = output_length(n_decoded, bracket, input_bits=input_bits,
                       leak_verify_bits=leak_verify_bits, auth_key_bits=auth_key_bits,
                       eps_pa=cfg.protocol.eps_pa, pa_term_in_rate=True)
    return BlockBound(est, beta, fer, n_total, n_decoded, bracket,
                      pa.hash_output_bits / n_total if n_total else 0.0, pa)

