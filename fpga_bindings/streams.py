"""Beat widths and rate limits of the overlay's sample streams (overlay.toml [[streams]] and
[[clocks]]): how many samples one AXI4-Stream beat carries and the fastest sample rate a
stream's clock can carry. Pure: reads the contract, no hardware."""

from __future__ import annotations

from fpga_bindings.regmap import OverlayMap, default_map

COMPLEX_BITS = 32  # one int16 (I, Q) sample
REAL_BITS = 16  # one int16 real sample (capture REAL_IF mode)

# the stream clock of each stream's sample end (the converter side)
_STREAM_CLOCK = {"waveform": "dac_axis_aclk", "capture": "adc_axis_aclk"}


def _stream(name: str, overlay: OverlayMap) -> dict:
    for s in overlay.streams:
        if s["name"] == name:
            return s
    raise KeyError(f"overlay contract has no stream {name!r}")


def samples_per_beat(stream: str, real: bool = False,
                     overlay: OverlayMap | None = None) -> int:
    """Samples per beat of `stream` ("waveform" or "capture"): complex int16 pairs, or real
    int16 samples with `real` (capture REAL_IF mode)."""
    bits = int(_stream(stream, overlay or default_map())["tdata_bits"])
    return bits // (REAL_BITS if real else COMPLEX_BITS)


def max_complex_sps(stream: str, overlay: OverlayMap | None = None) -> float:
    """Fastest complex sample rate `stream` carries: its clock times the samples per beat,
    samples/s (contract 1.2: 500 MHz x 2 = 1 GS/s)."""
    ov = overlay or default_map()
    clock = next(c for c in ov.clocks if c["name"] == _STREAM_CLOCK[stream])
    return float(clock["freq_hz"]) * samples_per_beat(stream, overlay=ov)
