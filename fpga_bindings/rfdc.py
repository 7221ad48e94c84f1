"""RF data converter settings behind the project's own interface.

The controller talks to `RfConverter`. On the board `XrfdcConverter` wraps the vendor's `xrfdc`
driver (present only on PYNQ board images; never imported at module level); off the board
`ModelRfConverter` validates and holds the same settings against the board profile (PG269:
converter rates, Gen1/Gen3 decimation and interpolation factors; Nyquist zones 1-2; ADC step
attenuator (DSA) 0-27 dB in 1 dB steps on Gen3 parts only).

Converter roles in the cvqkd overlay (docs/overlay.md): ADC tile 0 block 0 runs real at f_adc
with the converter's own decimation bypassed (the capture IP down-converts); DAC tile 0 block 0
takes complex samples from the player, interpolates and mixes them up with its NCO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from fpga_bindings.boards import BoardProfile

DSA_MAX_DB = 27.0  # Gen3 ADC digital step attenuator range, dB (PG269)


class RfConverter(Protocol):
    """The converter settings the controller may read or change."""

    profile: BoardProfile

    def adc_sample_rate(self) -> float:
        """ADC converter rate, samples/s."""

    def dac_sample_rate(self) -> float:
        """DAC converter rate, samples/s."""

    def set_dac_interpolation(self, factor: int) -> None: ...

    def dac_interpolation(self) -> int: ...

    def set_dac_nco_hz(self, hz: float) -> None:
        """DAC up-conversion NCO frequency, Hz (|hz| <= f_dac / 2)."""

    def dac_nco_hz(self) -> float: ...

    def set_adc_nyquist_zone(self, zone: int) -> None: ...

    def set_adc_attenuation_db(self, db: float) -> None:
        """ADC step attenuator, dB (Gen3 parts only)."""

    def pll_locked(self) -> dict[str, bool]:
        """{'adc': ..., 'dac': ...}: tile PLLs locked."""


def _check_nco(hz: float, rate: float) -> None:
    if not -rate / 2 <= hz <= rate / 2:
        raise ValueError(f"NCO {hz} Hz outside +-{rate / 2:.4g} Hz")


def _is_gen3(profile: BoardProfile) -> bool:
    return 3 in profile.decimations  # Gen3 parts add the non-power-of-two factors


@dataclass
class ModelRfConverter:
    """Off-board converter settings: validated against the profile and held."""

    profile: BoardProfile
    _interp: int = 0
    _nco_hz: float = 0.0
    _zone: int = 1
    _atten_db: float = 0.0

    def __post_init__(self) -> None:
        self._interp = self._interp or self.profile.default_interpolation

    def adc_sample_rate(self) -> float:
        return self.profile.default_adc_sps

    def dac_sample_rate(self) -> float:
        return self.profile.default_dac_sps

    def set_dac_interpolation(self, factor: int) -> None:
        self.profile.check_interpolation(factor)
        self._interp = factor

    def dac_interpolation(self) -> int:
        return self._interp

    def set_dac_nco_hz(self, hz: float) -> None:
        _check_nco(hz, self.dac_sample_rate())
        self._nco_hz = float(hz)

    def dac_nco_hz(self) -> float:
        return self._nco_hz

    def set_adc_nyquist_zone(self, zone: int) -> None:
        if zone not in (1, 2):
            raise ValueError(f"Nyquist zone {zone} not 1 or 2")
        self._zone = zone

    def set_adc_attenuation_db(self, db: float) -> None:
        if not _is_gen3(self.profile):
            raise ValueError(f"{self.profile.name}: ADC step attenuator needs a Gen3 part")
        if not 0 <= db <= DSA_MAX_DB or db != int(db):
            raise ValueError(f"ADC attenuation {db} dB not an integer in 0..{DSA_MAX_DB:.0f}")
        self._atten_db = float(db)

    def pll_locked(self) -> dict[str, bool]:
        return {"adc": True, "dac": True}


class XrfdcConverter:  # pragma: no cover - needs the board image's xrfdc
    """On-board converter settings through `xrfdc.RFdc` (the RF data converter's pynq driver)."""

    PLL_LOCKED = 2  # xrfdc tile PLLLockStatus value when locked

    def __init__(self, rfdc: Any, profile: BoardProfile, adc_tile: int = 0, dac_tile: int = 0):
        import xrfdc  # only on the board image

        self._x = xrfdc
        self.profile = profile
        self._adc_tile, self._dac_tile = rfdc.adc_tiles[adc_tile], rfdc.dac_tiles[dac_tile]
        self._adc, self._dac = self._adc_tile.blocks[0], self._dac_tile.blocks[0]

    def adc_sample_rate(self) -> float:
        return self.profile.default_adc_sps

    def dac_sample_rate(self) -> float:
        return self.profile.default_dac_sps

    def set_dac_interpolation(self, factor: int) -> None:
        self.profile.check_interpolation(factor)
        self._dac.InterpolationFactor = factor

    def dac_interpolation(self) -> int:
        return int(self._dac.InterpolationFactor)

    def set_dac_nco_hz(self, hz: float) -> None:
        _check_nco(hz, self.dac_sample_rate())
        self._dac.MixerSettings["Freq"] = hz / 1e6  # xrfdc takes MHz
        self._dac.UpdateEvent(self._x.EVENT_MIXER)

    def dac_nco_hz(self) -> float:
        return float(self._dac.MixerSettings["Freq"]) * 1e6

    def set_adc_nyquist_zone(self, zone: int) -> None:
        if zone not in (1, 2):
            raise ValueError(f"Nyquist zone {zone} not 1 or 2")
        self._adc.NyquistZone = zone

    def set_adc_attenuation_db(self, db: float) -> None:
        if not _is_gen3(self.profile):
            raise ValueError(f"{self.profile.name}: ADC step attenuator needs a Gen3 part")
        if not 0 <= db <= DSA_MAX_DB or db != int(db):
            raise ValueError(f"ADC attenuation {db} dB not an integer in 0..{DSA_MAX_DB:.0f}")
        self._adc.DSA["Attenuation"] = float(db)

    def pll_locked(self) -> dict[str, bool]:
        return {"adc": self._adc_tile.PLLLockStatus == self.PLL_LOCKED,
                "dac": self._dac_tile.PLLLockStatus == self.PLL_LOCKED}
