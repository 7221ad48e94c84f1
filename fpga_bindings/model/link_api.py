"""The seam between the register-level overlay model and the waveform-level link physics.

The register model (`fpga_bindings.model.device` and friends) owns registers, DMA and status
bits; it turns register state into the calls below. The physics (`fpga_bindings.model.link`)
owns every waveform: the DAC samples it is given, the optical channel, the receiver and the
ADC/down-converter, and returns the samples exactly as the ADC capture IP would write them to
memory. Neither side imports the other's internals; both import this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import numpy as np


class OpticalSwitch(Enum):
    """Receiver input selected by the optical switch."""

    SIGNAL = 0  # the fibre from the transmitter
    BLOCKED = 1  # signal blocked: local oscillator only -> shot-noise calibration record
    LO_OFF = 2  # signal blocked and LO off -> electronic-noise calibration record


class AdcMode(Enum):
    DDC = 0  # hardware down-converter: complex int16 I/Q pairs, shape (n, 2)
    REAL_IF = 1  # raw real samples at the converter rate: int16, shape (n,)


@dataclass(frozen=True)
class FrontEnd:
    """Optical front-end settings as the front-end control registers hold them."""

    switch: OpticalSwitch = OpticalSwitch.SIGNAL
    voa_db: float = 0.0  # variable optical attenuator at the transmitter output, dB
    laser_on: bool = True
    lo_on: bool = True


@dataclass(frozen=True)
class AdcSettings:
    """One capture request, from the ADC capture IP's registers."""

    n_samples: int  # samples delivered to memory (after decimation in DDC mode)
    mode: AdcMode = AdcMode.DDC
    nco_hz: float = 0.0  # down-converter NCO frequency, Hz
    decimation: int = 1  # down-converter decimation factor


@dataclass(frozen=True)
class LinkStatus:
    """What the receiver's status registers show after the last capture."""

    lo_locked: bool
    beat_hz: float  # measured LO-to-signal beat frequency, Hz
    monitor_power_w: float  # detector monitor photodiode power, W
    clip_count: int  # ADC samples at full scale in the last capture
    overflow: bool  # down-converter or ADC overflow in the last capture
    trigger_sample: int  # ADC sample counter at the capture trigger


class LinkPhysics(Protocol):
    """Implemented by the waveform-level model of the optical link."""

    def load_dac(self, iq: np.ndarray, cyclic: bool) -> None:
        """Waveform for the DAC player: int16, shape (n, 2) (I, Q), at the DAC stream rate."""

    def set_frontend(self, frontend: FrontEnd) -> None: ...

    def capture(self, settings: AdcSettings, chunk: int = 1 << 20) -> Iterator[np.ndarray]:
        """Trigger a capture; yield the samples in order, in chunks of at most `chunk`."""

    def status(self) -> LinkStatus: ...

    def advance(self, seconds: float) -> None:
        """Let model time pass without a capture (the capture's TRIG_DELAY), seconds."""

    def inject(self, fault: str, **params: float) -> None:
        """Inject a fault at run time: 'lo_unlock', 'fibre_cut', 'excess_noise_spike',
        'saturation' (others are register-level, e.g. DMA stall). Parameters are documented
        by the implementation."""

    def clear_faults(self) -> None: ...
