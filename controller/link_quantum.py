"""The quantum channel of the link, driven through the overlay drivers (fpga_bindings.drivers:
frontend, dac_player, adc_capture and their DMAs). On the model the overlay is
`fpga_bindings.overlay.open_model` over a `LinkModel` (pynq's own Overlay/MMIO/DMA classes run
against the model device); on a board it is `open_board`: the same calls.

`OverlayReceiver` is Bob's face: `calibrate` (shot-noise and electronic-noise records through
the optical switch) and `capture` (the frame's ADC capture, the LO lock, clipping and overflow
status). Subclasses say how the frame's light reaches the detector and what triggers the
capture. One-process mode (`cvqkd link --sim`): `SimQuantumChannel`, one overlay in the
loopback topology: Alice's `emit` queues her waveform; Bob's capture loads it into the DAC
player and starts it, the capture triggered by the player's START after the fibre delay
(TRIG_DELAY). The two-process mode (`cvqkd tx` / `cvqkd rx`): controller.link_fibre.

Faults for tests (model only): `faults[frame] = (kind, params)` is injected into the model
device just before Bob's capture of that frame and cleared after it (kinds:
`ModelDevice.inject`), or kind "intercept_resend": Eve's intercept-resend attack
(fpga_bindings.model.attacks) on that frame's symbol modes.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from controller.config import LinkConfig
from controller.link_protocol import AbortReason, LinkAbort
from dsp.filters import rrc_taps
from fpga_bindings.drivers import OverlayError
from fpga_bindings.model.attacks import InterceptResend
from fpga_bindings.model.genie import SymbolGrid
from fpga_bindings.model.link import LinkConfig as ModelConfig
from fpga_bindings.model.link import LinkModel
from fpga_bindings.model.link_api import LinkStatus
from fpga_bindings.model.simple_tx import required_voa_db
from fpga_bindings.overlay import CvqkdOverlay, open_model
from fpga_bindings.streams import samples_per_beat

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
    """The waveform model's settings from the link configuration. On a board only its design
    constants are used: the nominal IF (NCO), the modulator's SNU at DAC full scale
    (transmitter.dac_full_scale_snu, for the VOA), the
    fibre delay from physics.distance_km (trigger delay) and the clock tolerance (capture
    length)."""
    p = cfg.physics
    return ModelConfig(
        board=cfg.modulation.board, distance_km=p.distance_km, loss_db_per_km=p.loss_db_per_km,
        xi=p.xi, eta=p.eta, v_el=p.v_el, tx_linewidth_hz=p.linewidth_hz / 2,
        lo_linewidth_hz=p.linewidth_hz / 2, lo_offset_hz=p.lo_offset_hz,
        lo_drift_hz_per_s=p.lo_drift_hz_per_s, clock_ppm=p.clock_ppm,
        detection=cfg.modulation.detection, interpolation=cfg.modulation.converter_factor,
        dac_fs_snu=cfg.transmitter.dac_full_scale_snu, seed=p.seed)


def capture_samples(mcfg: ModelConfig, n_player: int, capture_rate_hz: float) -> int:
    """Samples of the capture that holds a frame of `n_player` DAC samples plus the guards,
    rounded up to whole beats of the capture stream (overlay contract 1.2: even)."""
    n = math.ceil((n_player / mcfg.player_sps + 2 * GUARD_S) * capture_rate_hz
                  * (1 + 1e-6 * abs(mcfg.clock_ppm)))
    per_beat = samples_per_beat("capture")
    return -(-n // per_beat) * per_beat


def set_converter_rates(overlay: CvqkdOverlay, cfg: LinkConfig) -> tuple[int, float]:
    """Set the DAC interpolation to modulation.converter_factor (the ADC decimation is a
    capture setting: `AdcCapture.arm`); (decimation, capture rate in samples/s). On the model
    the physics' player rate (`model_config`) must match the converter's."""
    factor = cfg.modulation.converter_factor
    overlay.rfdc.set_dac_interpolation(factor)
    physics = getattr(overlay.device, "physics", None)  # a LinkModel, or FibreTxPhysics' .tx
    mcfg = getattr(physics, "config", None) or getattr(getattr(physics, "tx", None), "config",
                                                       None)
    model_sps = getattr(mcfg, "player_sps", None)
    if model_sps is not None and model_sps != player_rate(overlay):
        raise ValueError(f"the model's player rate {model_sps:g} S/s differs from the "
                         f"converter's {player_rate(overlay):g} S/s (converter_factor {factor})")
    return factor, overlay.profile.default_adc_sps / factor


def player_rate(overlay: CvqkdOverlay) -> float:
    """The DAC player's sample rate: converter rate / interpolation, samples/s."""
    return overlay.rfdc.dac_sample_rate() / overlay.rfdc.dac_interpolation()


