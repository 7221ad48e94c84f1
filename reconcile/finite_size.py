"""Finite-size secret key rates of GG02 at worst-case channel parameters, with the frame error
rate (FER) of reconciliation accounted. Bits per symbol of the whole block (N symbols).

A block of N symbols is split into m_s = floor(f_PE N) symbols disclosed for parameter
estimation (PE) and n = N - m_s key symbols. PE bounds T and xi at confidence eps_PE with
`reconcile.estimation.worst_case_parameters` (Leverrier, Grosshans & Grangier, PRA 81, 062343
(2010), LGG below); m counts real PE samples (2 m_s for heterodyne).

- LGG 2010, Eq. (5)/(30):  K = (1 - FER) (n/N) [beta I_AB - chi_BE(T_min, xi_max) - Delta(n)],
  Delta(n) = 7 sqrt(log2(2/eps)/n) + (2/n) log2(1/eps)  (eps_bar = eps_PA = eps).
- Composable (Pirandola, Phys. Rev. Research 3, 043014 (2021), Eq. for R; Mountogiannakis et al.
  arXiv:2103.16589):  R = (p_EC n/N) [R_M - Delta_AEP/sqrt(n) + Theta/n], p_EC = 1 - FER,
  R_M = beta I_AB - chi_BE(T_min, xi_max),
  Delta_AEP = 4 log2(2 sqrt(|Z|) + 1) sqrt(log2(18 / (p_EC^2 eps_s^4))), |Z| = 2^bits the size of
  the digitised alphabet per symbol, Theta = log2(p_EC (1 - eps_s^2/3)) + 2 log2(sqrt(2) eps_h).
  Heterodyne symbols carry two digitised quadratures: bits = 2 x bits per quadrature.
I_AB is taken at the (expected) estimated parameters, chi_BE at the worst case. See
docs/security-model.md for the assumptions and the epsilon bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reconcile import holevo
from reconcile.estimation import ChannelEstimate, worst_case_parameters
from reconcile.keyrate import (
    Detection,
    Detector,
    check_detection,
    check_detector,
    check_range,
    effective_channel,
)

DEFAULT_EPSILON = 1e-10
DEFAULT_PE_FRACTION = 0.1
DEFAULT_DIGITIZATION_BITS = 5  # per quadrature (Pirandola 2021 uses a few bits; 5 is typical)


def expected_estimates(
    transmittance: np.ndarray, xi: np.ndarray, eta: np.ndarray, v_el: np.ndarray,
    heterodyne: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """(t, sigma2) that PE would measure on average: t = sqrt(eta T) (homodyne) or
    sqrt(eta T / 2) (heterodyne, per quadrature); sigma2 = 1 + v_el + eta T xi (/2 for xi with
    heterodyne), in SNU."""
    g = eta * transmittance
    if heterodyne:
        return np.sqrt(g / 2.0), 1.0 + v_el + g * xi / 2.0
    return np.sqrt(g), 1.0 + v_el + g * xi


def lgg_penalty(n_key: np.ndarray, epsilon: np.ndarray) -> np.ndarray:
    """Delta(n) of LGG 2010 (bits per key symbol), with eps_bar = eps_PA = epsilon."""
    return 7.0 * np.sqrt(np.log2(2.0 / epsilon) / n_key) + 2.0 * np.log2(1.0 / epsilon) / n_key


def composable_penalties(
    p_ec: np.ndarray, eps_s: np.ndarray, eps_h: np.ndarray, bits_per_symbol: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(Delta_AEP, Theta) of Pirandola 2021 (bits): the key loses Delta_AEP/sqrt(n) - Theta/n."""
    delta_aep = 4.0 * np.log2(2.0 ** (1.0 + bits_per_symbol / 2.0) + 1.0) * np.sqrt(
        np.log2(18.0 / (p_ec**2 * eps_s**4)))
    theta = np.log2(p_ec * (1.0 - eps_s**2 / 3.0)) + 2.0 * np.log2(np.sqrt(2.0) * eps_h)
    return delta_aep, theta


@dataclass(frozen=True)
class FiniteSizeRate:
    """Finite-size rates (bits per symbol of the block, FER included) and what they rest on.
    *_raw may be negative (or -inf where PE certifies no transmittance); the others are >= 0."""

    t_min: np.ndarray  # worst-case channel transmittance
    xi_max: np.ndarray  # worst-case excess noise, SNU, input-referred (+inf if uncertified)
    n_key: np.ndarray  # key symbols
    m_pe: np.ndarray  # PE samples, real dimensions
    chi_be_worst: np.ndarray
    k_finite_raw: np.ndarray
    k_finite: np.ndarray
    k_composable_raw: np.ndarray
    k_composable: np.ndarray


def _check_block(n_total, epsilon, fer, digitization_bits):
    n_tot = np.floor(check_range("n_total", n_total, 1.0, low_open=False))
    eps = check_range("epsilon", epsilon, 0.0, 1.0, high_open=True)
    fer_ = check_range("fer", fer, 0.0, 1.0, low_open=False, high_open=True)
    if not (isinstance(digitization_bits, int | np.integer) and digitization_bits >= 1):
        raise ValueError(f"digitization_bits must be an integer >= 1, got {digitization_bits!r}")
    return n_tot, eps, fer_


