"""Laser phase noise and the deterministic beat-frequency model.

A free-running semiconductor laser with Lorentzian line shape of full width at half maximum
`linewidth_hz` has a phase that is a Wiener process:
    Var[phi(t + tau) - phi(t)] = 2 pi linewidth tau    (rad^2),
(C. Henry, IEEE J. Quantum Electron. 18, 259 (1982); K. Kikuchi, J. Lightwave Technol. 34, 157
(2016), Sec. III). The beat of two independent lasers is again a Wiener process whose linewidth
is the sum of the two.
"""

from __future__ import annotations

import numpy as np


class WienerPhase:
    """One laser's phase, rad, sampled at increasing times (seconds of model time)."""

    def __init__(self, linewidth_hz: float, rng: np.random.Generator):
        if not linewidth_hz >= 0.0:
            raise ValueError(f"laser linewidth must be >= 0 Hz, got {linewidth_hz}")
        self.linewidth_hz = float(linewidth_hz)
        self._rng = rng
        self._t = 0.0
        self._phi = 0.0

    def sample(self, times: np.ndarray) -> np.ndarray:
        """Phase at `times` (non-decreasing, not before the last sampled time), rad (float64)."""
        times = np.asarray(times, dtype=np.float64)
        if len(times) == 0:
            return np.empty(0)
        dt = np.diff(times, prepend=self._t)
        if dt.min() < 0.0:
            raise ValueError("WienerPhase.sample: times must not go backwards")
        if self.linewidth_hz == 0.0:
            phi = np.full(len(times), self._phi)
        else:
            steps = self._rng.standard_normal(len(times)) * np.sqrt(
                2.0 * np.pi * self.linewidth_hz * dt)
            phi = self._phi + np.cumsum(steps)
        self._t = float(times[-1])
        self._phi = float(phi[-1])
        return phi