def calibrates_before(cfg: LinkConfig, frame: int) -> bool:
    """Bob calibrates (shot noise, electronic noise) before frame 0 and every
    `calibrate_every_frames` frames; Alice leaves the time for it in her schedule."""
    return frame % cfg.protocol.calibrate_every_frames == 0


def model_overlay(mcfg: ModelConfig) -> CvqkdOverlay:
    """The overlay on a fresh model device whose physics is a `LinkModel` of `mcfg`."""
    return open_model(physics=LinkModel(mcfg), board=mcfg.board)


def voa_for(em: Emission, dac_fs_snu: float) -> float:
    """VOA attenuation, dB, that gives the frame's waveform its SNU scale at the channel input
    (`dac_fs_snu`: the modulator's SNU at DAC full scale)."""
    voa = required_voa_db(em.quad_per_lsb, dac_fs_snu)
    if voa < 0:
        raise ValueError(f"the waveform needs {-voa:.1f} dB of gain after the modulator")
    return float(voa)


def check_health(overlay: CvqkdOverlay, what: str) -> None:
    """Raise OverlayError if a board alarm (over-temperature, converter PLL unlock) latched
    since the last check (the alarms are read and cleared)."""
    alarms = {k for k, v in overlay.board_info.alarms(clear=True).items() if v}
    if alarms:
        raise OverlayError(f"{what}: board alarm {', '.join(sorted(alarms))} (board_info.ALARMS)")


def hardware_abort(exc: OverlayError) -> LinkAbort:
    """A driver failure during a capture (DMA error or stall, no trigger, ...) ends the
    session: the receiver cannot be trusted to deliver the next frame either."""
    return LinkAbort(AbortReason.HARDWARE_FAULT, f"receiver hardware: {exc}")