def _at_worst_case(
    i_ab, v_a, t_min, xi_max, beta, n_key, n_tot, m_pe, eps, fer, eta, v_el,
    het: bool, trusted: bool, digitization_bits: int,
) -> FiniteSizeRate:
    """Both finite-size rates from I_AB (bits/symbol) and the worst-case (T_min, xi_max)."""
    certified = t_min > 0
    # placeholders where nothing is certified keep the closed forms finite; masked below
    t_w = np.where(certified, t_min, 1.0)
    xi_w = np.where(certified, xi_max, 0.0)
    t_e, xi_e, eta_e, v_el_e = effective_channel(t_w, xi_w, eta, v_el, het, trusted)
    chi_w = np.where(certified, holevo.holevo_trusted(v_a, t_e, xi_e, eta_e, v_el_e, het), np.inf)
    r_m = beta * i_ab - chi_w
    p_ec = 1.0 - fer
    k_lgg = p_ec * (n_key / n_tot) * (r_m - lgg_penalty(n_key, eps))
    bits = digitization_bits * (2 if het else 1)
    delta_aep, theta = composable_penalties(p_ec, eps, eps, bits)
    k_comp = p_ec * (n_key / n_tot) * (r_m - delta_aep / np.sqrt(n_key) + theta / n_key)
    return FiniteSizeRate(
        t_min=t_min, xi_max=xi_max, n_key=n_key, m_pe=m_pe, chi_be_worst=chi_w,
        k_finite_raw=k_lgg, k_finite=np.maximum(k_lgg, 0.0),
        k_composable_raw=k_comp, k_composable=np.maximum(k_comp, 0.0),
    )


def finite_size_rate(
    v_a: object, transmittance: object, xi: object, beta: object, *,
    n_total: object, pe_fraction: object = DEFAULT_PE_FRACTION,
    epsilon: object = DEFAULT_EPSILON, fer: object = 0.0,
    eta: object = 1.0, v_el: object = 0.0,
    detection: Detection = "heterodyne", detector: Detector = "trusted",
    digitization_bits: int = DEFAULT_DIGITIZATION_BITS,
) -> FiniteSizeRate:
    """LGG and composable finite-size rates for a PLANNED link (expected PE outcomes).

    n_total: block length N in symbols; pe_fraction: share of symbols disclosed for PE; epsilon:
    every security parameter (eps_PE, eps_PA, eps_s, eps_h); fer: frame error rate of
    reconciliation in [0, 1). Other arguments as `reconcile.keyrate.asymptotic_rate`; broadcasts.
    """
    het, trusted = check_detection(detection), check_detector(detector)
    va = check_range("v_a", v_a, 0.0)
    t = check_range("transmittance", transmittance, 0.0, 1.0)
    xi_ = check_range("xi", xi, 0.0, low_open=False)
    beta_ = check_range("beta", beta, 0.0, 1.0)
    eta_ = check_range("eta", eta, 0.0, 1.0)
    v_el_ = check_range("v_el", v_el, 0.0, low_open=False)
    f_pe = check_range("pe_fraction", pe_fraction, 0.0, 1.0, high_open=True)
    n_tot, eps, fer_ = _check_block(n_total, epsilon, fer, digitization_bits)
    m_sym = np.floor(f_pe * n_tot)
    n_key = n_tot - m_sym
    m_pe = m_sym * (2.0 if het else 1.0)
    if np.any(m_pe < 2) or np.any(n_key < 1):
        raise ValueError("n_total and pe_fraction leave fewer than 2 PE samples or no key symbols")
    t_hat, sigma2 = expected_estimates(t, xi_, eta_, v_el_, het)
    t_min, xi_max = worst_case_parameters(
        t_hat, sigma2, m_pe, va, eta_, v_el_, eps, "heterodyne" if het else "homodyne")
    i_ab = holevo.mutual_information(va, t, xi_, eta_, v_el_, het)
    return _at_worst_case(i_ab, va, t_min, xi_max, beta_, n_key, n_tot, m_pe, eps, fer_, eta_,
                          v_el_, het, trusted, digitization_bits)


def finite_size_rate_from_estimate(
    estimate: ChannelEstimate, beta: float, *, n_total: int, eta: float, v_el: float,
    fer: float = 0.0, detector: Detector = "trusted",
    digitization_bits: int = DEFAULT_DIGITIZATION_BITS,
) -> FiniteSizeRate:
    """Both finite-size rates from MEASURED PE data (`reconcile.estimation.estimate_channel`).

    n_total: symbols in the block, PE symbols included (estimate.m real samples are m symbols
    for homodyne, m/2 for heterodyne); eta, v_el: the receiver calibration the estimate used.
    I_AB comes from the estimated SNR, chi_BE from the estimate's worst-case (T_min, xi_max);
    every security parameter equals estimate.eps_pe.
    """
    het = check_detection(estimate.detection)
    trusted = check_detector(detector)
    beta_ = check_range("beta", beta, 0.0, 1.0)
    eta_ = check_range("eta", eta, 0.0, 1.0)
    v_el_ = check_range("v_el", v_el, 0.0, low_open=False)
    n_tot, eps, fer_ = _check_block(n_total, estimate.eps_pe, fer, digitization_bits)
    m_pe = np.float64(estimate.m)
    n_key = n_tot - m_pe / (2.0 if het else 1.0)
    if np.any(n_key < 1):
        raise ValueError(f"n_total ({n_total}) leaves no key symbols after {estimate.m} PE samples")
    i_ab = (1.0 if het else 0.5) * np.log2(1.0 + max(estimate.snr, 0.0))
    return _at_worst_case(np.float64(i_ab), np.float64(estimate.v_a),
                          np.float64(estimate.transmittance_min),
                          np.float64(estimate.excess_noise_max), beta_, n_key, n_tot, m_pe, eps,
                          fer_, eta_, v_el_, het, trusted, digitization_bits)
