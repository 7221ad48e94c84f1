"""The simulated quantum channel of `cvqkd link --sim`: one `LinkModel` in the loopback
topology. Alice hands her DAC waveform to `emit`; Bob's side calls `calibrate` (shot-noise and
electronic-noise records) and `receive` (the ADC capture of the next emitted frame and the
receiver's status bits). Nothing else passes between the ends through this object.

Faults for tests: `faults[frame] = (kind, params)` is injected into the model just before
Bob's capture of that frame and cleared after it (kinds: fpga_bindings.model.faults), or
kind "intercept_resend": Eve's intercept-resend attack (fpga_bindings.model.attacks) on
that frame's symbol modes.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import numpy as np

from controller.config import LinkConfig
from dsp.filters import rrc_taps
from fpga_bindings.model.attacks import InterceptResend
from fpga_bindings.model.genie import SymbolGrid
from fpga_bindings.model.link import LinkConfig as ModelConfig
from fpga_bindings.model.link import LinkModel
from fpga_bindings.model.link_api import AdcSettings, FrontEnd, LinkStatus, OpticalSwitch
from fpga_bindings.model.simple_tx import required_voa_db

GUARD_S = 2.0e-6  # the capture starts this long before the frame's first light arrives


@dataclass(frozen=True)
class Emission:
    frame: int
    iq: np.ndarray  # int16 (n, 2) DAC player samples
    quad_per_lsb: float  # SNU per int16 unit at the transmitter output (sets the VOA)
    meta: dict  # the frame's public description (dsp.transmitter meta)


@dataclass(frozen=True)
class Capture:
    iq: np.ndarray  # int16 (n, 2) down-converter output
    status: LinkStatus
    capture_rate_hz: float
    nco_hz: float
    if_hz: float


def model_config(cfg: LinkConfig) -> ModelConfig:
    """The waveform model's settings from the link configuration."""
    p = cfg.physics
    return ModelConfig(
        board=cfg.modulation.board, distance_km=p.distance_km, loss_db_per_km=p.loss_db_per_km,
        xi=p.xi, eta=p.eta, v_el=p.v_el, tx_linewidth_hz=p.linewidth_hz / 2,
        lo_linewidth_hz=p.linewidth_hz / 2, lo_offset_hz=p.lo_offset_hz,
        lo_drift_hz_per_s=p.lo_drift_hz_per_s, clock_ppm=p.clock_ppm,
        detection=cfg.modulation.detection, seed=p.seed)


class SimQuantumChannel:
    """Loopback model of transmitter, fibre and receiver (see the module docstring)."""

    def __init__(self, cfg: LinkConfig,
                 faults: dict[int, tuple[str, dict[str, float]]] | None = None) -> None:
        self.mcfg = model_config(cfg)
        self.model = LinkModel(self.mcfg)
        self.faults = dict(faults or {})
        self._queue: asyncio.Queue[Emission] = asyncio.Queue(maxsize=1)
        self._voa_db = 0.0
        prof = self.mcfg.profile
        self.decimation = prof.default_decimation
        self.capture_rate_hz = self.mcfg.adc_rate_nominal / self.decimation

    @property
    def player_sps(self) -> float:
        return self.mcfg.player_sps

    @property
    def dac_bits(self) -> int:
        return self.mcfg.profile.dac_bits

    # Alice's side -------------------------------------------------------------------------
    async def emit(self, emission: Emission) -> None:
        await self._queue.put(emission)

    # Bob's side ---------------------------------------------------------------------------
    def capture_samples(self, em: Emission) -> int:
        """Samples of the capture that holds the whole frame plus the guards."""
        return math.ceil((len(em.iq) / self.player_sps + 2 * GUARD_S) * self.capture_rate_hz
                         * (1 + 1e-6 * abs(self.mcfg.clock_ppm)))

    def calibrate(self, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
        """(shot-noise record, electronic-noise record), int16 (n, 2) each. As long as a
        frame's capture: the shot-noise unit's statistical error (about sqrt(2 sps / n)
        relative) enters the excess-noise estimate as a bias shared by the frames until the
        next calibration, ~0.3 % of N0 at 10^6 samples."""
        out = []
        for switch in (OpticalSwitch.BLOCKED, OpticalSwitch.LO_OFF):
            self.model.set_frontend(FrontEnd(switch=switch, voa_db=self._voa_db))
            out.append(self._record(n_samples))
        self.model.set_frontend(FrontEnd(voa_db=self._voa_db))
        return out[0], out[1]

    async def next_emission(self) -> Emission:
        return await self._queue.get()

    def capture(self, em: Emission) -> Capture:
        """Play the frame and capture it (with the fault scheduled for it, if any)."""
        voa = required_voa_db(em.quad_per_lsb, self.mcfg.dac_fs_snu)
        if voa < 0:
            raise ValueError(f"the waveform needs {-voa:.1f} dB of gain after the modulator")
        self._voa_db = voa
        self.model.set_frontend(FrontEnd(voa_db=voa))
        fault = self.faults.get(em.frame)
        if fault is not None and fault[0] == "intercept_resend":
            self.model.set_attack(InterceptResend(self._grid(em.meta), seed=self.mcfg.seed))
        elif fault is not None:
            self.model.inject(fault[0], **fault[1])
        try:
            self.model.load_dac(em.iq, cyclic=False)
            n = self.capture_samples(em)
            self.model.advance(max(0.0, self.mcfg.delay_s - GUARD_S))
            iq = self._record(n)
            status = self.model.status()
        finally:
            if fault is not None:
                self.model.clear_faults()
                self.model.set_attack(None)
        return Capture(iq, status, self.capture_rate_hz, self.mcfg.if_hz, self.mcfg.if_hz)

    def _grid(self, meta: dict) -> SymbolGrid:
        """The frame's symbol modes in player samples (what Eve measures and resends)."""
        sps = int(meta["sps"])
        c = meta["config"]
        return SymbolGrid(rrc_taps(sps, c["rolloff"], c["half_span"]), sps,
                          int(meta["data_start_symbol"]) * sps, int(meta["n_data"]),
                          subcarrier=meta["signal_offset_hz"] / self.player_sps)

    def _record(self, n: int) -> np.ndarray:
        out = np.empty((n, 2), dtype=np.int16)
        pos = 0
        for chunk in self.model.capture(AdcSettings(n_samples=n, nco_hz=self.mcfg.if_hz,
                                                    decimation=self.decimation)):
            out[pos:pos + len(chunk)] = chunk
            pos += len(chunk)
        return out
