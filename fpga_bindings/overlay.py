"""Entry points: the cvqkd overlay on the board (`open_board`) or on the model (`open_model`).

Both return a `CvqkdOverlay` whose attributes are the driver instances named as in overlay.toml
(board_info, frontend, dac_player, adc_capture, dma_dac, dma_adc) plus `rfdc` (the converter
settings interface) and `profile` (the board's converter limits). Both load through
`pynq.Overlay`, which picks each IP's driver by VLNV (`bindto`); off the board the model device
supplies the IP dictionary from overlay.toml where a board has the .hwh, so the same driver
classes are instantiated the same way.
"""

from __future__ import annotations

from typing import Any

import pynq

from fpga_bindings import drivers
from fpga_bindings.boards import BoardProfile
from fpga_bindings.model.device import ModelDevice
from fpga_bindings.model.link_api import LinkPhysics
from fpga_bindings.regmap import OVERLAY_TOML, default_map
from fpga_bindings.rfdc import ModelRfConverter, RfConverter, XrfdcConverter

IP_NAMES = ("board_info", "frontend", "dac_player", "adc_capture", "dma_dac", "dma_adc")


class CvqkdOverlay:
    """Drivers of one cvqkd overlay, wired along the streams of overlay.toml."""

    def __init__(self, ips: dict[str, Any], rfdc: RfConverter, device: Any):
        self.device = device
        for name in IP_NAMES:
            if name not in ips:
                raise drivers.OverlayVersionError(f"overlay has no IP named {name!r}")
            setattr(self, name, ips[name])
        self.board_info: drivers.BoardInfo
        self.frontend: drivers.Frontend
        self.dac_player: drivers.DacPlayer
        self.adc_capture: drivers.AdcCapture
        self.dma_dac: Any
        self.dma_adc: Any
        self.board_info.check()
        self.profile: BoardProfile = self.board_info.board
        self.rfdc = rfdc
        for stream in default_map().streams:
            src, dst = stream["from"].partition("/")[0], stream["to"].partition("/")[0]
            dma, ip = (src, dst) if src.startswith("dma_") else (dst, src)
            getattr(self, ip).attach_dma(getattr(self, dma))
        self.adc_capture.set_profile(self.profile)


def open_model(physics: LinkPhysics | None = None, board: str = "rfsoc4x2",
               chunk: int = 1 << 20) -> CvqkdOverlay:
    """The overlay on a fresh model device (made pynq's active device).

    pynq's own `Overlay` loads it: the "bitstream" is overlay.toml, whose IP dictionary the
    model device hands to pynq in place of a .hwh (`ModelDevice.get_bitfile_metadata`).
    `physics`: the link physics (default: fpga_bindings.model.link.LinkModel); `chunk`: samples
    per physics chunk streamed through the S2MM DMA model.
    """
    device = ModelDevice(physics=physics, board=board, chunk=chunk).activate()
    ol = pynq.Overlay(str(OVERLAY_TOML), download=False, device=device)
    ips = {name: getattr(ol, name) for name in IP_NAMES}
    return CvqkdOverlay(ips, ModelRfConverter(device.profile), device)


def open_board(bitfile: str, download: bool = True) -> CvqkdOverlay:  # pragma: no cover
    """The overlay on an RFSoC board (pynq.Overlay; needs the board image's pynq and xrfdc)."""
    ol = pynq.Overlay(bitfile, download=download)
    ips = {name: getattr(ol, name) for name in IP_NAMES}
    rf_name = default_map().block("rfdc").name
    rfdc = XrfdcConverter(getattr(ol, rf_name), ips["board_info"].board)
    return CvqkdOverlay(ips, rfdc, ol.device)
