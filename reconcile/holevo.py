"""Closed-form mutual information I_AB and Holevo bound chi_BE of GG02 with reverse reconciliation.

Gaussian-modulated coherent states (modulation variance V_A per quadrature, SNU), a phase-
insensitive Gaussian channel of transmittance T and excess noise xi referred to the channel INPUT,
and a receiver of efficiency eta and electronic noise v_el (SNU, per homodyne detector) that is
TRUSTED: Eve does not control it. Collective attacks; Gaussian attacks are optimal (Garcia-Patron
& Cerf, PRL 97, 190503 (2006); Navascues, Grosshans & Acin, PRL 97, 190502 (2006)), so the
entangling cloner gives the bound.

Formulas: Lodewyck et al., PRA 76, 042305 (2007) (homodyne) and Fossier et al., J. Phys. B 42,
114014 (2009) (heterodyne), rewritten with the entanglement-based quantities
    a = V = V_A + 1,  b = 1 + T (V_A + xi),  c^2 = T (V^2 - 1),  sqrt(B) = ab - c^2,
so that nothing cancels: sqrt(B) = V (1 - T + T xi) + T, A = a^2 + b^2 - 2 c^2 and
sqrt(A^2 - 4B) = |b - a| z with z^2 = (b - a)^2 + 4 sqrt(B) (Laudenbach et al., Adv. Quantum
Technol. 1, 1800011 (2018), Eq. 13 ff. for the untrusted case). All functions broadcast and do
not validate (see `reconcile.keyrate` for the checked public API).
"""

from __future__ import annotations

import numpy as np

_LN2 = np.log(2.0)
_TINY = 1e-300  # floor for x in g(): x log1p(1/x) -> 0 without 0 * inf


def thermal_entropy(nu: np.ndarray) -> np.ndarray:
    """Von Neumann entropy (bits) of a mode with symplectic eigenvalue nu >= 1 (SNU):
    G((nu - 1)/2), G(x) = (x + 1) log2(x + 1) - x log2(x) = log2(1 + x) + x log2(1 + 1/x).
    The second form has no large cancelling terms; nu a hair below 1 (rounding) counts as 1."""
    x = np.maximum(0.5 * (np.asarray(nu, dtype=float) - 1.0), _TINY)
    return (np.log1p(x) + x * np.log1p(1.0 / x)) / _LN2


def _pair(s: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two symplectic eigenvalues from nu1^2 + nu2^2 = s and nu1 nu2 = p (p > 0):
    nu1^2 = (s + sqrt(s^2 - 4 p^2))/2 and nu2 = p / nu1 (no cancelling difference)."""
    disc = np.sqrt(np.maximum(s * s - 4.0 * p * p, 0.0))
    nu1 = np.sqrt(0.5 * (s + disc))
    return nu1, p / nu1


def mutual_information(
    v_a: np.ndarray, t: np.ndarray, xi: np.ndarray, eta: np.ndarray, v_el: np.ndarray,
    heterodyne: bool,
) -> np.ndarray:
    """I_AB in bits per symbol: 1/2 log2(1 + SNR) (homodyne) or log2(1 + SNR) (heterodyne), with
    SNR = eta T V_A / (1 + v_el + eta T xi) or eta T V_A / (2 + 2 v_el + eta T xi) (per quadrature).
    """
    g = eta * t
    if heterodyne:
        return np.log1p(g * v_a / (2.0 + 2.0 * v_el + g * xi)) / _LN2
    return 0.5 * np.log1p(g * v_a / (1.0 + v_el + g * xi)) / _LN2


def holevo_trusted(
    v_a: np.ndarray, t: np.ndarray, xi: np.ndarray, eta: np.ndarray, v_el: np.ndarray,
    heterodyne: bool,
) -> np.ndarray:
    """chi_BE in bits per symbol, reverse reconciliation, trusted detector (eta, v_el).

    chi_BE = G(nu1) + G(nu2) - G(nu3) - G(nu4) with nu1,2 those of Alice-Bob's state before the
    detector and nu3,4 those of Alice plus the detector's noise modes conditioned on Bob's
    measurement (the fifth eigenvalue is 1). eta = 1, v_el = 0 gives the ideal detector.
    """
    v = v_a + 1.0
    b = 1.0 + t * (v_a + xi)  # Bob's variance before the detector
    sqrt_b = v * (1.0 - t + t * xi) + t  # = ab - c^2 = sqrt(det gamma_AB)
    c2 = t * (v * v - 1.0)
    bma = t * xi - (1.0 - t) * v_a  # b - a
    z = np.sqrt(bma * bma + 4.0 * sqrt_b)
    nu1 = 0.5 * (z + np.abs(bma))
    nu2 = sqrt_b / nu1
    a_sum = v * v + b * b - 2.0 * c2  # Lodewyck's A = nu1^2 + nu2^2
    if heterodyne:
        chi = (2.0 - eta + 2.0 * v_el) / eta
        den = b + chi  # T (V + chi_tot)
        c_sum = (a_sum * chi * chi + sqrt_b * sqrt_b + 1.0 + 2.0 * chi * (v * sqrt_b + b)
                 + 2.0 * c2) / (den * den)
        d_root = (v + sqrt_b * chi) / den
    else:
        chi = (1.0 + v_el) / eta - 1.0
        den = b + chi
        c_sum = (v * sqrt_b + b + a_sum * chi) / den
        d_root = np.sqrt(sqrt_b * (v + sqrt_b * chi) / den)
    nu3, nu4 = _pair(c_sum, d_root)
    chi_be = (thermal_entropy(nu1) + thermal_entropy(nu2)
              - thermal_entropy(nu3) - thermal_entropy(nu4))
    # When all four eigenvalues lie within ~1e-8 of 1 (V_A -> 0 with xi -> 0) the split of nu3,
    # nu4 has an absolute error ~sqrt(machine eps): chi_BE is then good to ~1e-8 bits only and
    # may come out a hair negative. A Holevo quantity is >= 0: clip.
    return np.maximum(chi_be, 0.0)
