"""Device memory of the model: `pynq.allocate` buffers with simulated physical addresses.

Every buffer is a real `pynq.buffer.PynqBuffer` (a numpy array) whose `physical_address` lies in
a simulated DDR window; the DMA model resolves bus addresses back to the live buffer's bytes, so
DMA transfers complete into the caller's own arrays. Addresses are never reused, so a stale
address decodes to nothing (DMA_DEC_ERR), as a freed buffer's would on the board.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from pynq.buffer import PynqBuffer

DDR_BASE = 0x1_0000_0000  # simulated physical window (above the 32-bit PL register space)
PAGE = 4096


class ModelMemory:
    """Allocator and address decoder for the model's buffers."""

    def __init__(self, device: Any):
        self._device = weakref.ref(device)
        self._next = DDR_BASE
        self._live: dict[int, weakref.ref[PynqBuffer]] = {}

    def allocate(self, shape: Any, dtype: Any = "u4", **kwargs: Any) -> PynqBuffer:
        """Zero-filled, page-aligned buffer (the signature `pynq.allocate` calls)."""
        buf = PynqBuffer(shape, dtype, device=self._device(), device_address=self._next,
                         bo=0, coherent=False)
        buf.fill(0)
        self._live[self._next] = weakref.ref(buf)
        self._next += max(PAGE, -(-buf.nbytes // PAGE) * PAGE)
        return buf

    def window(self, address: int, nbytes: int) -> np.ndarray | None:
        """Writable uint8 view of [address, address + nbytes), or None if it is not all inside
        one live buffer (the DMA then reports a decode error)."""
        for base, ref in list(self._live.items()):
            buf = ref()
            if buf is None:
                del self._live[base]
                continue
            if base <= address and address + nbytes <= base + buf.nbytes:
                raw = np.asarray(buf).reshape(-1).view(np.uint8)
                return raw[address - base:address - base + nbytes]
        return None
