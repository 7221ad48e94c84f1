"""pynq drivers of the cvqkd overlay IP blocks, bound by the VLNVs in overlay.toml.

Each driver is a `pynq.DefaultIP` subclass (pynq selects it through `bindto`), reaches its
registers only through named fields (`RegisterIO` over pynq's MMIO), allocates with
`pynq.allocate` and moves data with pynq's stock AXI DMA driver (`pynq.lib.dma.DMA`). The same
code runs on the board and on the model device. Failures raise `OverlayError` subclasses whose
messages say what the registers showed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pynq
import pynq.lib.dma  # registers pynq's stock AXI DMA driver for its VLNV

from fpga_bindings.boards import PROFILES, BoardProfile
from fpga_bindings.regmap import RegisterIO, default_map
from fpga_bindings.streams import samples_per_beat

_MAP = default_map()
POLL_S = 1e-4  # status polling interval, s
STAGE_SAMPLES = 1 << 22  # waveform samples per MM2S transfer through the staging buffer (16 MiB)


class OverlayError(RuntimeError):
    """The overlay reported a failure."""


class OverlayVersionError(OverlayError):
    """The loaded bitstream is not a cvqkd overlay of a compatible version."""


class LoUnlockedError(OverlayError):
    """The receiver's local oscillator is not locked."""


class PlayerError(OverlayError):
    """DAC player underflow / overrun."""


class CaptureError(OverlayError):
    """The capture was refused or aborted (bad configuration, FIFO overrun)."""


class CaptureTimeout(OverlayError, TimeoutError):
    """No trigger arrived, or the capture did not finish, in time."""


class DmaError(OverlayError):
    """The AXI DMA reported an error (internal, slave or decode)."""


class DmaTimeout(OverlayError, TimeoutError):
    """The AXI DMA did not complete in time (stalled)."""


def _io(ip: pynq.DefaultIP, block: str) -> RegisterIO:
    return RegisterIO(ip.mmio, _MAP.block(block))


def _dma_io(dma: Any) -> RegisterIO:
    """Named-field access to an AXI DMA instance (the template registers of overlay.toml)."""
    return RegisterIO(dma.mmio, _MAP.block(dma.description["fullpath"]))


def _dma_fault(dma: Any, channel: str) -> str | None:
    sr = _dma_io(dma).fields(f"{channel}_DMASR")
    for bit, what in (("DMA_INT_ERR", "internal error (zero length?)"),
                      ("DMA_SLV_ERR", "slave error (memory refused the access)"),
                      ("DMA_DEC_ERR", "decode error (no memory at the address)")):
        if sr[bit]:
            return f"{channel} DMA {what}"
    return None


def _check_dma(dma: Any, channel: str, what: str) -> None:
    """Raise if the channel is in an error state (a transfer would not start)."""
    fault = _dma_fault(dma, channel)
    if fault:
        raise DmaError(f"{what}: {fault}; reset the DMA (recover()) before retrying")


def _wait_dma(dma: Any, channel: str, deadline: float, what: str) -> None:
    """Poll a simple-mode channel until IDLE (then let pynq's `wait` finish) or fail."""
    chan = dma.sendchannel if channel == "MM2S" else dma.recvchannel
    while True:
        _check_dma(dma, channel, what)
        if chan.idle:
            chan.wait()  # returns at once: invalidates the buffer, reads `transferred`
            return
        if time.monotonic() > deadline:
            raise DmaTimeout(f"{what}: {channel} DMA did not complete (stalled); "
                             f"{channel}_DMASR.IDLE still 0")
        time.sleep(POLL_S)


def reset_dma(dma: Any) -> None:
    """PG021 soft reset of the whole DMA core, then restart its channels as pynq expects."""
    io = _dma_io(dma)
    io.set("MM2S_DMACR", RESET=1)
    deadline = time.monotonic() + 1.0
    while io.get("MM2S_DMACR", "RESET"):
        if time.monotonic() > deadline:
            raise DmaTimeout("DMA soft reset did not complete")
        time.sleep(POLL_S)
    for chan in (dma.sendchannel, dma.recvchannel):
        if chan is not None:
            chan.start()


