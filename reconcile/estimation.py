"""Parameter estimation: transmittance, excess noise and their worst-case bounds.

From Alice's disclosed symbols x and Bob's measured quadratures y (both in SNU) on the
parameter-estimation (PE) subset, following Leverrier, Grosshans & Grangier, "Finite-size
analysis of a continuous-variable quantum key distribution", PRA 81, 062343 (2010), Sec. IV:

    y = t x + z,   t = sqrt(eta T)     (homodyne)
                   t = sqrt(eta T / 2) (heterodyne, per quadrature)
    Var(z) = sigma2 = 1 + v_el + eta T xi        (homodyne)
                    = 1 + v_el + eta T xi / 2    (heterodyne, per quadrature)

with xi referred to the channel input, eta and v_el from the receiver's calibration (trusted
detector; pass eta = 1, v_el = 0 for an untrusted detector). Heterodyne data count both
quadratures: m real samples = 2 x symbols.

Only three sums are needed (Sxx, Sxy, Syy); they are accumulated in float64 chunk by chunk over
real views of the inputs, so 10^8 complex samples are never copied whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import erfcinv

Detection = Literal["homodyne", "heterodyne"]

_CHUNK = 1 << 20  # real samples per accumulation step


def _scale(detection: str) -> float:
    """Ratio T / (t^2 / eta): 1 for homodyne, 2 for heterodyne (per-quadrature 50:50 split)."""
    if detection == "homodyne":
        return 1.0
    if detection == "heterodyne":
        return 2.0
    raise ValueError(f"detection must be 'homodyne' or 'heterodyne', got {detection!r}")


def confidence_z(eps_pe: float | np.ndarray) -> np.ndarray:
    """z such that a Gaussian estimate lies outside +-z sigma with probability eps_pe:
    z = sqrt(2) erfinv(1 - eps_pe) = sqrt(2) erfcinv(eps_pe) (stable for tiny eps_pe)."""
    eps = np.asarray(eps_pe, dtype=float)
    if np.any((eps <= 0) | (eps >= 1)):
        raise ValueError("eps_pe must lie in (0, 1)")
    return np.sqrt(2.0) * erfcinv(eps)


def worst_case_parameters(
    t: float | np.ndarray,
    sigma2: float | np.ndarray,
    m: float | np.ndarray,
    v_a: float | np.ndarray,
    eta: float | np.ndarray,
    v_el: float | np.ndarray,
    eps_pe: float | np.ndarray,
    detection: Detection,
) -> tuple[np.ndarray, np.ndarray]:
    """Worst-case (T_min, xi_max) at confidence eps_pe (LGG 2010, Eqs. 19-21). Broadcasts.

    t: estimate of sqrt(eta T) (homodyne) or sqrt(eta T / 2) (heterodyne); sigma2: estimated
    noise variance in SNU; m: PE samples (real dimensions); v_a: modulation variance (SNU);
    eta, v_el: detector efficiency and electronic noise (SNU).
      t_min = t - z sqrt(sigma2 / (m V_A)),   sigma2_max = sigma2 + z sigma2 sqrt(2 / m)
      T_min = k t_min^2 / eta,   xi_max = k (sigma2_max - 1 - v_el) / (eta T_min),
    with k = 1 (homodyne) or 2 (heterodyne). Where t_min <= 0 no transmittance can be
    certified: T_min = 0 and xi_max = +inf (no key). xi_max is clipped below at 0 and T_min
    above at 1, both conservative.
    """
    k = _scale(detection)
    t, sigma2, m, v_a, eta, v_el = np.broadcast_arrays(
        *(np.asarray(a, dtype=float) for a in (t, sigma2, m, v_a, eta, v_el))
    )
    if np.any(m < 2):
        raise ValueError("m (PE samples) must be at least 2")
    if np.any(v_a <= 0) or np.any(sigma2 <= 0):
        raise ValueError("v_a and sigma2 must be positive")
    if np.any((eta <= 0) | (eta > 1)) or np.any(v_el < 0):
        raise ValueError("eta must lie in (0, 1] and v_el must be >= 0")
    z = confidence_z(eps_pe)
    t_min = np.abs(t) - z * np.sqrt(sigma2 / (m * v_a))
    sigma2_max = sigma2 + z * sigma2 * np.sqrt(2.0 / m)
    certified = t_min > 0
    t_min = np.where(certified, t_min, 1.0)  # placeholder avoids 0-division; masked below
    T_min = np.minimum(k * t_min**2 / eta, 1.0)
    xi_max = np.maximum(k * (sigma2_max - 1.0 - v_el) / (eta * T_min), 0.0)
    return np.where(certified, T_min, 0.0), np.where(certified, xi_max, np.inf)


def _real_view(a: np.ndarray) -> np.ndarray:
    """The array as a flat real view (complex -> interleaved re/im) without copying."""
    a = np.asarray(a)
    if np.iscomplexobj(a):
        a = np.ascontiguousarray(a)
        return a.reshape(-1).view(a.real.dtype)
    return a.reshape(-1)


def second_moments(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, int]:
    """(Sxx, Sxy, Syy, m) over the real dimensions of x and y, accumulated in float64."""
    xr, yr = _real_view(x), _real_view(y)
    if xr.shape != yr.shape:
        raise ValueError(f"x and y differ in size: {xr.size} vs {yr.size} real samples")
    sxx = sxy = syy = 0.0
    for i in range(0, xr.size, _CHUNK):
        xc = xr[i : i + _CHUNK].astype(np.float64, copy=False)
        yc = yr[i : i + _CHUNK].astype(np.float64, copy=False)
        sxx += float(np.dot(xc, xc))
        sxy += float(np.dot(xc, yc))
        syy += float(np.dot(yc, yc))
    if not all(np.isfinite(v) for v in (sxx, sxy, syy)):
        raise ValueError("x or y contains non-finite values")
    return sxx, sxy, syy, int(xr.size)


@dataclass(frozen=True)
class ChannelEstimate:
    """Estimated channel and its worst-case bounds. Variances in SNU, xi input-referred."""

    detection: str
    m: int  # PE samples (real dimensions)
    v_a: float  # empirical modulation variance per real dimension, SNU
    t: float  # estimate of sqrt(eta T) (homodyne) or sqrt(eta T / 2) (heterodyne)
    sigma2: float  # noise variance of y given x, SNU
    transmittance: float
    excess_noise: float
    snr: float  # t^2 V_A / sigma2, per real dimension
    eps_pe: float
    transmittance_min: float
    excess_noise_max: float


def estimate_channel(
    x: np.ndarray,
    y: np.ndarray,
    *,
    eta: float,
    v_el: float,
    detection: Detection,
    eps_pe: float = 1e-10,
) -> ChannelEstimate:
    """Estimate T, xi and SNR from PE data x (Alice) and y (Bob), and their worst-case bounds.

    x, y: real (homodyne) or complex (heterodyne) arrays in SNU, of equal size, any dtype.
    The noise variance uses the unbiased 1/(m - 1) normalisation.
    """
    k = _scale(detection)
    sxx, sxy, syy, m = second_moments(x, y)
    if m < 2 or sxx <= 0:
        raise ValueError("parameter estimation needs at least 2 samples with non-zero x")
    t = sxy / sxx
    sigma2 = max(syy - 2.0 * t * sxy + t * t * sxx, 0.0) / (m - 1)
    if sigma2 <= 0:
        raise ValueError("estimated noise variance is zero: y is a noiseless copy of x")
    v_a = sxx / m
    transmittance = k * t * t / eta
    excess = k * (sigma2 - 1.0 - v_el) / (eta * transmittance) if transmittance > 0 else np.inf
    t_min, xi_max = worst_case_parameters(t, sigma2, m, v_a, eta, v_el, eps_pe, detection)
    return ChannelEstimate(
        detection=detection, m=m, v_a=v_a, t=t, sigma2=sigma2, transmittance=transmittance,
        excess_noise=float(excess), snr=t * t * v_a / sigma2, eps_pe=eps_pe,
        transmittance_min=float(t_min), excess_noise_max=float(xi_max),
    )
