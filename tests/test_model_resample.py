"""The band-limited fractional resampler of the link model."""

from __future__ import annotations

import numpy as np
import pytest

from fpga_bindings.model import resample as rs


@pytest.mark.parametrize("freq,max_db", [(0.05, -75.0), (0.2, -72.0), (0.35, -65.0)])
def test_tone_error_is_small_below_the_band_edge(freq, max_db):
    n = 20_000
    seq = np.exp(2j * np.pi * freq * np.arange(n))
    pos = 1000 + np.arange(5000) * 0.9999371 + 0.123
    err = rs.resample(seq, pos) - np.exp(2j * np.pi * freq * pos)
    assert 10 * np.log10(np.mean(np.abs(err) ** 2)) < max_db


def test_integer_positions_return_the_samples():
    rng = np.random.default_rng(0)
    seq = (rng.standard_normal(300) + 1j * rng.standard_normal(300)).astype(np.complex64)
    out = rs.resample(seq, np.arange(20, 280, dtype=float))
    assert np.allclose(out, seq[20:280], atol=1e-6)


def test_one_shot_is_zero_outside_and_cyclic_wraps():
    seq = np.ones(64, np.complex64)
    assert np.all(rs.resample(seq, np.array([-30.0, 100.0])) == 0)
    assert np.allclose(rs.resample(seq, np.array([-30.5, 100.25]), cyclic=True), 1, atol=1e-5)


@pytest.mark.parametrize("cyclic", [False, True])
@pytest.mark.parametrize("du", [1.0, 1 + 3e-6, 1 - 3e-6, 1 + 1e-4, 0.125, 1.37])
def test_uniform_fast_path_equals_the_sample_by_sample_path(cyclic, du):
    rng = np.random.default_rng(1)
    n = 20_000
    seq = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(np.complex64)
    padded = rs.pad(seq, cyclic)
    fr, fi = np.ascontiguousarray(padded.real), np.ascontiguousarray(padded.imag)
    m, u0 = 50_000, -200.3
    o_r, o_i = np.empty(m, np.float32), np.empty(m, np.float32)
    rs.interp_uniform(fr, fi, rs.HALF, n, cyclic, u0, du, np.empty(0), 0.0, rs.TABLE, o_r, o_i)
    ref = np.empty(m, np.complex64)
    rs.interp_positions(padded, rs.HALF, n, cyclic, u0 + du * np.arange(m), rs.TABLE, ref)
    assert np.max(np.abs(o_r + 1j * o_i - ref)) < 1e-5


def test_white_noise_keeps_its_variance_at_fractional_positions():
    """Band-limited white noise (flat up to 0.4 of the rate) keeps its power when resampled."""
    rng = np.random.default_rng(2)
    n = 1 << 17
    w = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    spec = np.fft.fft(w)
    spec[np.abs(np.fft.fftfreq(n)) > 0.4] = 0
    x = np.fft.ifft(spec)
    y = rs.resample(x, 100 + np.arange(n - 200) * 1.0000123 + 0.37)
    assert abs(np.mean(np.abs(y) ** 2) / np.mean(np.abs(x) ** 2) - 1) < 2e-3
