"""TEST DOUBLE of `LinkPhysics` for the register-level model's tests (not the link model).

A deliberately simple stand-in for fpga_bindings.model.link.LinkModel: the ADC delivers white
Gaussian noise whose per-quadrature variance in shot-noise units is
    LO_OFF: v_el;  BLOCKED: 1 + v_el;  SIGNAL: 1 + v_el + s * 10^(-VOA/10) + xi_spike,
with s = snr_full * (DAC mean power per quadrature / full scale^2) * gain, scaled to ADC counts
by `shot_counts` (std of the shot noise, counts) and quantised/clipped to int16. It exists so the
register model, DMA and drivers can be tested with known statistics; it has no phase, clock or
fibre physics.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fpga_bindings.model.link_api import (
    AdcMode,
    AdcSettings,
    FrontEnd,
    LinkStatus,
    OpticalSwitch,
)

FULL_SCALE = 32767


class GaussianLinkDouble:
    """Implements the `LinkPhysics` protocol with Gaussian records of known variance."""

    def __init__(self, shot_counts: float = 400.0, v_el: float = 0.1, snr_full: float = 40.0,
                 monitor_w: float = 1e-5, seed: int = 1):
        self.shot_counts, self.v_el, self.snr_full = shot_counts, v_el, snr_full
        self.monitor_w = monitor_w
        self.rng = np.random.default_rng(seed)
        self.frontend = FrontEnd()
        self.dac_power = 0.0  # mean I^2 per quadrature / FULL_SCALE^2
        self.cyclic = True
        self.faults: dict[str, dict[str, float]] = {}
        self._clip = 0
        self._trigger = 0
        self._counter = 1000
        self.captures: list[AdcSettings] = []

    # ---- LinkPhysics --------------------------------------------------------------------
    def load_dac(self, iq: np.ndarray, cyclic: bool) -> None:
        assert iq.dtype == np.int16 and iq.ndim == 2 and iq.shape[1] == 2
        self.dac_power = float(np.mean(iq.astype(np.float64) ** 2)) / FULL_SCALE**2
        self.cyclic = cyclic

    def set_frontend(self, frontend: FrontEnd) -> None:
        self.frontend = frontend

    def signal_snu(self) -> float:
        """Signal variance per quadrature at the receiver, SNU (what the test expects)."""
        fe = self.frontend
        if fe.switch is not OpticalSwitch.SIGNAL or not fe.laser_on or "fibre_cut" in self.faults:
            return 0.0
        return self.snr_full * self.dac_power * 10 ** (-fe.voa_db / 10)

    def variance_snu(self) -> float:
        fe = self.frontend
        if fe.switch is OpticalSwitch.LO_OFF or not fe.lo_on:
            return self.v_el
        xi = self.faults.get("excess_noise_spike", {}).get("xi", 0.0)
        extra = xi if fe.switch is OpticalSwitch.SIGNAL else 0.0
        return 1.0 + self.v_el + self.signal_snu() + extra

    def capture(self, settings: AdcSettings, chunk: int = 1 << 20) -> Iterator[np.ndarray]:
        self.captures.append(settings)
        self._trigger = self._counter
        self._counter += settings.n_samples * settings.decimation + 4096
        self._clip = 0
        scale = self.shot_counts * np.sqrt(self.variance_snu())
        scale *= self.faults.get("saturation", {}).get("factor", 1.0)
        shape = (2,) if settings.mode is AdcMode.DDC else ()
        left = settings.n_samples
        while left:
            k = min(chunk, left)
            x = np.rint(self.rng.standard_normal((k, *shape), dtype=np.float32) * scale)
            clipped = np.abs(x) >= FULL_SCALE
            self._clip += int(clipped.sum())
            yield np.clip(x, -FULL_SCALE, FULL_SCALE).astype(np.int16)
            left -= k

    def status(self) -> LinkStatus:
        unlocked = "lo_unlock" in self.faults
        fe = self.frontend
        power = self.monitor_w * 10 ** (-fe.voa_db / 10) if fe.laser_on else 0.0
        if "fibre_cut" in self.faults:
            power *= 10 ** (-self.faults["fibre_cut"].get("loss_db", 100.0) / 10)
        return LinkStatus(lo_locked=fe.lo_on and not unlocked,
                          beat_hz=(25e6 if unlocked else 10e6), monitor_power_w=power,
                          clip_count=self._clip, overflow=self._clip > 0,
                          trigger_sample=self._trigger)

    def inject(self, fault: str, **params: float) -> None:
        self.faults[fault] = dict(params)

    def clear_faults(self) -> None:
        self.faults.clear()