class BoardInfo(pynq.DefaultIP):
    """Board identity and health."""

    bindto = [_MAP.block("board_info").vlnv]  # noqa: RUF012 (pynq's interface)

    def __init__(self, description: dict[str, Any]):
        super().__init__(description)
        self.io = _io(self, "board_info")

    @property
    def version(self) -> tuple[int, int, int]:
        v = self.io.fields("VERSION")
        return v["MAJOR"], v["MINOR"], v["PATCH"]

    def check(self) -> None:
        """Raise unless this is a cvqkd overlay with the contract's major version."""
        magic = self.io.get("MAGIC")
        if magic != _MAP.magic:
            raise OverlayVersionError(f"not a cvqkd overlay: MAGIC = {magic:#010x}")
        if self.version[0] != _MAP.version[0]:
            raise OverlayVersionError(f"overlay version {self.version} incompatible with "
                                      f"contract {_MAP.version}")

    @property
    def board(self) -> BoardProfile:
        bid = self.io.get("BOARD", "ID")
        name = _MAP.block("board_info").register("BOARD").field("ID").name_of(bid)
        return PROFILES[name]

    def temperatures_c(self) -> dict[str, float]:
        return {"pl": self.io.get("TEMP_PL") / 1000, "ps": self.io.get("TEMP_PS") / 1000}

    def clocks(self) -> dict[str, int]:
        return self.io.fields("CLOCK_STATUS")

    def alarms(self, clear: bool = False) -> dict[str, int]:
        """Sticky health alarms; `clear` clears those reported."""
        a = self.io.fields("ALARMS")
        if clear and any(a.values()):
            self.io.clear("ALARMS", *[k for k, v in a.items() if v])
        return a


class Frontend(pynq.DefaultIP):
    """Optical front-end control."""

    bindto = [_MAP.block("frontend").vlnv]  # noqa: RUF012

    def __init__(self, description: dict[str, Any]):
        super().__init__(description)
        self.io = _io(self, "frontend")
        self._voa_max = self.io.block.register("VOA").field("ATTEN").max or 0

    def enable(self, laser: bool | None = None, lo: bool | None = None) -> None:
        values = {}
        if laser is not None:
            values["LASER_EN"] = int(laser)
        if lo is not None:
            values["LO_EN"] = int(lo)
        self.io.set("CTRL", **values)

    def set_switch(self, position: str) -> None:
        """'SIGNAL', 'BLOCKED' (shot-noise record) or 'LO_OFF' (electronic-noise record)."""
        field = self.io.block.register("CTRL").field("SWITCH")
        if position not in field.values:
            raise ValueError(f"switch position {position!r} not in {sorted(field.values)}")
        self.io.set("CTRL", SWITCH=position)

    @property
    def switch(self) -> str:
        return self.io.block.register("CTRL").field("SWITCH").name_of(
            self.io.get("CTRL", "SWITCH"))

    def set_voa_db(self, db: float) -> None:
        """Attenuation, dB (0 .. VOA max, 0.01 dB steps)."""
        steps = round(db * 100)
        if not 0 <= steps <= self._voa_max:
            raise ValueError(f"VOA attenuation {db} dB outside 0..{self._voa_max / 100} dB")
        self.io.set("VOA", ATTEN=steps)

    @property
    def voa_db(self) -> float:
        return self.io.get("VOA", "ATTEN") / 100

    def lo_status(self) -> tuple[bool, float]:
        """(LO locked, beat frequency in Hz)."""
        return bool(self.io.get("STATUS", "LO_LOCKED")), float(self.io.get("BEAT_FREQ"))

    def require_lo_locked(self) -> None:
        locked, beat = self.lo_status()
        if not locked:
            lost = self.io.get("ERRORS", "LOCK_LOST")
            raise LoUnlockedError(f"local oscillator not locked (STATUS.LO_LOCKED = 0, "
                                  f"ERRORS.LOCK_LOST = {lost}, LO_EN = "
                                  f"{self.io.get('CTRL', 'LO_EN')}, beat {beat:.0f} Hz)")

    def monitor_power_dbm(self) -> float:
        return self.io.get("MONITOR_POWER") / 1000

    def set_power_low_threshold_dbm(self, dbm: float) -> None:
        self.io.set("POWER_LOW_THRESHOLD", VALUE=round(dbm * 1000))

    def errors(self, clear: bool = False) -> dict[str, int]:
        e = self.io.fields("ERRORS")
        if clear and any(e.values()):
            self.io.clear("ERRORS", *[k for k, v in e.items() if v])
        return e


