"""Pilot phase recovery: the Wiener smoother reaches its theoretical error, beats a causal
filter, and the statistics it is tuned from are estimated correctly."""

import numpy as np
import pytest

from dsp import kernels
from dsp.pilot import coarse_frequencies, phase_statistics, smoother_coefficient

FS = 500e6


def _pilot(n, linewidth, a2, noise, f=0.25, seed=0):
    rng = np.random.default_rng(seed)
    q = 2 * np.pi * linewidth / FS
    phi = np.cumsum(rng.normal(0, np.sqrt(q), n))
    w = np.sqrt(noise / 2) * (rng.standard_normal(n) + 1j * rng.standard_normal(n))
    x = np.sqrt(a2) * np.exp(1j * (phi + 2 * np.pi * f * np.arange(n))) + w
    scale = 2000.0
    iq = np.empty((n, 2), dtype=np.int16)
    iq[:, 0] = np.round(x.real * scale)
    iq[:, 1] = np.round(x.imag * scale)
    return iq, phi, q


def _smoothed_phase_error(iq, phi, f, a):
    n = iq.shape[0]
    v = np.empty(n, dtype=np.complex128)
    p = np.empty(n, dtype=np.complex128)
    kernels.pilot_correct(iq, 0, f, a, np.array([0.0, n]), np.zeros(2), True, v, p)
    e = np.angle(p * np.exp(-1j * phi))
    e -= np.mean(e[5000:-5000])
    return float(np.var(e[5000:-5000]))


@pytest.mark.parametrize("linewidth", [1e3, 10e3, 100e3])
def test_wiener_smoother_reaches_its_bound_and_beats_causal(linewidth):
    a2, noise = 14.0, 2.2
    iq, phi, q = _pilot(1 << 20, linewidth, a2, noise)
    r = noise / (2 * a2)
    a = smoother_coefficient(q, r)
    err = _smoothed_phase_error(iq, phi, 0.25, a)
    bound = 0.5 * np.sqrt(q * r)
    assert err == pytest.approx(bound, rel=0.15)
    # detuned smoothers are worse
    for a_off in (1 - (1 - a) * 2.0, 1 - (1 - a) / 2.0):
        assert _smoothed_phase_error(iq, phi, 0.25, a_off) > err
    # the causal (Kalman/PLL) filter with its own optimal coefficient: sqrt(q r)
    from scipy.signal import lfilter
    x = (iq[:, 0] + 1j * iq[:, 1]) * np.exp(-2j * np.pi * 0.25 * np.arange(iq.shape[0]))
    lam = q / r
    k = (-lam + np.sqrt(lam * lam + 4 * lam)) / 2  # steady-state Kalman gain
    pc = lfilter([k], [1, -(1 - k)], x)
    e = np.angle(pc * np.exp(-1j * phi))[5000:-5000]
    assert np.var(e - e.mean()) > 1.6 * err


def test_statistics_and_frequencies():
    iq, _, q = _pilot(1 << 18, 10e3, 14.0, 2.2, f=0.35)
    x = (iq[:, 0] + 1j * iq[:, 1]) / 2000.0
    a2, noise, q_est = phase_statistics(x, 0.35)
    assert a2 == pytest.approx(14.0, rel=0.03)
    assert noise == pytest.approx(2.2, rel=0.05)
    assert q_est == pytest.approx(q, rel=0.25)
    x2 = x + 0.4 * np.exp(2j * np.pi * 0.19 * np.arange(x.size))
    f1, f2, ratio = coarse_frequencies(x2, 0.3, 0.14, 0.1, 100)
    assert f1 == pytest.approx(0.35, abs=2e-6) and f2 == pytest.approx(0.19, abs=2e-6)
    assert ratio > 1e4
