"""Register-level models of the cvqkd IP blocks (board_info, frontend, dac_player, adc_capture).

Each turns its register state into calls on the link physics (`LinkPhysics`, the only view of
the waveform model) and the physics' `LinkStatus` back into status registers, as the HDL would.
Semantics follow docs/overlay.md; the model has no bus time: a play or a capture happens inside
the register write that starts it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from fpga_bindings.boards import BoardProfile
from fpga_bindings.model.dma import AxiDmaModel
from fpga_bindings.model.link_api import (
    AdcMode,
    AdcSettings,
    FrontEnd,
    LinkPhysics,
    OpticalSwitch,
)
from fpga_bindings.model.registers import RegisterBlock
from fpga_bindings.regmap import IpBlock

U32 = 0xFFFFFFFF
MDBM_FLOOR = -100_000  # MONITOR_POWER floor, 0.001 dBm


def power_to_mdbm(power_w: float) -> int:
    """Optical power, W -> MONITOR_POWER units (0.001 dBm), floored at -100 dBm."""
    if power_w <= 0:
        return MDBM_FLOOR
    return max(MDBM_FLOOR, min(2**31 - 1, round(1e4 * math.log10(power_w / 1e-3))))


def ftw_to_hz(ftw: int, f_adc: float) -> float:
    """NCO_FTW (unsigned, f_adc/2^32 units, >= 2^31 negative) -> frequency, Hz."""
    signed = ftw - (1 << 32) if ftw >= 1 << 31 else ftw
    return signed * f_adc / 2**32


class BoardInfoModel(RegisterBlock):
    """Identity registers and simulated health sensors."""

    def __init__(self, block: IpBlock, profile: BoardProfile):
        self.profile = profile
        self.temp_pl_mc, self.temp_ps_mc = 45_000, 48_000
        self.adc_pll_locked = self.dac_pll_locked = True
        super().__init__(block)

    def reset(self) -> None:
        super().reset()
        ids = self.block.register("BOARD").field("ID").values
        self.hw_set("BOARD", ID=ids[self.profile.name])
        self.before_read("")

    def before_read(self, reg: str) -> None:
        limit = self.hw_get("TEMP_LIMIT")
        self.hw_set("TEMP_PL", VALUE=self.temp_pl_mc)
        self.hw_set("TEMP_PS", VALUE=self.temp_ps_mc)
        self.hw_set("CLOCK_STATUS", ADC_PLL_LOCKED=int(self.adc_pll_locked),
                    DAC_PLL_LOCKED=int(self.dac_pll_locked), REF_PRESENT=1)
        self.hw_latch("ALARMS", OVERTEMP=max(self.temp_pl_mc, self.temp_ps_mc) > limit,
                      ADC_CLK_UNLOCK=not self.adc_pll_locked,
                      DAC_CLK_UNLOCK=not self.dac_pll_locked)


class FrontendModel(RegisterBlock):
    """Optical front-end: CTRL/VOA -> `physics.set_frontend`, `physics.status()` -> STATUS."""

    def __init__(self, block: IpBlock, physics: LinkPhysics):
        self.physics = physics
        super().__init__(block)

    def reset(self) -> None:
        super().reset()
        self.physics.set_frontend(self.frontend())

    def frontend(self) -> FrontEnd:
        return FrontEnd(switch=OpticalSwitch(self.hw_get("CTRL", "SWITCH")),
                        voa_db=self.hw_get("VOA", "ATTEN") / 100.0,
                        laser_on=bool(self.hw_get("CTRL", "LASER_EN")),
                        lo_on=bool(self.hw_get("CTRL", "LO_EN")))

    def after_write(self, reg: str, old: int, new: int) -> None:
        if reg in ("CTRL", "VOA") and old != new:
            self.physics.set_frontend(self.frontend())

    def before_read(self, reg: str) -> None:
        if reg not in ("STATUS", "ERRORS", "BEAT_FREQ", "MONITOR_POWER"):
            return
        fe = self.frontend()
        st = self.physics.status()
        locked = fe.lo_on and st.lo_locked
        power = power_to_mdbm(st.monitor_power_w)
        beat = max(-(2**31), min(2**31 - 1, round(st.beat_hz))) if fe.lo_on else 0
        self.hw_set("STATUS", LO_LOCKED=int(locked), LASER_READY=int(fe.laser_on),
                    LO_READY=int(fe.lo_on))
        self.hw_set("BEAT_FREQ", VALUE=beat)
        self.hw_set("MONITOR_POWER", VALUE=power)
        self.hw_latch("ERRORS", LOCK_LOST=fe.lo_on and not st.lo_locked,
                      POWER_LOW=(fe.switch is OpticalSwitch.SIGNAL and fe.laser_on
                                 and power < self.hw_get("POWER_LOW_THRESHOLD")))


class DacPlayerModel(RegisterBlock):
    """Waveform buffer filled from the MM2S stream; START hands the played waveform (after the
    digital gain) to `physics.load_dac` and fires the player-start trigger listeners."""

    def __init__(self, block: IpBlock, physics: LinkPhysics, player_sps: float):
        self.physics = physics
        self.player_sps = player_sps
        self.on_start: list[Callable[[], None]] = []
        super().__init__(block)

    def reset(self) -> None:
        super().reset()
        self._wave = np.zeros((0, 2), dtype=np.int16)  # grows as loaded, up to CAPACITY
        self._pending = b""  # partial 32-bit beat from the stream
        self._length = 0
        self._position = 0.0  # samples played since START (cyclic mode)
        self.physics.load_dac(np.zeros((1, 2), np.int16), cyclic=True)

    def stream_in(self, data: np.ndarray, last: bool) -> None:
        """S_AXIS_WAVE: bytes from the MM2S DMA, one int16 (I, Q) pair per 32-bit beat."""
        if self._pending or data.size % 4:
            raw = np.frombuffer(self._pending + data.tobytes(), np.uint8)
        else:  # whole beats: no copy
            raw = data
        usable = raw.size // 4 * 4
        self._pending = b"" if last else raw[usable:].tobytes()
        iq = raw[:usable].view("<i2").reshape(-1, 2)
        loaded, cap = self.hw_get("LOADED"), self.hw_get("CAPACITY")
        take = min(len(iq), cap - loaded)
        if loaded + take > len(self._wave):  # the model's memory grows with the waveform
            grown = np.empty((min(cap, max(loaded + take, 2 * len(self._wave))), 2), np.int16)
            grown[:loaded] = self._wave[:loaded]
            self._wave = grown
        self._wave[loaded:loaded + take] = iq[:take]
        self.hw_set("LOADED", VALUE=loaded + take)
        self.hw_latch("ERRORS", OVERRUN=take < len(iq))

    def on_command(self, reg: str, commands: set[str]) -> None:
        if "CLEAR" in commands:
            self.hw_set("LOADED", VALUE=0)
            self._pending = b""
        if "STOP" in commands:
            self.hw_set("STATUS", PLAYING=0, ARMED=0)
            self.physics.load_dac(np.zeros((1, 2), np.int16), cyclic=True)
        if "START" in commands:
            self.hw_set("STATUS", DONE=0)
            if self.hw_get("CTRL", "TRIG_SOURCE") == 0:
                self._play()
            else:
                self.hw_set("STATUS", ARMED=1)  # the model has no external trigger input

    def external_trigger(self) -> None:
        """The EXTERNAL trigger input: an armed player (TRIG_SOURCE EXTERNAL) plays."""
        if self.hw_get("STATUS", "ARMED") and self.hw_get("CTRL", "TRIG_SOURCE") == 1:
            self._play()

    def _play(self) -> None:
        length, loaded = self.hw_get("LENGTH"), self.hw_get("LOADED")
        if length == 0 or length > loaded:
            self.hw_latch("ERRORS", UNDERFLOW=True)
        length = max(1, min(length, self.hw_get("CAPACITY")))
        gain = self.hw_get("GAIN")  # Q2.14
        if gain == 1 << 14 and length <= loaded:  # unity gain: the samples as loaded
            wave = self._wave[:length]
        else:
            wave = np.zeros((length, 2), dtype=np.int32)
            n = min(length, loaded)
            wave[:n] = self._wave[:n]
            wave = np.clip((wave * gain + (1 << 13)) >> 14, -32768, 32767).astype(np.int16)
        cyclic = bool(self.hw_get("CTRL", "CYCLIC"))
        self.physics.load_dac(wave, cyclic=cyclic)
        self._length, self._position = length, 0.0
        self.hw_set("STATUS", PLAYING=int(cyclic), DONE=int(not cyclic), ARMED=0)
        self.hw_set("PLAY_COUNT", VALUE=0 if cyclic else 1)
        for listener in self.on_start:
            listener()

    def advance(self, seconds: float) -> None:
        """Model time passed (a capture ran): count cyclic passes."""
        if self.hw_get("STATUS", "PLAYING") and self._length:
            self._position += seconds * self.player_sps
            self.hw_set("PLAY_COUNT", VALUE=min(U32, int(self._position // self._length)))


class AdcCaptureModel(RegisterBlock):
    """ARM latches the settings; the trigger runs `physics.capture` and streams the chunks into
    the S2MM DMA, updating SAMPLES_DONE, CLIP_COUNT, OVERFLOW and the trigger timestamp.

    The physics' generator is run to its end (it updates its status after the last chunk) unless
    the DMA stops accepting samples."""

    def __init__(self, block: IpBlock, physics: LinkPhysics, dma: AxiDmaModel,
                 profile: BoardProfile, chunk: int,
                 elapsed: Callable[[float], None] | None = None):
        self.physics, self.dma, self.profile, self.chunk = physics, dma, profile, chunk
        self.elapsed = elapsed
        self._settings: AdcSettings | None = None
        self._delay = 0  # TRIG_DELAY latched by ARM, ADC samples
        self.trigger_out: list[Callable[[], None]] = []  # the trigger output pin's loads
        super().__init__(block)

    @property
    def f_adc(self) -> float:
        return self.profile.default_adc_sps

    def on_command(self, reg: str, commands: set[str]) -> None:
        if "ABORT" in commands:
            self._settings = None
            self.hw_set("STATUS", ARMED=0, BUSY=0)
            return
        if "ARM" in commands:
            self._arm()
        if "TRIGGER" in commands and self.hw_get("CTRL", "TRIG_OUT"):
            for listener in self.trigger_out:
                listener()
        if "TRIGGER" in commands and self.hw_get("CTRL", "TRIG_SOURCE") == 0:
            self.trigger()

    def player_started(self) -> None:
        if self.hw_get("CTRL", "TRIG_SOURCE") == 1:
            self.trigger()

    def external_trigger(self) -> None:
        if self.hw_get("CTRL", "TRIG_SOURCE") == 2:
            self.trigger()

    def _arm(self) -> None:
        n, dec = self.hw_get("N_SAMPLES"), self.hw_get("DECIMATION")
        mode = AdcMode(self.hw_get("CTRL", "MODE"))
        if n == 0 or (mode is AdcMode.DDC and dec not in self.profile.decimations):
            self.hw_latch("ERRORS", BAD_CONFIG=True)
            return
        self._settings = AdcSettings(
            n_samples=n, mode=mode,
            nco_hz=ftw_to_hz(self.hw_get("NCO_FTW"), self.f_adc),
            decimation=dec if mode is AdcMode.DDC else 1)
        self._delay = self.hw_get("TRIG_DELAY")
        self.hw_set("STATUS", ARMED=1, BUSY=0, DONE=0)
        self.hw_set("SAMPLES_DONE", VALUE=0)
        self.hw_set("CLIP_COUNT", VALUE=0)

    def trigger(self) -> None:
        """Run the armed capture to completion (or to a FIFO overrun)."""
        settings = self._settings
        if settings is None or not self.hw_get("STATUS", "ARMED"):
            return
        self._settings = None
        self.hw_set("STATUS", ARMED=0, BUSY=1)
        if not self.dma.s2mm_ready():
            self.hw_latch("ERRORS", FIFO_OVERRUN=True)
            self.hw_set("STATUS", BUSY=0)
            return
        n, done = settings.n_samples, 0
        shape = (2,) if settings.mode is AdcMode.DDC else ()
        delay_s = self._delay / self.f_adc
        if delay_s:  # TRIG_DELAY: model time passes between the trigger and the capture
            self.physics.advance(delay_s)
        samples = self.physics.capture(settings, chunk=self.chunk)
        try:
            for chunk in samples:
                if chunk.dtype != np.int16 or chunk.shape[1:] != shape:
                    want = "(k, 2)" if shape else "(k,)"
                    raise TypeError(f"physics returned {chunk.dtype}{chunk.shape} for a "
                                    f"{settings.mode.name} capture (want int16 {want})")
                take = min(len(chunk), n - done)
                data = np.ascontiguousarray(chunk[:take]).reshape(-1).view(np.uint8)
                accepted = self.dma.s2mm_push(data, last=done + take == n)
                done += accepted // data.itemsize // (4 if shape else 2)
                self.hw_set("SAMPLES_DONE", VALUE=done)
                if accepted < data.size:
                    self.hw_latch("ERRORS", FIFO_OVERRUN=True)
                    break
        finally:
            close = getattr(samples, "close", None)
            if close is not None:
                close()
        st = self.physics.status()
        ts = (st.trigger_sample - self._delay) & ((1 << 64) - 1)  # the trigger, not the start
        self.hw_set("TRIG_TS_LO", VALUE=ts & U32)
        self.hw_set("TRIG_TS_HI", VALUE=ts >> 32)
        self.hw_set("CLIP_COUNT", VALUE=min(U32, st.clip_count))
        self.hw_latch("ERRORS", OVERFLOW=st.overflow)
        self.hw_set("STATUS", BUSY=0, DONE=int(done == n))
        if done == n:
            self.hw_set("CAPTURE_COUNT", VALUE=(self.hw_get("CAPTURE_COUNT") + 1) & U32)
        if self.elapsed is not None:
            self.elapsed(delay_s + n * settings.decimation / self.f_adc)
