"""dsp.calibration: the calibration records' variance through each frame's chain, computed
once per calibration and carried from frame to frame, against the direct pass."""

import argparse
import gc
import json
import weakref

import numpy as np
import pytest
from dsp_channel import chain_noise_gain
from scipy.signal import lfilter

from controller.commands import sim as sim_cmd
from dsp.calibration import (
    PSD_NFFT,
    Calibration,
    Grid,
    chain_gain,
    direct_variance,
)
from dsp.chain import Chain
from dsp.clock import ClockTrack
from dsp.filters import rrc_polyphase
from dsp.receiver import receive


class _Spy(Calibration):
    """Records the chains the receiver asks about."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.seen = []

    def variances(self, chain, step):
        self.seen.append((chain, step))
        return super().variances(chain, step)


def _sim(path, seed, lo_offset_hz, ppm):
    p = argparse.ArgumentParser()
    sim_cmd.register(p.add_subparsers())
    args = p.parse_args(["sim", "capture", "--out", str(path), "--seed", str(seed),
                         "--symbols", "200000", "--linewidth-hz", "5000", "--lo-offset-hz",
                         str(lo_offset_hz), "--lo-drift-hz-per-s", "1e6",
                         "--clock-ppm", str(ppm)])
    assert args.func(args) == 0
    meta = json.loads((path / "meta.json").read_text())
    alice = np.load(path / "alice_symbols.npy")
    idx = np.arange(3, alice.size, 10)
    return {"meta": meta, "adc": np.load(path / "adc.npy"), "idx": idx, "x": alice[idx],
            "shot": np.load(path / "shot_noise.npy"),
            "elec": np.load(path / "electronic_noise.npy")}


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """Two model frames (drifting LO, 20 ppm clock): the second's LO 0.2 MHz and its clock
    0.3 ppm away from the first's, as between frames of one calibration period."""
    d = tmp_path_factory.mktemp("cal")
    return _sim(d / "a", 31, 50e6, 20.0), _sim(d / "b", 32, 50.2e6, 20.3)


def _rx(fr, **kw):
    m = fr["meta"]
    return receive(fr["adc"], m["waveform"], m["rates"]["capture_sps"], fr["idx"], fr["x"],
                   eta=m["link"]["eta"], nco_hz=m["ddc"]["nco_hz"], if_hz=m["link"]["if_hz"],
                   **kw)


def _n0_vel(n_shot, n_el):
    return n_shot - n_el, n_el / (n_shot - n_el)


def test_first_frame_is_the_direct_pass(frames):
    a = frames[0]
    cal = Calibration(a["shot"], a["elec"])
    r1 = _rx(a, calibration=cal)
    r0 = _rx(a, shot_iq=a["shot"], elec_iq=a["elec"])
    assert r1.summary["calibration"] == {"method": "direct"}
    assert r1.summary["shot_noise_adc2"] == r0.summary["shot_noise_adc2"]
    assert r1.summary["electronic_noise_snu"] == r0.summary["electronic_noise_snu"]
    np.testing.assert_array_equal(r1.symbols, r0.symbols)
    with pytest.raises(ValueError, match="not both"):
        _rx(a, calibration=cal, shot_iq=a["shot"])


