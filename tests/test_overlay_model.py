"""Register semantics of the model and DMA through pynq's own MMIO, allocate and DMA driver."""

from __future__ import annotations

import numpy as np
import pynq
import pytest
from link_double import GaussianLinkDouble  # tests/ test double of LinkPhysics
from pynq.lib.dma import DMA

from fpga_bindings.model.device import ModelDevice
from fpga_bindings.model.link_api import AdcSettings
from fpga_bindings.model.registers import BusError, RegisterBlock
from fpga_bindings.regmap import RegisterIO, default_map

MAP = default_map()


class RampPhysics(GaussianLinkDouble):
    """Test double whose capture is a known ramp: sample k = (k mod 30000, -(k mod 30000))."""

    def capture(self, settings: AdcSettings, chunk: int = 1 << 20):
        self.captures.append(settings)
        k = 0
        while k < settings.n_samples:
            idx = np.arange(k, min(k + chunk, settings.n_samples)) % 30000
            yield np.stack([idx, -idx], axis=1).astype(np.int16)
            k += chunk


@pytest.fixture
def dev() -> ModelDevice:
    return ModelDevice(physics=RampPhysics(), chunk=1000).activate()


def _io(name: str) -> RegisterIO:
    """Named-field access to a block through pynq's MMIO on the active (model) device."""
    blk = MAP.block(name)
    return RegisterIO(pynq.MMIO(blk.base, blk.range), blk)


def _dma(dev: ModelDevice, name: str) -> DMA:
    return DMA(MAP.ip_dict(dev)[name])


@pytest.mark.parametrize("name", ["board_info", "frontend", "dac_player", "adc_capture",
                                  "dma_adc"])
def test_reset_values_from_toml(name):
    blk = RegisterBlock(MAP.block(name))
    for reg in MAP.block(name).registers.values():
        assert blk.bus_read(reg.offset) == reg.reset & ~reg.mask("WO"), reg.name


def test_access_types():
    adc = MAP.block("adc_capture")
    blk = RegisterBlock(adc)
    ctrl, cmd, errs = adc.register("CTRL"), adc.register("COMMAND"), adc.register("ERRORS")
    # RW: stored; reserved bits read 0 (CTRL has fields in bits 3..0 only)
    blk.bus_write(ctrl.offset, 0xFFFF_FFFF)
    assert blk.hw_get("CTRL", "MODE") == 1 and blk.bus_read(ctrl.offset) == 0b1111
    # RO: writes ignored
    blk.hw_set("SAMPLES_DONE", VALUE=123)
    blk.bus_write(adc.register("SAMPLES_DONE").offset, 0)
    assert blk.hw_get("SAMPLES_DONE") == 123
    # W1C: set by hardware, writing 1 clears only that bit, writing 0 does nothing
    both = errs.field("OVERFLOW").mask | errs.field("FIFO_OVERRUN").mask
    blk.hw_set("ERRORS", OVERFLOW=1, FIFO_OVERRUN=1)
    blk.bus_write(errs.offset, 0)
    assert blk.bus_read(errs.offset) == both
    blk.bus_write(errs.offset, errs.field("OVERFLOW").mask)
    assert blk.bus_read(errs.offset) == errs.field("FIFO_OVERRUN").mask
    # WO: pulses reach on_command, read back 0
    seen = []
    blk.on_command = lambda reg, cmds: seen.append((reg, cmds))
    blk.bus_write(cmd.offset, cmd.field("ARM").mask | cmd.field("TRIGGER").mask)
    assert seen == [("COMMAND", {"ARM", "TRIGGER"})] and blk.bus_read(cmd.offset) == 0
    # no register at an offset inside the block -> bus error
    assert adc.at_offset(adc.range - 4) is None
    with pytest.raises(BusError, match="no register"):
        blk.bus_read(adc.range - 4)


def test_max_clamp_and_signed_fields(dev):
    io = _io("frontend")
    io.set("VOA", ATTEN=65535)
    assert io.get("VOA", "ATTEN") == 6000  # clamps to the documented maximum
    io.set("POWER_LOW_THRESHOLD", VALUE=-40_000)
    assert io.get("POWER_LOW_THRESHOLD") == -40_000


def test_mmio_reads_model_and_unmapped_addresses_fail(dev):
    info = MAP.block("board_info")
    mmio = pynq.MMIO(info.base, info.range)  # pynq picks the active (model) device
    assert mmio.read(info.register("MAGIC").offset) == MAP.magic
    mmio.write(info.register("SCRATCH").offset, 0xDEADBEEF)
    assert mmio.read(info.register("SCRATCH").offset) == 0xDEADBEEF
    with pytest.raises(BusError, match="unmapped address 0xb0000000"):
        pynq.MMIO(0xB000_0000, 4).read(0)
    with pytest.raises(BusError, match="no register"):
        mmio.read(0x800)


