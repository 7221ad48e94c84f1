"""Run-time faults of the optical link, as time windows in model time (seconds, DAC clock).

Every fault starts `at_s` after the moment it is injected (default 0: immediately) and lasts
`duration_s` (default: until `clear`). Kinds and their parameters (defaults in FAULT_DEFAULTS):

- lo_unlock: the LO frequency lock is lost. At the start the beat phase jumps by `phase_rad`
  and the beat frequency by `freq_hz`; the lock bit reads 0 while the fault lasts. When it is
  cleared (re-lock) the frequency returns to nominal; the phase accumulated meanwhile stays.
- fibre_cut: an extra loss step of `loss_db` (inf: a cut; a few dB: a bend).
- excess_noise_spike: extra excess noise `xi` (SNU, referred to the channel input).
- saturation: the detector/amplifier gain rises by the factor `gain`, so the ADC clips.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_COMMON = {"at_s": 0.0, "duration_s": math.inf}
FAULT_DEFAULTS: dict[str, dict[str, float]] = {
    "lo_unlock": {"phase_rad": 1.0, "freq_hz": 5.0e6, **_COMMON},
    "fibre_cut": {"loss_db": math.inf, **_COMMON},
    "excess_noise_spike": {"xi": 0.5, **_COMMON},
    "saturation": {"gain": 30.0, **_COMMON},
}


@dataclass(frozen=True)
class Fault:
    kind: str
    start_s: float
    end_s: float
    params: dict[str, float]

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.end_s


@dataclass(frozen=True)
class LinkEffects:
    """Piecewise-constant effect of the faults at one instant."""

    extra_loss_db: float = 0.0
    extra_xi: float = 0.0
    gain: float = 1.0


class FaultSchedule:
    """The faults injected so far; answers what they do at any model time."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._frozen_phase = 0.0  # LO phase left by cleared lo_unlock faults, rad

    def add(self, kind: str, now_s: float, **params: float) -> Fault:
        if kind not in FAULT_DEFAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULT_DEFAULTS)}")
        unknown = set(params) - set(FAULT_DEFAULTS[kind])
        if unknown:
            raise ValueError(f"fault {kind}: unknown parameter(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(FAULT_DEFAULTS[kind])}")
        p = {**FAULT_DEFAULTS[kind], **{k: float(v) for k, v in params.items()}}
        if not (p["at_s"] >= 0.0 and p["duration_s"] > 0.0):
            raise ValueError(f"fault {kind}: need at_s >= 0 and duration_s > 0")
        if kind == "fibre_cut" and not p["loss_db"] >= 0.0:
            raise ValueError("fibre_cut: loss_db must be >= 0")
        if kind == "excess_noise_spike" and not p["xi"] >= 0.0:
            raise ValueError("excess_noise_spike: xi must be >= 0")
        if kind == "saturation" and not p["gain"] > 0.0:
            raise ValueError("saturation: gain must be > 0")
        start = now_s + p["at_s"]
        fault = Fault(kind, start, start + p["duration_s"], p)
        self._faults.append(fault)
        return fault

    def clear(self, now_s: float) -> None:
        """Remove every fault; the LO keeps the phase the unlocks accumulated until now."""
        self._frozen_phase = float(self.lo_phase(np.array([now_s]))[0])
        self._faults = []

    def boundaries(self, t0: float, t1: float) -> list[float]:
        """Fault start/end times strictly inside (t0, t1), sorted."""
        ts = {t for f in self._faults for t in (f.start_s, f.end_s) if t0 < t < t1}
        return sorted(ts)

    def effects(self, t: float) -> LinkEffects:
        loss, xi, gain = 0.0, 0.0, 1.0
        for f in self._faults:
            if not f.active(t):
                continue
            if f.kind == "fibre_cut":
                loss += f.params["loss_db"]
            elif f.kind == "excess_noise_spike":
                xi += f.params["xi"]
            elif f.kind == "saturation":
                gain *= f.params["gain"]
        return LinkEffects(loss, xi, gain)

    def lo_phase(self, t: np.ndarray) -> np.ndarray:
        """Extra beat phase from LO unlocks at times t, rad (jump plus frequency ramp)."""
        out = np.full(np.shape(t), self._frozen_phase, dtype=np.float64)
        for f in self._faults:
            if f.kind != "lo_unlock":
                continue
            tt = np.minimum(t, f.end_s)
            on = t >= f.start_s
            out += np.where(on, f.params["phase_rad"]
                            + 2.0 * np.pi * f.params["freq_hz"] * (tt - f.start_s), 0.0)
        return out

    def lo_freq_hz(self, t: float) -> float:
        return sum(f.params["freq_hz"] for f in self._faults
                   if f.kind == "lo_unlock" and f.active(t))

    def lo_locked(self, t: float) -> bool:
        return not any(f.kind == "lo_unlock" and f.active(t) for f in self._faults)

    @property
    def faults(self) -> tuple[Fault, ...]:
        return tuple(self._faults)