def test_carried_within_1e4_of_the_direct_pass(frames):
    a, b = frames
    cal = _Spy(a["shot"], a["elec"])
    _rx(a, calibration=cal)
    rb = _rx(b, calibration=cal)
    note = rb.summary["calibration"]
    assert note["method"] == "carried" and cal.direct_passes == 1
    (ch_a, step_a), (ch_b, step_b) = cal.seen
    assert ch_a.a != ch_b.a and ch_a.f1 != ch_b.f1  # the chain did move
    # the direct pass of the frame's chain over the reference's positions
    ref = [direct_variance(r, ch_b, Grid.for_chain(ch_a, r.shape[0], step_a))
           for r in (a["shot"], a["elec"])]
    n0_ref, vel_ref = _n0_vel(*ref)
    n0, vel = rb.summary["shot_noise_adc2"], rb.summary["electronic_noise_snu"]
    print(f"carried/direct - 1: N0 {n0 / n0_ref - 1:.2e}, v_el {vel / vel_ref - 1:.2e}; "
          f"factors - 1: {np.array(note['factors']) - 1}")
    assert n0 == pytest.approx(n0_ref, rel=1e-4)
    assert vel == pytest.approx(vel_ref, rel=1e-4)
    # what the carried value corrects: ignoring the chain's change would be off by more
    stale = _n0_vel(*[direct_variance(r, ch_a, Grid.for_chain(ch_a, r.shape[0], step_a))
                      for r in (a["shot"], a["elec"])])[0]
    print(f"uncorrected/direct - 1: N0 {stale / n0_ref - 1:.2e}")
    assert abs(n0 / n0_ref - 1) < abs(stale / n0_ref - 1)
    # the reference chain with a faster smoother: its leakage into the data band changes the
    # variances by ~1e-3, which the carried values follow to ~1e-6 (a stale value would be off
    # by the whole change)
    fast = Chain(ch_a.iq, ch_a.f1, ch_a.a - 0.02, ch_a.margin, ch_a.track, ch_a.cw / (2 * np.pi),
                 ch_a.table)
    (ns, ne), note = cal.variances(fast, step_a)
    assert note["method"] == "carried" and cal.direct_passes == 1
    ref_fast = [direct_variance(r, fast, Grid.for_chain(ch_a, r.shape[0], step_a))
                for r in (a["shot"], a["elec"])]
    assert abs(ref_fast[0] / ref[0] - 1) > 5e-4
    print(f"faster smoother: change {ref_fast[0] / ref[0] - 1:.2e}, carried/direct - 1: "
          f"{ns / ref_fast[0] - 1:.2e}, {ne / ref_fast[1] - 1:.2e}")
    assert ns == pytest.approx(ref_fast[0], rel=1e-5)
    assert ne == pytest.approx(ref_fast[1], rel=1e-5)
    # against the frame's own positions the direct pass itself moves by its statistical
    # error (positions on another grid: ~1e-3 for 1e6 samples)
    own = [direct_variance(r, ch_b, Grid.for_chain(ch_b, r.shape[0], step_b))
           for r in (a["shot"], a["elec"])]
    print(f"carried / direct on the frame's own positions - 1: N0 {n0 / _n0_vel(*own)[0] - 1:.2e}")
    assert n0 == pytest.approx(_n0_vel(*own)[0], rel=3e-3)


def test_guard_recomputes_beyond_tolerance(frames):
    a, b = frames
    for kw in ({"tolerance": 0.0}, {"max_pilot_shift": 1e-5}):
        cal = _Spy(a["shot"], a["elec"], **kw)
        _rx(a, calibration=cal)
        rb = _rx(b, calibration=cal)
        assert rb.summary["calibration"]["method"] == "direct" and cal.direct_passes == 2
        ch_b, step_b = cal.seen[1]
        own = [direct_variance(r, ch_b, Grid.for_chain(ch_b, r.shape[0], step_b))
               for r in (a["shot"], a["elec"])]
        assert rb.summary["shot_noise_adc2"] == _n0_vel(*own)[0]
        # and that frame is now the reference: carried from it, the same frame is exact
        again = _rx(b, calibration=cal).summary
        assert again["calibration"]["factors"] == [1.0, 1.0]


def test_never_stale(frames):
    """The records are frozen: an array that owns its memory becomes read-only, a view of a
    buffer is copied (changing the buffer changes nothing), and a new calibration (other
    records) never reuses the old one's values."""
    a, b = frames
    shot, elec = a["shot"].copy(), a["elec"].copy()
    cal = Calibration(shot, elec)
    assert cal.shot is shot and not shot.flags.writeable
    with pytest.raises(ValueError):
        shot[0, 0] = 1
    buf_s, buf_e = a["shot"].copy(), a["elec"].copy()
    cal_view = Calibration(buf_s[:], buf_e[:])
    n0 = _rx(b, calibration=cal).summary["shot_noise_adc2"]
    assert _rx(b, calibration=cal_view).summary["shot_noise_adc2"] == n0
    buf_s *= 2
    buf_e *= 2
    assert buf_s.flags.writeable and not cal_view.shot.flags.writeable
    assert _rx(b, calibration=cal_view).summary["shot_noise_adc2"] == n0
    # records twice as large: N0 four times as large, from a new direct pass
    cal2 = Calibration(buf_s, buf_e)
    r2 = _rx(b, calibration=cal2)
    assert r2.summary["calibration"]["method"] == "direct"
    assert r2.summary["shot_noise_adc2"] == pytest.approx(4 * n0, rel=2e-3)
    # b's own records through b's chain: a different calibration, a different N0
    r3 = _rx(b, calibration=Calibration(b["shot"].copy(), b["elec"].copy()))
    assert r3.summary["shot_noise_adc2"] != pytest.approx(n0, rel=1e-4)


