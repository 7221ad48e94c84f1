"""Asymptotic secret key rates of GG02 (reverse reconciliation), the PLOB bound and the optimal
modulation variance. Everything broadcasts over numpy arrays.

Units: variances in SNU (vacuum = 1), xi referred to the channel INPUT, rates in bits per symbol
(channel use). Key rate (Devetak-Winter, collective attacks): K = beta I_AB - chi_BE, clipped at 0.

Detector models (see docs/security-model.md):
- "trusted": eta and v_el are calibrated and out of Eve's reach (Lodewyck 2007, Fossier 2009).
- "untrusted": Eve is credited with the detector too; it is then an ideal detector behind the
  channel T' = eta T with input-referred excess noise xi' = xi + k v_el / (eta T), k = 1 for
  homodyne and 2 for heterodyne (the same Bob statistics, Laudenbach et al. 2018, Sec. 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from reconcile import holevo

Detection = Literal["homodyne", "heterodyne"]
Detector = Literal["trusted", "untrusted"]

DETECTIONS: tuple[str, ...] = ("homodyne", "heterodyne")
DETECTORS: tuple[str, ...] = ("trusted", "untrusted")

# Golden-section search range for V_A (SNU) and its iteration count (interval shrinks by 0.618^n
# in ln V_A: 60 steps take ln(1e5) to 3e-12).
VA_SEARCH_RANGE: tuple[float, float] = (1e-2, 1e3)
_GOLDEN_STEPS = 60
_INV_PHI = (np.sqrt(5.0) - 1.0) / 2.0


def _array(name: str, value: object) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or an array of numbers") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr[~np.isfinite(arr)].flat[0]}")
    return arr


def check_range(
    name: str, value: object, low: float, high: float = np.inf, *,
    low_open: bool = True, high_open: bool = False,
) -> np.ndarray:
    """value as a float array, or ValueError naming `name` if any element is outside the
    interval (low, high] (open/closed ends as given)."""
    arr = _array(name, value)
    bad_low = arr <= low if low_open else arr < low
    bad_high = arr >= high if high_open else arr > high
    if np.any(bad_low | bad_high):
        lo = "(" if low_open else "["
        hi = ")" if high_open or np.isinf(high) else "]"
        worst = arr[bad_low | bad_high].flat[0] if arr.ndim else float(arr)
        raise ValueError(f"{name} must lie in {lo}{low:g}, {high:g}{hi}, got {worst:g}")
    return arr


def check_detection(detection: str) -> bool:
    """True for heterodyne, False for homodyne; ValueError otherwise."""
    if detection not in DETECTIONS:
        raise ValueError(f"detection must be one of {DETECTIONS}, got {detection!r}")
    return detection == "heterodyne"


def check_detector(detector: str) -> bool:
    """True for a trusted detector, False for untrusted; ValueError otherwise."""
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
    return detector == "trusted"


def fibre_transmittance(distance_km: object, loss_db_per_km: object = 0.2) -> np.ndarray:
    """T = 10^(-loss L / 10) for a fibre of length L km and attenuation loss dB/km."""
    dist = check_range("distance_km", distance_km, 0.0, low_open=False)
    loss = check_range("loss_db_per_km", loss_db_per_km, 0.0, low_open=False)
    return 10.0 ** (-dist * loss / 10.0)


def plob_bound(transmittance: object) -> np.ndarray:
    """Repeaterless secret-key capacity -log2(1 - T), bits per channel use (Pirandola, Laurenza,
    Ottaviani & Banchi, Nat. Commun. 8, 15043 (2017)); +inf at T = 1."""
    t = check_range("transmittance", transmittance, 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return -np.log1p(-t) / np.log(2.0)


def effective_channel(
    t: np.ndarray, xi: np.ndarray, eta: np.ndarray, v_el: np.ndarray, heterodyne: bool,
    trusted: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(T, xi, eta, v_el) that the trusted-detector formulas take: unchanged for a trusted
    detector; for an untrusted one the detector joins the channel (T' = eta T,
    xi' = xi + k v_el / (eta T)) and the detector becomes ideal (eta = 1, v_el = 0)."""
    if trusted:
        return t, xi, eta, v_el
    k = 2.0 if heterodyne else 1.0
    g = eta * t
    return g, xi + k * v_el / g, np.ones_like(g), np.zeros_like(g)


@dataclass(frozen=True)
class AsymptoticRate:
    """Asymptotic rate, bits per symbol. K = max(K_raw, 0), K_raw = beta I_AB - chi_BE."""

    i_ab: np.ndarray
    chi_be: np.ndarray
    k_raw: np.ndarray
    k: np.ndarray