class OverlayReceiver:
    """Bob's receiver through the overlay drivers: calibration records and frame captures
    (with the faults scheduled for them on the model). `overlay` None: a fresh model.
    Subclasses put the frame's light on the detector (`_prepare`, `_fire`)."""

    def __init__(self, cfg: LinkConfig, overlay: CvqkdOverlay | None = None,
                 faults: dict[int, tuple[str, dict[str, float]]] | None = None) -> None:
        self.mcfg = model_config(cfg)
        if overlay is None:
            overlay = model_overlay(self.mcfg)
        elif faults and not hasattr(overlay.device, "inject"):
            raise ValueError("faults can be injected only into the model")
        self.overlay = overlay
        self.faults = dict(faults or {})
        self.decimation, self.capture_rate_hz = set_converter_rates(overlay, cfg)
        self.nco_hz = self.mcfg.if_hz  # the optical design's nominal IF; the DSP tracks the rest
        fe = overlay.frontend
        fe.enable(laser=True, lo=True)
        fe.set_switch("SIGNAL")
        fe.errors(clear=True)
        overlay.board_info.alarms(clear=True)

    @property
    def player_sps(self) -> float:
        return player_rate(self.overlay)

    @property
    def dac_bits(self) -> int:
        return self.overlay.profile.dac_bits

    def capture_samples(self, em: Emission) -> int:
        """Samples of the capture that holds the whole frame plus the guards."""
        return capture_samples(self.mcfg, int(em.meta["n_samples"]), self.capture_rate_hz)

    def calibrate(self, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
        """(shot-noise record, electronic-noise record), int16 (n, 2) each, through the
        optical switch (BLOCKED, then LO_OFF). As long as a frame's capture: the shot-noise
        unit's statistical error (about sqrt(2 sps / n) relative) enters the excess-noise
        estimate as a bias shared by the frames until the next calibration, ~0.3 % of N0 at
        10^6 samples."""
        fe = self.overlay.frontend
        out = []
        try:
            for position in ("BLOCKED", "LO_OFF"):
                fe.set_switch(position)
                out.append(self._capture(n_samples, None, trigger="SOFTWARE").samples)
        except OverlayError as exc:
            raise hardware_abort(exc) from None
        finally:
            fe.set_switch("SIGNAL")
        return np.asarray(out[0]), np.asarray(out[1])

    def capture(self, em: Emission) -> Capture:
        """Play the frame and capture it (with the fault scheduled for it, if any)."""
        fault = self.faults.get(em.frame)
        device = self.overlay.device
        if fault is not None and fault[0] == "intercept_resend":
            device.physics.set_attack(InterceptResend(self._grid(em.meta), seed=self.mcfg.seed))
        elif fault is not None:
            device.inject(fault[0], **fault[1])
        fe = self.overlay.frontend
        try:
            fe.errors(clear=True)
            cap = self._capture(self.capture_samples(em), em, **self._prepare(em))
            locked, beat = fe.lo_status()
            lock_lost = fe.errors()["LOCK_LOST"]
            status = LinkStatus(lo_locked=locked and not lock_lost, beat_hz=beat,
                                monitor_power_w=1e-3 * 10 ** (fe.monitor_power_dbm() / 10),
                                clip_count=cap.clip_count, overflow=cap.overflow,
                                trigger_sample=cap.trigger_sample)
            check_health(self.overlay, f"frame {em.frame}'s capture")
        except OverlayError as exc:
            raise hardware_abort(exc) from None
        finally:
            if fault is not None:
                device.clear_faults()
                device.physics.set_attack(None)
        return Capture(np.asarray(cap.samples), status, cap.sample_rate, cap.nco_hz,
                       self.mcfg.if_hz)

    def _capture(self, n: int, em: Emission | None, **trigger: Any):
        """Arm a DDC capture of n samples (`trigger`: AdcCapture.arm's trigger settings),
        start it (software trigger, or the frame: `_fire`) and collect it."""
        adc = self.overlay.adc_capture
        adc.arm(n, nco_hz=self.nco_hz, decimation=self.decimation, **trigger)
        try:
            if em is None:
                adc.trigger()
            else:
                self._fire(em)
            return adc.wait()
        except OverlayError:
            adc.recover()
            raise

    def _prepare(self, em: Emission) -> dict[str, Any]:
        """Make the frame's light ready; the capture's trigger settings (AdcCapture.arm:
        trigger, delay_s, trigger_out)."""
        raise NotImplementedError

    def _fire(self, em: Emission) -> None:
        """Start the frame once the capture is armed (default: the software trigger, which
        also pulses the trigger output)."""
        self.overlay.adc_capture.trigger()

    def _grid(self, meta: dict) -> SymbolGrid:
        """The frame's symbol modes in player samples (what Eve measures and resends)."""
        sps = int(meta["sps"])
        c = meta["config"]
        return SymbolGrid(rrc_taps(sps, c["rolloff"], c["half_span"]), sps,
                          int(meta["data_start_symbol"]) * sps, int(meta["n_data"]),
                          subcarrier=meta["signal_offset_hz"] / self.player_sps)


ModelReceiver = OverlayReceiver  # the name controller.link and link_bob use


class SimQuantumChannel(OverlayReceiver):
    """Loopback: one overlay's DAC player through the link to its own capture (see the module
    docstring)."""

    def __init__(self, cfg: LinkConfig, faults: dict[int, tuple[str, dict[str, float]]] | None
                 = None, overlay: CvqkdOverlay | None = None) -> None:
        super().__init__(cfg, overlay, faults)
        self._queue: asyncio.Queue[Emission] = asyncio.Queue(maxsize=1)

    # Alice's side -------------------------------------------------------------------------
    async def emit(self, emission: Emission) -> dict:
        """Queue the frame for Bob's capture; no public timing (one board, one clock)."""
        await self._queue.put(emission)
        return {}

    # Bob's side ---------------------------------------------------------------------------
    async def next_emission(self, frame: int, tx_meta: dict) -> Emission:
        em = await self._queue.get()
        if em.frame != frame:
            raise ValueError(f"quantum channel holds frame {em.frame}, expected {frame}")
        return em

    def _prepare(self, em: Emission) -> dict[str, Any]:
        """VOA for the frame, waveform into the player; the capture starts GUARD_S before the
        light comes back through the fibre."""
        self.overlay.frontend.set_voa_db(voa_for(em, self.mcfg.dac_fs_snu))
        self.overlay.dac_player.load(em.iq)
        return {"trigger": "PLAYER_START", "delay_s": max(0.0, self.mcfg.delay_s - GUARD_S)}

    def _fire(self, em: Emission) -> None:
        self.overlay.dac_player.play(cyclic=False)