def test_allocate_returns_pynqbuffer_with_distinct_addresses(dev):
    a = pynq.allocate((100, 2), np.int16)
    b = pynq.allocate(10, np.uint32)
    assert isinstance(a, pynq.buffer.PynqBuffer) and a.physical_address % 4096 == 0
    assert b.physical_address >= a.physical_address + a.nbytes
    assert not a.any()


def test_mm2s_loads_player_through_stock_dma(dev):
    dma = _dma(dev, "dma_dac")
    assert dma.recvchannel is None and dma.sendchannel is not None
    wave = np.arange(2 * 3000, dtype=np.int16).reshape(-1, 2)
    buf = pynq.allocate(wave.shape, np.int16)
    buf[:] = wave
    dma.sendchannel.transfer(buf)
    dma.sendchannel.wait()
    assert dma.sendchannel.transferred == wave.nbytes
    assert dev.dac_player.hw_get("LOADED") == 3000
    np.testing.assert_array_equal(dev.dac_player._wave[:3000], wave)


def test_s2mm_capture_lands_in_callers_buffer_in_chunks(dev):
    dma = _dma(dev, "dma_adc")
    io = _io("adc_capture")
    n = 2500  # three physics chunks of <= 1000 samples
    buf = pynq.allocate((2 * n, 2), np.int16)  # larger than the capture: TLAST ends it early
    buf[:] = 7
    dma.recvchannel.transfer(buf)
    io.set("N_SAMPLES", VALUE=n)
    io.pulse("COMMAND", "ARM")
    io.pulse("COMMAND", "TRIGGER")
    dma.recvchannel.wait()
    assert dma.recvchannel.transferred == n * 4  # S2MM_LENGTH = bytes up to TLAST
    k = np.arange(n) % 30000
    np.testing.assert_array_equal(buf[:n], np.stack([k, -k], axis=1))
    assert (buf[n:] == 7).all()
    assert io.fields("STATUS") == {"ARMED": 0, "BUSY": 0, "DONE": 1}
    assert io.get("SAMPLES_DONE") == n and io.get("CAPTURE_COUNT") == 1


def test_trigger_without_dma_overruns(dev):
    io = _io("adc_capture")
    io.set("N_SAMPLES", VALUE=10)
    io.pulse("COMMAND", "ARM")
    io.pulse("COMMAND", "TRIGGER")
    assert io.get("ERRORS", "FIFO_OVERRUN") == 1 and io.get("STATUS", "DONE") == 0


def test_bad_config_refuses_to_arm(dev):
    io = _io("adc_capture")
    io.set("N_SAMPLES", VALUE=10)
    io.set("DECIMATION", VALUE=7)  # not a converter decimation factor
    io.pulse("COMMAND", "ARM")
    assert io.get("ERRORS", "BAD_CONFIG") == 1 and io.get("STATUS", "ARMED") == 0


def test_dma_errors_halt_channel_and_soft_reset_recovers(dev):
    dma = _dma(dev, "dma_adc")
    io = RegisterIO(dma.mmio, MAP.block("dma_adc"))
    cap = _io("adc_capture")
    # S2MM to an address with no memory behind it: decode error, RS cleared, channel halted
    io.set("S2MM_DA", ADDR=0x1000)
    io.set("S2MM_LENGTH", LENGTH=64)
    cap.set("N_SAMPLES", VALUE=16)
    cap.pulse("COMMAND", "ARM")
    cap.pulse("COMMAND", "TRIGGER")
    sr = io.fields("S2MM_DMASR")
    assert (sr["DMA_DEC_ERR"], sr["ERR_IRQ"], sr["HALTED"], sr["IDLE"]) == (1, 1, 1, 0)
    assert io.get("S2MM_DMACR", "RS") == 0
    with pytest.raises(RuntimeError):  # pynq's wait refuses a halted channel
        dma.recvchannel.wait()
    # PG021 soft reset clears the error; the channel runs again
    io.set("S2MM_DMACR", RESET=1)
    assert io.read("S2MM_DMASR") == MAP.block("dma_adc").register("S2MM_DMASR").reset
    dma.recvchannel.start()
    # zero length: internal error
    io.set("S2MM_LENGTH", LENGTH=0)
    assert io.fields("S2MM_DMASR")["DMA_INT_ERR"] == 1
    # and a normal transfer works after another reset
    io.set("S2MM_DMACR", RESET=1)
    dma.recvchannel.start()
    buf = pynq.allocate((16, 2), np.int16)
    dma.recvchannel.transfer(buf)
    cap.pulse("COMMAND", "ARM")
    cap.pulse("COMMAND", "TRIGGER")
    dma.recvchannel.wait()
    assert dma.recvchannel.transferred == buf.nbytes and buf[5, 0] == 5


def test_length_write_while_halted_has_no_effect(dev):
    io = _io("dma_adc")
    io.set("S2MM_LENGTH", LENGTH=64)
    assert not dev.dma_adc.s2mm_ready()
    assert io.fields("S2MM_DMASR")["HALTED"] == 1 and io.fields("S2MM_DMASR")["IDLE"] == 0
