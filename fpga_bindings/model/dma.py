"""AXI DMA v7.1 in direct register (simple) mode, modelled well enough for `pynq.lib.dma.DMA`.

Behaviour from PG021 ("Direct Register Mode", MM2S/S2MM_DMACR, _DMASR, _LENGTH): RS = 1 runs a
channel (HALTED drops), RS = 0 halts it; writing LENGTH while running starts a transfer and
clears IDLE; completion sets IDLE and IOC_IRQ; a zero LENGTH sets DMA_INT_ERR, an address with no
memory sets DMA_DEC_ERR, and either error halts the channel (RS cleared) until a soft reset
(DMACR.RESET, self-clearing, resets the whole core). S2MM completes at the stream's TLAST and
LENGTH then reads the bytes actually received.

Transfers complete synchronously inside the register write that starts them (MM2S) or inside
the stream source's push (S2MM): the model has no notion of bus time. Faults: `stall` makes a
channel stop accepting (or stop completing) so the driver sees it never go idle; `fail` sets an
error bit as a bus error would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fpga_bindings.model.memory import ModelMemory
from fpga_bindings.model.registers import RegisterBlock
from fpga_bindings.regmap import IpBlock

CHANNELS = ("MM2S", "S2MM")
_ADDR = {"MM2S": "SA", "S2MM": "DA"}
_ERRORS = {"internal": "DMA_INT_ERR", "slave": "DMA_SLV_ERR", "decode": "DMA_DEC_ERR"}


@dataclass
class _Transfer:
    address: int
    length: int  # bytes programmed
    done: int = 0  # bytes moved so far


@dataclass
class _Stall:
    after_bytes: int  # bytes the channel still accepts before it stops
    accept: bool  # False: stop accepting data (backpressure); True: accept, never complete


class AxiDmaModel(RegisterBlock):
    """One AXI DMA instance. `mm2s_sink(data, last)` receives MM2S stream bytes (uint8)."""

    def __init__(self, block: IpBlock, memory: ModelMemory,
                 mm2s_sink: Callable[[np.ndarray, bool], None] | None = None):
        self.memory = memory
        self.mm2s_sink = mm2s_sink
        self._active: dict[str, _Transfer | None] = {}
        self._stall: dict[str, _Stall | None] = {}
        super().__init__(block)

    def reset(self) -> None:
        super().reset()
        self._active = dict.fromkeys(CHANNELS)
        self._stall = getattr(self, "_stall", None) or dict.fromkeys(CHANNELS)

    # ---- faults -------------------------------------------------------------------------
    def stall(self, channel: str, after_bytes: int = 0, accept: bool = False) -> None:
        """From now on `channel` moves at most `after_bytes` more bytes and never completes."""
        self._check_channel(channel)
        self._stall[channel] = _Stall(after_bytes=after_bytes, accept=accept)

    def fail(self, channel: str, kind: str = "slave") -> None:
        """Raise a DMA error on `channel` now ('internal', 'slave' or 'decode')."""
        self._check_channel(channel)
        if kind not in _ERRORS:
            raise ValueError(f"DMA error kind {kind!r} not in {sorted(_ERRORS)}")
        self._error(channel, _ERRORS[kind])

    def clear_faults(self) -> None:
        self._stall = dict.fromkeys(CHANNELS)

    @staticmethod
    def _check_channel(channel: str) -> None:
        if channel not in CHANNELS:
            raise ValueError(f"DMA channel {channel!r} not in {CHANNELS}")

    # ---- register behaviour -------------------------------------------------------------
    def after_write(self, reg: str, old: int, new: int) -> None:
        ch, _, name = reg.partition("_")
        if name == "DMACR":
            if self.hw_get(reg, "RESET"):
                self.reset()
                return
            if self.hw_get(reg, "RS"):
                if not self._has_error(ch):
                    self.hw_set(f"{ch}_DMASR", HALTED=0)
            else:
                self.hw_set(f"{ch}_DMASR", HALTED=1)
                self._active[ch] = None
        elif name == "LENGTH":
            self._start(ch)

    def _has_error(self, ch: str) -> bool:
        return any(self.hw_get(f"{ch}_DMASR", e) for e in _ERRORS.values())

    def _running(self, ch: str) -> bool:
        return not self.hw_get(f"{ch}_DMASR", "HALTED")

    def _error(self, ch: str, bit: str) -> None:
        self.hw_set(f"{ch}_DMASR", **{bit: 1, "ERR_IRQ": 1, "HALTED": 1})
        self.hw_set(f"{ch}_DMACR", RS=0)
        self._active[ch] = None

    def _start(self, ch: str) -> None:
        if not self._running(ch):
            return  # PG021: writing LENGTH while halted has no effect
        length = self.hw_get(f"{ch}_LENGTH", "LENGTH")
        if length == 0:
            self._error(ch, "DMA_INT_ERR")
            return
        address = (self.hw_get(f"{ch}_{_ADDR[ch]}_MSB", "ADDR") << 32) | self.hw_get(
            f"{ch}_{_ADDR[ch]}", "ADDR")
        self.hw_set(f"{ch}_DMASR", IDLE=0)
        self._active[ch] = _Transfer(address=address, length=length)
        if ch == "MM2S":
            self._run_mm2s()

    def _complete(self, ch: str, nbytes: int) -> None:
        self.hw_set(f"{ch}_LENGTH", LENGTH=nbytes)
        self.hw_set(f"{ch}_DMASR", IDLE=1, IOC_IRQ=1)
        self._active[ch] = None

    def _allowance(self, ch: str, want: int) -> tuple[int, bool]:
        """Bytes the channel moves now out of `want`, and whether it may complete."""
        stall = self._stall[ch]
        if stall is None:
            return want, True
        n = want if stall.accept else min(want, stall.after_bytes)
        stall.after_bytes = max(0, stall.after_bytes - n)
        return n, False

    # ---- MM2S: memory -> stream ---------------------------------------------------------
    def _run_mm2s(self) -> None:
        xfer = self._active["MM2S"]
        assert xfer is not None
        src = self.memory.window(xfer.address, xfer.length)
        if src is None:
            self._error("MM2S", "DMA_DEC_ERR")
            return
        n, may_complete = self._allowance("MM2S", xfer.length)
        if self.mm2s_sink is not None and n:
            self.mm2s_sink(src[:n], n == xfer.length)
        xfer.done = n
        if may_complete and n == xfer.length:
            self._complete("MM2S", n)

    # ---- S2MM: stream -> memory ---------------------------------------------------------
    def s2mm_ready(self) -> bool:
        """A transfer is programmed and running (the stream's TREADY)."""
        return self._active["S2MM"] is not None

    def s2mm_push(self, data: np.ndarray, last: bool) -> int:
        """Stream bytes (uint8) into the programmed buffer; returns the bytes accepted.

        Fewer than offered means backpressure: no transfer, buffer full without TLAST, or a
        stall. `last` marks TLAST on the final byte offered.
        """
        xfer = self._active["S2MM"]
        if xfer is None:
            return 0
        room = xfer.length - xfer.done
        n, may_complete = self._allowance("S2MM", min(room, data.size))
        if n:
            dst = self.memory.window(xfer.address + xfer.done, n)
            if dst is None:
                self._error("S2MM", "DMA_DEC_ERR")
                return 0
            dst[:] = data[:n]
            xfer.done += n
        if may_complete and ((last and n == data.size) or xfer.done == xfer.length):
            self._complete("S2MM", xfer.done)
        return n
