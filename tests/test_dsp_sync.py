"""Frame sync (fractional correlation peak, lag confirmation) and the pilot-pair clock track."""

import numpy as np
import pytest

from dsp.clock import track_from_blocks
from dsp.filters import rrc
from dsp.preamble import zadoff_chu
from dsp.sync import SyncError, confirm_lag, correlate, find_peak, preamble_template


@pytest.mark.parametrize("delay", [0.0, 0.21, 0.5, 0.83])
def test_preamble_peak_is_fractionally_accurate(delay):
    rng = np.random.default_rng(1)
    sps, beta, z = 5, 0.2, 4 * zadoff_chu(1021, 7)
    tmpl, c0 = preamble_template(z, sps, beta, 8)
    # the same preamble delayed by 300 + delay samples, synthesised from the analytic pulse
    n = 6000
    t = np.arange(n) - 300 - delay
    x = np.zeros(n, dtype=np.complex128)
    for k, s in enumerate(z):
        d = t / sps - k
        m = np.abs(d) <= 8
        x[m] += s * rrc(d[m], beta)
    x += rng.normal(0, 1.0, n) + 1j * rng.normal(0, 1.0, n)
    peak, ratio, _ = find_peak(correlate(x, tmpl), 30)
    assert peak + c0 == pytest.approx(300 + delay, abs=0.03)  # first symbol centre
    assert ratio > 1000


def test_no_preamble_is_a_failure():
    rng = np.random.default_rng(2)
    tmpl, _ = preamble_template(zadoff_chu(509, 7), 5, 0.2, 8)
    x = rng.normal(size=20000) + 1j * rng.normal(size=20000)
    with pytest.raises(SyncError, match="preamble not found"):
        find_peak(correlate(x, tmpl), 30)


def test_lag_confirmation():
    rng = np.random.default_rng(3)
    x = rng.normal(size=50000) + 1j * rng.normal(size=50000)
    y = 0.3 * x + rng.normal(size=50000) + 1j * rng.normal(size=50000)
    idx = np.arange(10, 49000, 7)
    lag, z = confirm_lag(y, idx, x[idx], 8)
    assert lag == 0 and z > 15
    with pytest.raises(SyncError, match="best lag 1"):
        confirm_lag(np.roll(y, 1), idx, x[idx], 8)
    with pytest.raises(SyncError, match="lag not confirmed"):
        confirm_lag(rng.normal(size=50000) + 0j, idx, x[idx], 8)


def test_clock_track_from_pilot_pair_blocks():
    rng = np.random.default_rng(4)
    block, nu_d, fd = 1 << 14, 0.16, 0.16 * (1 - 20e-6) + 3e-7
    ratio_true, delay = 1 / (1 + 20e-6), 2345.6
    m = np.arange(300)
    centres = (m + 0.5) * block - 0.5
    a = (centres - delay) * ratio_true
    sums = np.exp(1j * (2 * np.pi * nu_d * a - 2 * np.pi * fd * centres))
    sums = 1e6 * sums + 1e4 * (rng.normal(size=300) + 1j * rng.normal(size=300))
    sums[:5] = 1e3 * (rng.normal(size=5) + 1j * rng.normal(size=5))  # before the frame
    tr = track_from_blocks(sums, block, fd, nu_d, n_total=300 * block)
    assert tr.ratio == pytest.approx(ratio_true, abs=1e-9)
    assert tr.ppm() == pytest.approx(20.0, abs=1e-3)
    period = 1 / nu_d
    err = (tr.alice(centres[10:]) - a[10:] + period / 2) % period - period / 2
    assert np.max(np.abs(err - err.mean())) < 0.01 and tr.knot_n[-1] >= 300 * block
