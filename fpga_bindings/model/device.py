"""The software model of the board as a `pynq.Device`, so the real drivers run unchanged.

`ModelDevice` has pynq's `REGISTER_RW` capability: pynq's own `MMIO` turns every register access
into `read_registers`/`write_registers`, which decode the address against overlay.toml and hand
it to the block models; `default_memory.allocate` returns real `PynqBuffer`s that the DMA model
writes into; `get_bitfile_metadata` gives `pynq.Overlay` the IP dictionary from overlay.toml in
place of a .hwh. Register it with `activate()` (sets `pynq.Device.active_device`).
"""

from __future__ import annotations

import struct
from typing import Any

import pynq

from fpga_bindings.boards import BoardProfile, get_profile
from fpga_bindings.model.blocks import (
    AdcCaptureModel,
    BoardInfoModel,
    DacPlayerModel,
    FrontendModel,
)
from fpga_bindings.model.dma import AxiDmaModel
from fpga_bindings.model.link_api import LinkPhysics
from fpga_bindings.model.memory import ModelMemory
from fpga_bindings.model.registers import BusError, RegisterBlock
from fpga_bindings.regmap import OverlayMap, default_map

PHYSICS_FAULTS = ("lo_unlock", "fibre_cut", "excess_noise_spike", "saturation")
REGISTER_FAULTS = ("dma_stall", "dma_error", "overtemp", "clock_unlock")


def default_physics(profile: BoardProfile) -> LinkPhysics:
    """The project's waveform-level link model (fpga_bindings.model.link) with its defaults."""
    from fpga_bindings.model.link import LinkConfig, LinkModel

    return LinkModel(LinkConfig(board=profile.name))


class ModelMetadata:
    """What pynq's .hwh parser provides to `pynq.Overlay`, built from overlay.toml instead.

    No interrupt controller, GPIO, hierarchy or memory entries: the drivers poll and the model's
    memory is reached through `allocate`.
    """

    def __init__(self, overlay: OverlayMap):
        self.ip_dict = overlay.ip_dict()
        for entry in self.ip_dict.values():
            del entry["device"]  # pynq adds the device itself (and deep-copies this dict)
        self.gpio_dict: dict = {}
        self.interrupt_controllers: dict = {}
        self.interrupt_pins: dict = {}
        self.hierarchy_dict: dict = {}
        self.mem_dict: dict = {}
        self.clock_dict: dict = {}
        self.systemgraph = None