def test_does_not_keep_the_frame(frames):
    """The reference keeps the chain's parameters, not the frame's capture (21 MB per frame in
    the link, held for up to 16 frames otherwise)."""
    a = frames[0]
    cal = Calibration(a["shot"], a["elec"])
    frame = dict(a, adc=a["adc"].copy())
    ref = weakref.ref(frame["adc"])
    _rx(frame, calibration=cal)
    del frame
    gc.collect()
    assert ref() is None and cal.direct_passes == 1


def _synthetic_chain(iq, a, ratio=1.00002):
    n = iq.shape[0]
    knot_n = np.array([-20000.0, n / 2, n + 20000.0])
    track = ClockTrack(knot_n, knot_n * ratio + 3.7, ratio, 0.0)
    table = rrc_polyphase(5 / ratio, 0.2, 10, 1024)
    margin = int(np.ceil(np.log(1e-9) / np.log(a))) + 200
    return Chain(iq, 0.31, a, margin, track, 0.4, table)


def test_direct_variance_against_a_whole_array_reference():
    """direct_variance (chunked numba kernels) against the same chain written with whole-array
    numpy/scipy operations, on coloured noise."""
    rng = np.random.default_rng(5)
    n = 400_000
    z = lfilter([1.0, 0.6], [1.0], rng.normal(0, 600, (n, 2)), axis=0)
    iq = np.round(z).astype(np.int16)
    ch = _synthetic_chain(iq, 0.96)
    grid = Grid.for_chain(ch, n, 5 / 1.00002)
    got = direct_variance(iq, ch, grid)
    x = iq[:, 0] + 1j * iq[:, 1]
    k = np.arange(n)
    u = x * np.exp(-2j * np.pi * ch.f1 * k)
    b = 1 - ch.a
    fwd = lfilter([b], [1, -ch.a], u)
    bwd = lfilter([b], [1, -ch.a], u[::-1])[::-1]
    p = (fwd + bwd - b * u) / (1 + ch.a)
    w = (u - p) * np.exp(1j * ch.cw * np.interp(k, ch.track.knot_n, ch.track.knot_a))
    pos = np.concatenate([lo + np.arange(0.0, min(lo + grid.chunk, grid.hi) - lo, grid.step)
                          for lo in range(grid.lo, grid.hi, grid.chunk)])
    i = np.floor(pos).astype(int)
    j = np.round((pos - i) * 1024).astype(int)
    half = ch.half
    y = np.einsum("km,km->k", w[i[:, None] + np.arange(-half, half + 1)], ch.table[j])
    want = (np.mean(np.abs(y) ** 2) - abs(np.mean(y)) ** 2) / 2
    assert got == pytest.approx(want, rel=1e-9)


def test_chain_gain_white_noise_matches_independent_formula():
    """For white noise Q / nfft is the chain's white-noise gain, computed independently in
    tests/dsp_channel.py (smoother leakage into the data band and the matched filter)."""
    iq = np.zeros((1000, 2), dtype=np.int16)
    for a in (0.9, 0.95, 0.99):
        ch = _synthetic_chain(iq, a, ratio=1.0)
        q = chain_gain(np.ones(PSD_NFFT), ch) / PSD_NFFT
        assert q == pytest.approx(chain_noise_gain(a, 0.4, 5, 0.2), rel=1e-5)
