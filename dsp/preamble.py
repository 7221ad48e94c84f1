"""Zadoff-Chu (CAZAC) sequences for frame and timing synchronisation.

For odd length N and root u coprime with N, z_k = exp(-j pi u k (k + 1) / N) has constant
amplitude and an ideal periodic autocorrelation (zero at every non-zero lag); cross-correlation
between roots u1, u2 with u1 - u2 coprime to N has constant magnitude sqrt(N)
(Chu, IEEE Trans. Inf. Theory 18, 531 (1972); 3GPP TS 36.211 sec. 5.7.2 uses the same form).
"""

from __future__ import annotations

import math

import numpy as np


def zadoff_chu(length: int, root: int) -> np.ndarray:
    """Unit-amplitude Zadoff-Chu sequence of odd `length` and `root` coprime with it."""
    if length < 3 or length % 2 == 0:
        raise ValueError("Zadoff-Chu length must be odd and >= 3")
    if math.gcd(root, length) != 1:
        raise ValueError("Zadoff-Chu root must be coprime with the length")
    k = np.arange(length, dtype=np.float64)
    return np.exp(-1j * np.pi * root * k * (k + 1) / length)