class ModelDevice(pynq.Device):
    """The modelled board: register blocks, DMA engines and memory behind pynq's device API."""

    capabilities = {"REGISTER_RW": True}  # noqa: RUF012 (pynq reads it as a class attribute)

    def __init__(self, physics: LinkPhysics | None = None, board: str = "rfsoc4x2",
                 chunk: int = 1 << 20, overlay: OverlayMap | None = None):
        super().__init__("cvqkd-model")
        self.name = "cvqkd model device"
        self.profile = get_profile(board)
        self.overlay = overlay or default_map()
        self.physics = physics if physics is not None else default_physics(self.profile)
        self.default_memory = ModelMemory(self)
        ov = self.overlay
        self.board_info = BoardInfoModel(ov.block("board_info"), self.profile)
        self.frontend = FrontendModel(ov.block("frontend"), self.physics)
        self.dac_player = DacPlayerModel(ov.block("dac_player"), self.physics,
                                         self.profile.default_player_sps)
        self.dma_dac = AxiDmaModel(ov.block("dma_dac"), self.default_memory,
                                   mm2s_sink=self.dac_player.stream_in)
        self.dma_adc = AxiDmaModel(ov.block("dma_adc"), self.default_memory)
        self.adc_capture = AdcCaptureModel(ov.block("adc_capture"), self.physics, self.dma_adc,
                                           self.profile, chunk, elapsed=self.dac_player.advance)
        self.dac_player.on_start.append(self.adc_capture.player_started)
        self.blocks: dict[str, RegisterBlock] = {
            b.block.name: b for b in (self.board_info, self.frontend, self.dac_player,
                                      self.dma_dac, self.dma_adc, self.adc_capture)}
        self._spans = sorted((b.block.base, b.block.base + b.block.range, b)
                             for b in self.blocks.values())

    # ---- pynq device API ----------------------------------------------------------------
    def _decode(self, address: int, op: str) -> tuple[RegisterBlock, int]:
        for start, end, blk in self._spans:
            if start <= address < end:
                return blk, address - start
        raise BusError(f"bus error: {op} of unmapped address {address:#x} (no IP block there)")

    def read_registers(self, address: int, length: int) -> bytes:
        if address % 4 or length % 4:
            raise BusError(f"bus error: unaligned read of {length} bytes at {address:#x}")
        blk, off = self._decode(address, "read")
        return b"".join(struct.pack("<I", blk.bus_read(off + i)) for i in range(0, length, 4))

    def write_registers(self, address: int, data: bytes) -> None:
        if address % 4 or len(data) % 4:
            raise BusError(f"bus error: unaligned write of {len(data)} bytes at {address:#x}")
        blk, off = self._decode(address, "write")
        for i in range(0, len(data), 4):
            blk.bus_write(off + i, struct.unpack_from("<I", data, i)[0])

    def flush(self, bo: Any, offset: int, ptr: int, size: int) -> None:
        """Cache maintenance is a no-op: model memory is coherent."""

    def invalidate(self, bo: Any, offset: int, ptr: int, size: int) -> None:
        """Cache maintenance is a no-op: model memory is coherent."""

    def get_bitfile_metadata(self, bitfile_name: str) -> ModelMetadata:
        """`pynq.Overlay(path, download=False, device=model)` reads the overlay from here."""
        return ModelMetadata(self.overlay)

    def activate(self) -> ModelDevice:
        """Make this the device pynq uses when none is named (`pynq.Device.active_device`)."""
        pynq.Device.active_device = self
        return self

    # ---- trigger pins ---------------------------------------------------------------------
    @property
    def trigger_out(self) -> list:
        """Callables run when the capture's trigger output pulses (TRIGGER with TRIG_OUT)."""
        return self.adc_capture.trigger_out

    def external_trigger(self) -> None:
        """A pulse on the EXTERNAL trigger input: an armed player plays, an armed capture
        starts (each only if its TRIG_SOURCE is EXTERNAL)."""
        self.dac_player.external_trigger()
        self.adc_capture.external_trigger()

    # ---- faults -------------------------------------------------------------------------
    def inject(self, fault: str, **params: Any) -> None:
        """Inject a fault, visible in registers as on hardware.

        Physics faults (forwarded to `LinkPhysics.inject`): lo_unlock, fibre_cut,
        excess_noise_spike, saturation. Register-level faults: dma_stall(dma='dma_adc',
        channel=None, after_bytes=0, accept=False), dma_error(dma, channel=None, kind='slave'),
        overtemp(temp_mc=110000), clock_unlock(which='adc'|'dac').
        """
        if fault in PHYSICS_FAULTS:
            self.physics.inject(fault, **params)
        elif fault in ("dma_stall", "dma_error"):
            dma = self._dma(params.pop("dma", "dma_adc"))
            channel = params.pop("channel", None) or ("S2MM" if dma is self.dma_adc else "MM2S")
            if fault == "dma_stall":
                dma.stall(channel, **params)
            else:
                dma.fail(channel, **params)
        elif fault == "overtemp":
            self.board_info.temp_pl_mc = int(params.get("temp_mc", 110_000))
        elif fault == "clock_unlock":
            which = params.get("which", "adc")
            if which not in ("adc", "dac"):
                raise ValueError(f"clock_unlock: which={which!r} not 'adc' or 'dac'")
            setattr(self.board_info, f"{which}_pll_locked", False)
        else:
            raise ValueError(f"unknown fault {fault!r}; known: "
                             f"{', '.join(PHYSICS_FAULTS + REGISTER_FAULTS)}")

    def clear_faults(self) -> None:
        """Remove every injected fault (sticky W1C bits stay set until software clears them)."""
        self.physics.clear_faults()
        self.dma_adc.clear_faults()
        self.dma_dac.clear_faults()
        self.board_info.temp_pl_mc = 45_000
        self.board_info.adc_pll_locked = self.board_info.dac_pll_locked = True

    def _dma(self, name: str) -> AxiDmaModel:
        if name not in ("dma_adc", "dma_dac"):
            raise ValueError(f"dma={name!r} not 'dma_adc' or 'dma_dac'")
        return getattr(self, name)