class DacPlayer(pynq.DefaultIP):
    """Transmitter waveform player; `attach_dma` gives it the MM2S DMA of stream `waveform`."""

    bindto = [_MAP.block("dac_player").vlnv]  # noqa: RUF012

    def __init__(self, description: dict[str, Any]):
        super().__init__(description)
        self.io = _io(self, "dac_player")
        self.dma: Any = None

    def attach_dma(self, dma: Any) -> None:
        self.dma = dma

    @property
    def capacity(self) -> int:
        return self.io.get("CAPACITY")

    def load(self, iq: np.ndarray, timeout_s: float = 2.0) -> None:
        """Load a waveform: int16 (n, 2) = (I, Q) at the player rate, n <= CAPACITY. Long
        waveforms go in MM2S transfers of STAGE_SAMPLES through one staging buffer (within the
        DMA's maximum transfer); `timeout_s` applies to each transfer. The stream carries whole
        beats (contract 1.2: two samples): a waveform that does not fill its last beat is
        padded with zero samples, which LENGTH = n leaves unplayed."""
        iq = np.asarray(iq)
        if iq.dtype != np.int16 or iq.ndim != 2 or iq.shape[1] != 2 or not len(iq):
            raise ValueError(f"waveform must be int16 of shape (n, 2), got {iq.dtype}{iq.shape}")
        per_beat = samples_per_beat("waveform")
        padded = -(-len(iq) // per_beat) * per_beat
        if padded > self.capacity:
            raise ValueError(f"waveform of {len(iq)} samples exceeds the player buffer "
                             f"({self.capacity} samples)")
        if self.dma is None:
            raise OverlayError("dac_player has no DMA attached")
        self.io.pulse("COMMAND", "CLEAR")
        self.io.clear("ERRORS")
        step = min(padded, STAGE_SAMPLES, self.dma.buffer_max_size // 16 * 4)
        step -= step % per_beat
        with pynq.allocate((step, 2), np.int16, target=self.device) as buf:
            for b in range(0, len(iq), step):
                piece = iq[b:b + step]
                whole = min(step, padded - b)  # the piece plus its last beat's padding
                buf[:len(piece)] = piece
                buf[len(piece):whole] = 0
                _check_dma(self.dma, "MM2S", "waveform load")
                self.dma.sendchannel.transfer(buf, nbytes=whole * 4)
                _wait_dma(self.dma, "MM2S", time.monotonic() + timeout_s, "waveform load")
        loaded = self.io.get("LOADED")
        if loaded != padded or self.io.get("ERRORS", "OVERRUN"):
            raise PlayerError(f"waveform load: player holds {loaded} of {padded} samples")
        self.io.set("LENGTH", VALUE=len(iq))

    def play(self, cyclic: bool = True, gain: float = 1.0, external_trigger: bool = False) -> None:
        """Start playing LENGTH samples (digital gain 0 .. <4, Q2.14)."""
        gain_field = self.io.block.register("GAIN").field("VALUE")
        q = round(gain * (1 << 14))
        if not 0 <= q < 1 << gain_field.width:
            raise ValueError(f"gain {gain} outside 0 .. {((1 << gain_field.width) - 1) / 2**14}")
        self.io.set("CTRL", CYCLIC=int(cyclic),
                    TRIG_SOURCE="EXTERNAL" if external_trigger else "SOFTWARE")
        self.io.set("GAIN", VALUE=q)
        self.io.pulse("COMMAND", "START")
        if self.io.get("ERRORS", "UNDERFLOW"):
            self.io.clear("ERRORS", "UNDERFLOW")
            raise PlayerError(f"player underflow: LENGTH {self.io.get('LENGTH')} > LOADED "
                              f"{self.io.get('LOADED')} (load a waveform first)")

    def stop(self) -> None:
        self.io.pulse("COMMAND", "STOP")

    def status(self) -> dict[str, int]:
        return {**self.io.fields("STATUS"), "PLAY_COUNT": self.io.get("PLAY_COUNT")}


@dataclass
class Capture:
    """One capture as the ADC capture IP delivered it."""

    samples: Any  # PynqBuffer: int16 (n, 2) I/Q in DDC mode, int16 (n,) in REAL_IF mode
    trigger_sample: int  # converter sample counter at the trigger, ADC samples
    clip_count: int  # ADC samples at full scale
    overflow: bool
    sample_rate: float  # samples/s of `samples`
    nco_hz: float  # NCO frequency actually programmed (FTW-quantised), Hz


class AdcCapture(pynq.DefaultIP):
    """Receiver capture; `attach_dma` gives it the S2MM DMA of stream `capture`."""

    bindto = [_MAP.block("adc_capture").vlnv]  # noqa: RUF012

    def __init__(self, description: dict[str, Any]):
        super().__init__(description)
        self.io = _io(self, "adc_capture")
        self.dma: Any = None
        self.profile: BoardProfile | None = None
        self._pending: dict[str, Any] | None = None

    def attach_dma(self, dma: Any) -> None:
        self.dma = dma

    def set_profile(self, profile: BoardProfile) -> None:
        """Converter limits and rate (from board_info) for decimation and NCO settings."""
        self.profile = profile

    def _need_profile(self) -> BoardProfile:
        if self.profile is None:
            raise OverlayError("adc_capture has no board profile (call set_profile)")
        return self.profile

    def nco_ftw(self, nco_hz: float) -> int:
        """NCO frequency, Hz -> NCO_FTW (two's complement of the signed word)."""
        f_adc = self._need_profile().default_adc_sps
        if not -f_adc / 2 <= nco_hz < f_adc / 2:
            raise ValueError(f"NCO {nco_hz} Hz outside +-f_adc/2 = {f_adc / 2:.4g} Hz")
        bits = self.io.block.register("NCO_FTW").field("VALUE").width
        return round(nco_hz / f_adc * 2**bits) % (1 << bits)

    def arm(self, n: int, *, mode: str = "DDC", nco_hz: float = 0.0,
            decimation: int | None = None, trigger: str = "SOFTWARE", delay_s: float = 0.0,
            trigger_out: bool = False, out: Any = None) -> None:
        """Program the DMA and the capture and arm it; `wait()` collects the result.
        `delay_s`: from the trigger to the first sample (TRIG_DELAY, whole ADC samples);
        `trigger_out`: the software trigger also pulses the trigger output pin."""
        prof = self._need_profile()
        if self.dma is None:
            raise OverlayError("adc_capture has no DMA attached")
        if self.io.get("STATUS", "BUSY") or self._pending is not None:
            raise CaptureError("a capture is already in progress")
        if not 0 < n < 1 << 32:
            raise ValueError(f"capture length {n} samples outside 1 .. 2^32-1")
        per_beat = samples_per_beat("capture", real=mode != "DDC")
        if n % per_beat:
            raise ValueError(f"capture length {n} samples is not whole beats of the capture "
                             f"stream ({per_beat} {mode} samples per beat, overlay contract "
                             f"{'.'.join(map(str, _MAP.version))}): round it up to a multiple "
                             f"of {per_beat}")
        dec = prof.default_decimation if decimation is None else decimation
        if mode == "DDC":
            prof.check_decimation(dec)
        shape = (n, 2) if mode == "DDC" else (n,)
        nbytes = 2 * int(np.prod(shape))
        if nbytes > self.dma.buffer_max_size:
            raise ValueError(f"capture of {n} samples ({nbytes} bytes) exceeds the S2MM DMA's "
                             f"largest transfer ({self.dma.buffer_max_size} bytes)")
        delay = round(delay_s * prof.default_adc_sps)
        if not 0 <= delay < 1 << self.io.block.register("TRIG_DELAY").field("VALUE").width:
            raise ValueError(f"trigger delay {delay_s} s outside the TRIG_DELAY range")
        if out is None:
            out = pynq.allocate(shape, np.int16, target=self.device)
        elif out.shape != shape or out.dtype != np.int16:
            raise ValueError(f"out must be int16 {shape}, got {out.dtype}{out.shape}")
        ftw = self.nco_ftw(nco_hz)
        self.io.clear("ERRORS")
        self.io.set("CTRL", MODE=mode, TRIG_SOURCE=trigger, TRIG_OUT=int(trigger_out))
        self.io.set("N_SAMPLES", VALUE=n)
        self.io.set("DECIMATION", VALUE=dec)
        self.io.set("NCO_FTW", VALUE=ftw)
        self.io.set("TRIG_DELAY", VALUE=delay)
        _check_dma(self.dma, "S2MM", "capture")
        self.dma.recvchannel.transfer(out)
        self.io.pulse("COMMAND", "ARM")
        if self.io.get("ERRORS", "BAD_CONFIG"):
            self.recover()  # the S2MM transfer programmed above will never be fed
            raise CaptureError(f"capture refused (ERRORS.BAD_CONFIG): N_SAMPLES {n}, "
                               f"DECIMATION {dec}, mode {mode}")
        rate = prof.default_adc_sps / (dec if mode == "DDC" else 1)
        bits = self.io.block.register("NCO_FTW").field("VALUE").width
        signed = ftw - (1 << bits) if ftw >= 1 << (bits - 1) else ftw
        self._pending = {"out": out, "n": n, "rate": rate,
                         "nco": signed * prof.default_adc_sps / 2**bits,
                         "delay_s": delay / prof.default_adc_sps}

    def trigger(self) -> None:
        self.io.pulse("COMMAND", "TRIGGER")

    def wait(self, timeout_s: float | None = None) -> Capture:
        """Wait for the armed capture to land in memory; raise with the register state if not."""
        if self._pending is None:
            raise CaptureError("no capture armed")
        p, self._pending = self._pending, None
        if timeout_s is None:
            timeout_s = 1.0 + 4 * p["n"] / p["rate"] + p["delay_s"]
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                st, err = self.io.fields("STATUS"), self.io.fields("ERRORS")
                if err["FIFO_OVERRUN"]:
                    done = self.io.get("SAMPLES_DONE")
                    raise DmaTimeout(f"capture aborted: S2MM DMA stalled, capture FIFO overran "
                                     f"after {done} of {p['n']} samples (ERRORS.FIFO_OVERRUN)")
                _check_dma(self.dma, "S2MM", "capture")
                if st["DONE"] and self.dma.recvchannel.idle:
                    break
                if time.monotonic() > deadline:
                    if st["ARMED"]:
                        raise CaptureTimeout(f"capture armed but not triggered after "
                                             f"{timeout_s:.3g} s (TRIG_SOURCE "
                                             f"{self.io.get('CTRL', 'TRIG_SOURCE')})")
                    raise DmaTimeout(f"capture: S2MM DMA not complete after {timeout_s:.3g} s "
                                     f"({self.io.get('SAMPLES_DONE')} of {p['n']} samples "
                                     f"delivered, STATUS {st})")
                time.sleep(POLL_S)
        except OverlayError as e:
            self.io.pulse("COMMAND", "ABORT")
            if isinstance(e, DmaTimeout | DmaError):
                e.args = (f"{e.args[0]}; call recover() before the next capture",)
            raise
        self.dma.recvchannel.wait()
        got = self.dma.recvchannel.transferred
        if got != p["out"].nbytes:
            raise DmaError(f"capture: DMA moved {got} bytes, expected {p['out'].nbytes}")
        ts = (self.io.get("TRIG_TS_HI") << 32) | self.io.get("TRIG_TS_LO")
        return Capture(samples=p["out"], trigger_sample=ts, clip_count=self.io.get("CLIP_COUNT"),
                       overflow=bool(self.io.get("ERRORS", "OVERFLOW")), sample_rate=p["rate"],
                       nco_hz=p["nco"])

    def capture(self, n: int, *, timeout_s: float | None = None, **settings: Any) -> Capture:
        """Arm, software-trigger and wait: n samples (see `arm` for the settings)."""
        self.arm(n, trigger="SOFTWARE", **settings)
        self.trigger()
        return self.wait(timeout_s)

    def recover(self) -> None:
        """After a DMA error or stall: abort the capture and soft-reset the S2MM DMA."""
        self._pending = None
        self.io.pulse("COMMAND", "ABORT")
        self.io.clear("ERRORS")
        reset_dma(self.dma)
