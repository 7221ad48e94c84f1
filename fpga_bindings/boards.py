"""Board profiles: the RF data converter limits of the supported RFSoC boards.

Figures from the AMD/Xilinx data sheets (DS926 Zynq UltraScale+ RFSoC data sheet; PG269 RF data
converter product guide): Gen1 parts (XCZU28DR on the ZCU111) and Gen3 parts (XCZU48DR on the
ZCU208 and the RFSoC 4x2). Samples reach the PL as int16 with the converter's bits MSB-aligned.
"""

from __future__ import annotations

from dataclasses import dataclass

GEN1_FACTORS = (1, 2, 4, 8)
GEN3_FACTORS = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 40)


@dataclass(frozen=True)
class BoardProfile:
    """RF converter limits and the default operating point of one board (rates in samples/s)."""

    name: str
    part: str
    adc_bits: int
    adc_max_sps: float
    dac_bits: int
    dac_max_sps: float
    decimations: tuple[int, ...]
    interpolations: tuple[int, ...]
    adc_channels: int
    dac_channels: int
    default_adc_sps: float  # converter rate used by the default overlay
    default_dac_sps: float
    default_decimation: int
    default_interpolation: int

    @property
    def default_capture_sps(self) -> float:
        """Complex sample rate delivered by the ADC capture IP in DDC mode, samples/s."""
        return self.default_adc_sps / self.default_decimation

    @property
    def default_player_sps(self) -> float:
        """Complex sample rate the DAC player streams to the converter, samples/s."""
        return self.default_dac_sps / self.default_interpolation

    def check_decimation(self, factor: int) -> None:
        if factor not in self.decimations:
            raise ValueError(f"{self.name}: decimation {factor} not in {self.decimations}")

    def check_interpolation(self, factor: int) -> None:
        if factor not in self.interpolations:
            raise ValueError(f"{self.name}: interpolation {factor} not in {self.interpolations}")


PROFILES: dict[str, BoardProfile] = {
    "rfsoc4x2": BoardProfile(
        name="rfsoc4x2", part="XCZU48DR-2FFVG1517E", adc_bits=14, adc_max_sps=5.0e9,
        dac_bits=14, dac_max_sps=9.85e9, decimations=GEN3_FACTORS, interpolations=GEN3_FACTORS,
        adc_channels=4, dac_channels=2, default_adc_sps=4.0e9, default_dac_sps=4.0e9,
        default_decimation=8, default_interpolation=8,
    ),
    "zcu208": BoardProfile(
        name="zcu208", part="XCZU48DR-2FSVG1517E", adc_bits=14, adc_max_sps=5.0e9,
        dac_bits=14, dac_max_sps=9.85e9, decimations=GEN3_FACTORS, interpolations=GEN3_FACTORS,
        adc_channels=8, dac_channels=8, default_adc_sps=4.0e9, default_dac_sps=4.0e9,
        default_decimation=8, default_interpolation=8,
    ),
    "zcu111": BoardProfile(
        name="zcu111", part="XCZU28DR-2FFVG1517E", adc_bits=12, adc_max_sps=4.096e9,
        dac_bits=14, dac_max_sps=6.554e9, decimations=GEN1_FACTORS, interpolations=GEN1_FACTORS,
        adc_channels=8, dac_channels=8, default_adc_sps=4.0e9, default_dac_sps=4.0e9,
        default_decimation=8, default_interpolation=8,
    ),
}

DEFAULT_BOARD = "rfsoc4x2"


def get_profile(name: str = DEFAULT_BOARD) -> BoardProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; known: {', '.join(sorted(PROFILES))}") from None
