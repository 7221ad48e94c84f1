"""Attacks on the channel, for security tests. Installed with `LinkModel.set_attack`; they act
on the field at the channel input (SNU per player sample), in the symbol modes of a SymbolGrid.

- InterceptResend: Eve heterodynes every symbol mode and resends a coherent state at her
  estimate (Grosshans & Grangier, PRL 88, 057902 (2002)). Her estimate of a_k carries 2 SNU of
  noise per quadrature (the state's vacuum plus the heterodyne's extra unit), so Bob sees 2 SNU
  of excess noise referred to the channel input, and Eve's records `estimates` equal a_k + that
  noise.
- EntanglingCloner: Eve replaces the fibre of transmittance T by a beam splitter of the same T
  and injects one half of a two-mode squeezed vacuum of variance W (Grosshans et al., Nature
  421, 238 (2003)). Bob's marginal is the Gaussian channel with input-referred excess noise
  xi_E = (1 - T)(W - 1)/T, which is what the model adds to each symbol mode. Limitation: the
  model draws the (1 - T) vacuum share at the detector, independently of Eve, so the records
  (`injected`, `tapped`) have the right marginals but miss that correlation with Bob's data.

Out-of-symbol-mode components (pilots, preambles) pass unchanged: Eve resends them perfectly.
"""

from __future__ import annotations

import numpy as np

from fpga_bindings.model.genie import SymbolGrid

_BATCH = 16384  # symbols per block (bounds the index matrices' memory)


def _blocks(grid: SymbolGrid):
    """Yield (slice, index matrix (symbols, taps), subcarrier phasors) per block of symbols."""
    offs = np.arange(len(grid.pulse)) - len(grid.pulse) // 2
    for b in range(0, grid.n_symbols, _BATCH):
        k = np.arange(b, min(b + _BATCH, grid.n_symbols), dtype=np.int64)
        idx = (grid.first_peak + grid.sps * k)[:, None] + offs[None, :]
        yield slice(b, b + len(k)), idx, np.exp(2j * np.pi * grid.subcarrier * idx)


def _project(field: np.ndarray, grid: SymbolGrid, cyclic: bool) -> np.ndarray:
    """Matched-filter projection a_k of the field on every symbol mode, SNU."""
    n = len(field)
    out = np.empty(grid.n_symbols, np.complex128)
    for sl, idx, carrier in _blocks(grid):
        if cyclic:
            vals = field[idx % n]
        else:
            vals = np.where((idx >= 0) & (idx < n), field[np.clip(idx, 0, n - 1)], 0)
        out[sl] = (vals * carrier.conj()) @ grid.pulse
    return out


def _add_modes(field: np.ndarray, grid: SymbolGrid, amps: np.ndarray, cyclic: bool) -> None:
    """field += sum_k amps_k pulse(m - peak_k) exp(i 2 pi subcarrier m)."""
    n = len(field)
    for sl, idx, carrier in _blocks(grid):
        add = amps[sl, None] * grid.pulse[None, :] * carrier
        if cyclic:
            np.add.at(field, idx % n, add)
        else:
            inside = (idx >= 0) & (idx < n)
            np.add.at(field, idx[inside], add[inside])


def _complex_normal(rng: np.random.Generator, n: int, var_per_quadrature: float) -> np.ndarray:
    return np.sqrt(var_per_quadrature) * (rng.standard_normal(n) + 1j * rng.standard_normal(n))


class InterceptResend:
    def __init__(self, grid: SymbolGrid, seed: int | None = None):
        self.grid = grid
        self._rng = np.random.default_rng(seed)
        self.estimates: np.ndarray | None = None  # Eve's heterodyne estimates of a_k, SNU

    def apply(self, field: np.ndarray, cyclic: bool) -> np.ndarray:
        a = _project(field, self.grid, cyclic)
        noise = _complex_normal(self._rng, len(a), 2.0)
        self.estimates = a + noise
        out = field.astype(np.complex128)
        _add_modes(out, self.grid, noise, cyclic)
        return out.astype(np.complex64)


class EntanglingCloner:
    def __init__(self, grid: SymbolGrid, transmittance: float, w: float,
                 seed: int | None = None):
        if not 0 < transmittance <= 1 or w < 1:
            raise ValueError("EntanglingCloner: need 0 < T <= 1 and W >= 1")
        self.grid = grid
        self.transmittance = transmittance
        self.w = w
        self._rng = np.random.default_rng(seed)
        self.injected: np.ndarray | None = None  # Eve's injected mode e_B (variance W), SNU
        self.tapped: np.ndarray | None = None  # sqrt(1-T) a_k - sqrt(T) e_B, SNU

    @property
    def xi(self) -> float:
        """Excess noise Bob sees, referred to the channel input, SNU."""
        t = self.transmittance
        return (1.0 - t) * (self.w - 1.0) / t

    def apply(self, field: np.ndarray, cyclic: bool) -> np.ndarray:
        t = self.transmittance
        a = _project(field, self.grid, cyclic)
        vac = _complex_normal(self._rng, len(a), 1.0)
        excess = _complex_normal(self._rng, len(a), self.w - 1.0)
        self.injected = vac + excess
        self.tapped = np.sqrt(1.0 - t) * a - np.sqrt(t) * self.injected
        out = field.astype(np.complex128)
        _add_modes(out, self.grid, np.sqrt((1.0 - t) / t) * excess, cyclic)
        return out.astype(np.complex64)
