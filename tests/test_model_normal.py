"""The model's noise generator (fpga_bindings/model/normal.py): SFC64 against numpy's, the
ziggurat's tables against their definition, and the normals' distribution and independence
(fixed seeds; tolerances in standard errors)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from fpga_bindings.model import normal

Z = 5.0  # tolerance in standard errors


def test_sfc64_matches_numpy_from_the_same_seed():
    for entropy in (0, 5, 2**70 + 3):
        ss = np.random.SeedSequence(entropy)
        state = normal.seed_state(ss)
        want = np.random.SFC64(np.random.SeedSequence(entropy))
        assert np.array_equal(state, want.state["state"]["state"])
        assert np.array_equal(normal.raw_u64(state, 5000), want.random_raw(5000))
        assert np.array_equal(normal.raw_u64(state, 3), want.random_raw(3))  # state advanced


def test_ziggurat_layers_have_equal_area_and_close_at_the_top():
    x, f = normal.ZIG_X, normal.ZIG_F
    r = normal.ZIG_R
    v = r * math.exp(-r * r / 2) + math.sqrt(math.pi / 2) * special.erfc(r / math.sqrt(2))
    assert x[0] * f[1] == pytest.approx(v, rel=1e-14)  # base: rectangle + tail
    areas = x[1:-1] * (f[2:] - f[1:-1])  # layers 1 .. 255
    assert np.allclose(areas, v, rtol=1e-9)  # the top layer's closes the recursion at X = 0
    assert np.all(np.diff(x) < 0) and x[-1] == 0.0 and f[-1] == 1.0


@pytest.fixture(scope="module")
def draws() -> np.ndarray:
    return normal.standard_normal(normal.seed_state(np.random.SeedSequence(2024)), 1 << 22)


def test_normals_follow_the_standard_normal(draws):
    n = draws.size
    assert abs(draws.mean()) < Z / math.sqrt(n)
    assert abs(draws.var() - 1.0) < Z * math.sqrt(2.0 / n)
    assert abs(stats.kurtosis(draws)) < Z * math.sqrt(24.0 / n)
    assert stats.kstest(draws, "norm").pvalue > 1e-3
    # 400 equiprobable bins (their edges cross every layer's core / wedge boundary)
    edges = stats.norm.ppf(np.linspace(0, 1, 401))
    counts = np.histogram(draws, edges)[0]
    assert stats.chisquare(counts).pvalue > 1e-4


@pytest.mark.parametrize("a", [3.0, normal.ZIG_R, 4.0, 4.5])
def test_tails_beyond_the_base_layer(draws, a):
    """P(|x| > a) and E[|x| - a | |x| > a]: the tail algorithm beyond r and the wedges below."""
    tail = np.abs(draws)[np.abs(draws) > a]
    p = 2 * stats.norm.sf(a)
    expect = p * draws.size
    assert abs(tail.size - expect) < Z * math.sqrt(expect)
    mean_excess = stats.norm.pdf(a) / stats.norm.sf(a) - a
    sd_excess = math.sqrt(1 + a * (mean_excess + a) - (mean_excess + a) ** 2)
    assert abs((tail - a).mean() - mean_excess) < Z * sd_excess / math.sqrt(tail.size)


def test_normals_are_independent(draws):
    n = draws.size
    lo, hi = draws[0::2], draws[1::2]  # the two halves of one generator output
    for a, b in ((draws[1:], draws[:-1]), (lo, hi), (lo[1:], lo[:-1])):
        assert abs(np.corrcoef(a, b)[0, 1]) < Z / math.sqrt(a.size)
    # layer (magnitude) and sign, and consecutive magnitudes: uncorrelated
    mag = np.abs(draws) - math.sqrt(2 / math.pi)
    assert abs(np.mean(mag[1:] * mag[:-1])) / mag.var() < Z / math.sqrt(n)
    assert abs(np.mean(np.sign(draws) * mag)) / mag.std() < Z / math.sqrt(n)


def test_one_per_output_mode_and_determinism():
    a = normal.standard_normal(normal.seed_state(np.random.SeedSequence(7)), 1 << 20,
                               pairs=False)
    assert abs(a.var() - 1.0) < Z * math.sqrt(2.0 / a.size)
    assert stats.kstest(a, "norm").pvalue > 1e-3
    state = normal.seed_state(np.random.SeedSequence(7))
    b = np.concatenate([normal.standard_normal(state, 1000, pairs=False),
                        normal.standard_normal(state, 1000, pairs=False)])
    assert np.array_equal(a[:2000], b)
