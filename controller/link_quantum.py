"""The simulated quantum channel of the link. One-process mode (`cvqkd link --sim`):
`SimQuantumChannel`, one `LinkModel` in the loopback topology. Alice hands her DAC waveform to
`emit`; Bob's side calls `calibrate` (shot-noise and electronic-noise records) and `capture`
(the ADC capture of the next emitted frame and the receiver's status bits). Nothing else passes
between the ends through this object. The two-process mode (`cvqkd tx` / `cvqkd rx`) has the
same two faces in separate processes, joined by the simulated fibre: controller.link_fibre.

Faults for tests: `faults[frame] = (kind, params)` is injected into the model just before
Bob's capture of that frame and cleared after it (kinds: fpga_bindings.model.faults), or
kind "intercept_resend": Eve's intercept-resend attack (fpga_bindings.model.attacks) on
that frame's symbol modes.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Protocol

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
    iq: np.ndarray | None  # int16 (n, 2) DAC player samples (None in Bob's own process)
    quad_per_lsb: float  # SNU per int16 unit at the transmitter output (sets the VOA)
    meta: dict  # the frame's public description (dsp.transmitter meta)


@dataclass(frozen=True)
class Capture:
    iq: np.ndarray  # int16 (n, 2) down-converter output
    status: LinkStatus
    capture_rate_hz: float
    nco_hz: float
    if_hz: float


class Transmitter(Protocol):
    """Alice's face of the quantum channel: `emit` sends the frame's light and returns the
    public timing Bob needs to capture it (sent to him in the frame's PARAMS)."""

    @property
    def player_sps(self) -> float: ...

    @property
    def dac_bits(self) -> int: ...

    async def emit(self, emission: Emission) -> dict: ...


def model_config(cfg: LinkConfig) -> ModelConfig:
    """The waveform model's settings from the link configuration."""
    p = cfg.physics
    return ModelConfig(
        board=cfg.modulation.board, distance_km=p.distance_km, loss_db_per_km=p.loss_db_per_km,
        xi=p.xi, eta=p.eta, v_el=p.v_el, tx_linewidth_hz=p.linewidth_hz / 2,
        lo_linewidth_hz=p.linewidth_hz / 2, lo_offset_hz=p.lo_offset_hz,
        lo_drift_hz_per_s=p.lo_drift_hz_per_s, clock_ppm=p.clock_ppm,
        detection=cfg.modulation.detection, seed=p.seed)


def capture_samples(mcfg: ModelConfig, n_player: int, capture_rate_hz: float) -> int:
    """Samples of the capture that holds a frame of `n_player` DAC samples plus the guards."""
    return math.ceil((n_player / mcfg.player_sps + 2 * GUARD_S) * capture_rate_hz
                     * (1 + 1e-6 * abs(mcfg.clock_ppm)))


def calibrates_before(cfg: LinkConfig, frame: int) -> bool:
    """Bob calibrates (shot noise, electronic noise) before frame 0 and every
    `calibrate_every_frames` frames; Alice leaves the time for it in her schedule."""
    return frame % cfg.protocol.calibrate_every_frames == 0


class ModelReceiver:
    """Bob's receiver on the model: calibration records and frame captures with the faults
    scheduled for them. Subclasses put the frame's light into the model (`_arm`)."""

    def __init__(self, cfg: LinkConfig,
                 faults: dict[int, tuple[str, dict[str, float]]] | None = None) -> None:
        self.mcfg = model_config(cfg)
        self.model = LinkModel(self.mcfg)
        self.faults = dict(faults or {})
        self._voa_db = 0.0
        self.decimation = self.mcfg.profile.default_decimation
        self.capture_rate_hz = self.mcfg.adc_rate_nominal / self.decimation

    @property
    def player_sps(self) -> float:
        return self.mcfg.player_sps

    @property
    def dac_bits(self) -> int:
        return self.mcfg.profile.dac_bits

    def capture_samples(self, em: Emission) -> int:
        """Samples of the capture that holds the whole frame plus the guards."""
        return capture_samples(self.mcfg, int(em.meta["n_samples"]), self.capture_rate_hz)

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

    def capture(self, em: Emission) -> Capture:
        """Play the frame and capture it (with the fault scheduled for it, if any)."""
        fault = self.faults.get(em.frame)
        if fault is not None and fault[0] == "intercept_resend":
            self.model.set_attack(InterceptResend(self._grid(em.meta), seed=self.mcfg.seed))
        elif fault is not None:
            self.model.inject(fault[0], **fault[1])
        try:
            self._arm(em)
            iq = self._record(self.capture_samples(em))
            status = self.model.status()
        finally:
            if fault is not None:
                self.model.clear_faults()
                self.model.set_attack(None)
        return Capture(iq, status, self.capture_rate_hz, self.mcfg.if_hz, self.mcfg.if_hz)

    def _arm(self, em: Emission) -> None:
        """Make the frame's light reach the detector and move the model time to the trigger
        (GUARD_S before the first light arrives)."""
        raise NotImplementedError

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


class SimQuantumChannel(ModelReceiver):
    """Loopback model of transmitter, fibre and receiver (see the module docstring)."""

    def __init__(self, cfg: LinkConfig,
                 faults: dict[int, tuple[str, dict[str, float]]] | None = None) -> None:
        super().__init__(cfg, faults)
        self._queue: asyncio.Queue[Emission] = asyncio.Queue(maxsize=1)

    # Alice's side -------------------------------------------------------------------------
    async def emit(self, emission: Emission) -> dict:
        """Queue the frame for Bob's capture; no public timing (one model, one clock)."""
        await self._queue.put(emission)
        return {}

    # Bob's side ---------------------------------------------------------------------------
    async def next_emission(self, frame: int, tx_meta: dict) -> Emission:
        em = await self._queue.get()
        if em.frame != frame:
            raise ValueError(f"quantum channel holds frame {em.frame}, expected {frame}")
        return em

    def _arm(self, em: Emission) -> None:
        voa = required_voa_db(em.quad_per_lsb, self.mcfg.dac_fs_snu)
        if voa < 0:
            raise ValueError(f"the waveform needs {-voa:.1f} dB of gain after the modulator")
        self._voa_db = voa
        self.model.set_frontend(FrontEnd(voa_db=voa))
        self.model.load_dac(em.iq, cyclic=False)
        self.model.advance(max(0.0, self.mcfg.delay_s - GUARD_S))