def _checked(v_a, transmittance, xi, beta, eta, v_el):
    return (
        check_range("v_a", v_a, 0.0),
        check_range("transmittance", transmittance, 0.0, 1.0),
        check_range("xi", xi, 0.0, low_open=False),
        check_range("beta", beta, 0.0, 1.0),
        check_range("eta", eta, 0.0, 1.0),
        check_range("v_el", v_el, 0.0, low_open=False),
    )


def _rate(v_a, t, xi, beta, eta, v_el, heterodyne: bool, trusted: bool):
    """Unchecked (I_AB, chi_BE, K_raw)."""
    i_ab = holevo.mutual_information(v_a, t, xi, eta, v_el, heterodyne)
    t_e, xi_e, eta_e, v_el_e = effective_channel(t, xi, eta, v_el, heterodyne, trusted)
    chi = holevo.holevo_trusted(v_a, t_e, xi_e, eta_e, v_el_e, heterodyne)
    return i_ab, chi, beta * i_ab - chi


def asymptotic_rate(
    v_a: object, transmittance: object, xi: object, beta: object, *,
    eta: object = 1.0, v_el: object = 0.0,
    detection: Detection = "heterodyne", detector: Detector = "trusted",
) -> AsymptoticRate:
    """Devetak-Winter rate beta I_AB - chi_BE (bits/symbol), reverse reconciliation.

    v_a: modulation variance (SNU, > 0); transmittance in (0, 1]; xi: input-referred excess
    noise (SNU, >= 0); beta: reconciliation efficiency in (0, 1]; eta in (0, 1]; v_el >= 0 (SNU).
    Arguments broadcast; impossible values raise ValueError naming the parameter.
    """
    het, trusted = check_detection(detection), check_detector(detector)
    args = _checked(v_a, transmittance, xi, beta, eta, v_el)
    i_ab, chi, k_raw = _rate(*args, het, trusted)
    return AsymptoticRate(i_ab=i_ab, chi_be=chi, k_raw=k_raw, k=np.maximum(k_raw, 0.0))


def optimal_modulation(
    transmittance: object, xi: object, beta: object, *,
    eta: object = 1.0, v_el: object = 0.0,
    detection: Detection = "heterodyne", detector: Detector = "trusted",
    va_range: tuple[float, float] = VA_SEARCH_RANGE,
) -> tuple[np.ndarray, AsymptoticRate]:
    """V_A (SNU) maximising K_raw at each point, and the rate there.

    Golden-section search over ln V_A in va_range, vectorised over all points at once (K_raw is
    unimodal in V_A for these channels; tests check it against a brute-force grid). Where the
    optimum sits at an end of the range the end is returned.
    """
    het, trusted = check_detection(detection), check_detector(detector)
    lo_va, hi_va = va_range
    if not 0.0 < lo_va < hi_va:
        raise ValueError(f"va_range must satisfy 0 < low < high, got {va_range}")
    _, t, xi_, beta_, eta_, v_el_ = _checked(1.0, transmittance, xi, beta, eta, v_el)
    shape = np.broadcast_shapes(t.shape, xi_.shape, beta_.shape, eta_.shape, v_el_.shape)
    lo = np.full(shape, np.log(lo_va))
    hi = np.full(shape, np.log(hi_va))

    def f(log_va: np.ndarray) -> np.ndarray:
        return _rate(np.exp(log_va), t, xi_, beta_, eta_, v_el_, het, trusted)[2]

    x1 = hi - _INV_PHI * (hi - lo)
    x2 = lo + _INV_PHI * (hi - lo)
    f1, f2 = f(x1), f(x2)
    for _ in range(_GOLDEN_STEPS):
        left = f1 >= f2  # maximum in [lo, x2]
        hi = np.where(left, x2, hi)
        lo = np.where(left, lo, x1)
        x_new = np.where(left, hi - _INV_PHI * (hi - lo), lo + _INV_PHI * (hi - lo))
        f_new = f(x_new)
        x1, x2 = np.where(left, x_new, x2), np.where(left, x1, x_new)
        f1, f2 = np.where(left, f_new, f2), np.where(left, f1, f_new)
    best = np.where(f1 >= f2, x1, x2)
    # compare with the range ends (monotone K_raw pushes the optimum to an end)
    cands = np.stack([best, np.full(shape, np.log(lo_va)), np.full(shape, np.log(hi_va))])
    vals = np.stack([f(c) for c in cands])
    v_opt = np.exp(np.take_along_axis(cands, vals.argmax(axis=0)[None], axis=0)[0])
    i_ab, chi, k_raw = _rate(v_opt, t, xi_, beta_, eta_, v_el_, het, trusted)
    return v_opt, AsymptoticRate(i_ab=i_ab, chi_be=chi, k_raw=k_raw, k=np.maximum(k_raw, 0.0))
