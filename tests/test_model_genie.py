"""The ideal receiver's noise projection has unit norm at every fractional symbol position.

Its output is linear in the capture's de-rotated noise: y_k = sum_n H_k(n) zrot_n. Fed unit
impulses, it returns H_k(n) column by column, so sum_n |H_k(n)|^2 is computed exactly (no
statistics). The projection of white noise of variance N0 must have variance N0 for every
symbol: the matched filter of a unit-energy pulse. With the model's 16-tap resampler in this
path the norm ranged from 1 to 1.0002 with the fractional position, which biased the
added-noise metric (tests/test_dsp_model_integration.py) by up to -0.002 SNU.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal.windows import tukey

from fpga_bindings.model.genie import SymbolGrid, ideal_receiver


def _rrc_pulse(sps: int, span: int, beta: float = 0.2) -> np.ndarray:
    """Unit-energy root-raised-cosine taps, 2 span sps + 1 long (independent closed form)."""
    t = np.arange(-span * sps, span * sps + 1) / sps
    p = np.empty_like(t)
    for i, x in enumerate(t):
        if x == 0:
            p[i] = 1 - beta + 4 * beta / np.pi
        elif abs(abs(4 * beta * x) - 1) < 1e-12:
            p[i] = beta / np.sqrt(2) * ((1 + 2 / np.pi) * np.sin(np.pi / (4 * beta))
                                        + (1 - 2 / np.pi) * np.cos(np.pi / (4 * beta)))
        else:
            p[i] = (np.sin(np.pi * x * (1 - beta)) + 4 * beta * x * np.cos(np.pi * x * (1 + beta))
                    ) / (np.pi * x * (1 - (4 * beta * x) ** 2))
    p *= tukey(len(p), 0.1)
    return p / np.sqrt(np.sum(p ** 2))


# du: output samples per player sample (20 ppm: symbol fractions stay put, so several u0;
# 0.9537: the fractions sweep [0, 1) within the capture)
@pytest.mark.parametrize("du, u0", [(1 / (1 + 20e-6), -0.3), (1 / (1 + 20e-6), -0.5),
                                    (1 / (1 + 20e-6), 0.0), (0.9537, -0.3)])
def test_noise_projection_has_unit_norm_at_every_fraction(du, u0):
    sps, span = 5, 8
    pulse = _rrc_pulse(sps, span)
    n_out, n_sym = 700, 60
    grid = SymbolGrid(pulse=pulse, sps=sps, first_peak=0, n_symbols=n_sym)
    halo = 8
    n_field = sps * n_sym
    field = np.zeros(n_field + 2 * halo, np.float32)
    psi_index = np.array([0, n_out], np.int64)
    psi = np.zeros(2)

    def response(n: int) -> np.ndarray:
        z = np.zeros(n_out, np.complex64)
        z[n] = 1.0
        out = ideal_receiver(grid=grid, fr=field, fi=field, halo=halo, n_field=n_field,
                             cyclic=False, zrot=z, u0=u0, du=du, psi_index=psi_index, psi=psi,
                             detection="heterodyne", signal_gain=lambda p: np.zeros(len(p)))
        return out.symbols, out.position

    cols = [response(n) for n in range(n_out)]
    h = np.array([c[0] for c in cols])  # (n, k): H_k(n)
    pos = cols[0][1]
    valid = np.isfinite(h[0])
    assert valid.sum() >= 10
    norms = np.sum(np.abs(h[:, valid]) ** 2, axis=0)
    fracs = pos[valid] % 1.0
    if du < 0.99:
        assert np.ptp(fracs) > 0.5  # the symbols sample many fractional positions
    assert np.abs(norms - 1.0).max() < 5e-6, (norms.min(), norms.max())
