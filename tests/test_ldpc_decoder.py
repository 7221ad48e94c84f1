"""The C LDPC decoder against an independent float64 reference, and its contract."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from ldpc_reference import layered_sum_product, random_code

from reconcile import ldpc_decoder as ld
from reconcile import mdr, met_codes, rate_adapt
from reconcile.ldpc_code import LdpcCode
from reconcile.standard_codes import standard_code

PATHS = [
    p
    for p in ("portable", "avx2", "avx2fma", "avx512")
    if ld.SIMD_PATHS[p] <= ld.SIMD_PATHS[ld.simd_level()]
]


def _noisy_frames(code: LdpcCode, frames: int, sigma: float | np.ndarray, seed: int):
    """Random words x, their syndromes, and BI-AWGN LLRs of x at noise std `sigma` (a scalar,
    or one per frame as a (frames, 1) column)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, (frames, code.n), dtype=np.uint8)
    x[:, code.shortened] = 0
    y = 1.0 - 2.0 * x + sigma * rng.standard_normal((frames, code.n))
    return x, code.syndrome(x), (2.0 * y / sigma**2).astype(np.float32)


def _with_degree_one(seed: int) -> LdpcCode:
    """A random code without degree-one variables, plus one hanging on every other check."""
    base = random_code(60, 3, 6, seed).to_dense()
    while base.sum(axis=0).min() < 2:
        seed += 1000
        base = random_code(60, 3, 6, seed).to_dense()
    m = base.shape[0]
    extra = np.zeros((m, m // 2), np.uint8)
    extra[np.arange(0, m, 2), np.arange(m // 2)] = 1
    return LdpcCode.from_dense("deg1", np.hstack([base, extra]))


def _checks_with_degree_one_variable(code: LdpcCode) -> int:
    h = code.to_dense()
    return int(np.count_nonzero(h[:, h.sum(axis=0) == 1].any(axis=1)))


@pytest.mark.parametrize("simd", PATHS)
def test_phi_matches_double_precision(simd):
    """The decoder's phi is within 2e-5 relative of phi in double precision over its whole
    domain [phi(40), 40] (design bound, c_ext/ldpc_kernel.h: minimax polynomials with relative
    errors 2.1e-5 for expm1(r)/r on |r| <= ln2/2 and 7.2e-6 for 2 atanh(s)/s on s^2 <= 1/9;
    measured maximum 1.58e-5 on 8 x 10^6 points). It is an approximation of phi, not a biased
    variant: the mean error is far below the maximum."""
    x = np.concatenate([np.logspace(-17.07, np.log10(40.0), 200001),
                        np.log(3.0) + np.linspace(-1e-3, 1e-3, 2001),  # branch switch
                        (np.arange(1, 58) + 0.5) * np.log(2.0),  # reduction switches
                        [0.5, 1.0986, 1.1, 2.0, 40.0]])
    x = x[x >= 8.4967e-18]
    out = ld.phi(x, simd=simd).astype(np.float64)
    x32 = x.astype(np.float32).astype(np.float64)
    ref = np.log1p(2.0 / np.expm1(x32))
    rel = np.abs(out - ref) / ref
    assert rel.max() < 2e-5
    assert rel.mean() < 5e-6
    # phi is an involution: phi(phi(x)) = x up to rounding
    back = ld.phi(out, simd=simd).astype(np.float64)
    mid = (x32 > 1e-3) & (x32 < 20)
    assert np.max(np.abs(back[mid] - x32[mid]) / x32[mid]) < 5e-5


def test_phi_clamps_its_domain():
    out = ld.phi(np.array([0.0, 1e-30, 100.0, 40.0], np.float32))
    assert np.all(np.isfinite(out))
    assert out[0] == out[1] == pytest.approx(40.0, rel=1e-5)
    assert out[2] == out[3] == pytest.approx(2 * np.exp(-40.0), rel=1e-5)


@pytest.mark.parametrize("simd", PATHS)
@pytest.mark.parametrize("folding", [False, True])
def test_one_iteration_matches_reference(simd, folding):
    code = _with_degree_one(2) if folding else random_code(96, 3, 6, 1)
    rng = np.random.default_rng(3)
    frames = 5
    llr = rng.normal(1.0, 2.0, (frames, code.n)).astype(np.float32)
    syn = rng.integers(0, 2, (frames, code.m), dtype=np.uint8)
    res = ld.Decoder(code).decode(llr, syn, max_iter=1, return_llr=True, simd=simd)
    assert np.all(res.iterations == 1) and not res.converged.any()
    folded = np.isnan(res.llr[0])
    assert folded.sum() == _checks_with_degree_one_variable(code)
    for f in range(frames):
        ref = layered_sum_product(code, llr[f].astype(np.float64), syn[f], 1)
        got = res.llr[f][~folded].astype(np.float64)
        np.testing.assert_allclose(got, ref[~folded], rtol=2e-5, atol=2e-5)
        sure = np.abs(ref) > 1e-3
        assert np.array_equal(res.bits[f][sure & ~folded], (ref < 0)[sure & ~folded])


def test_several_iterations_match_reference_decisions():
    code = random_code(96, 3, 6, 4)
    _x, syn, llr = _noisy_frames(code, 4, 0.9, 5)
    res = ld.Decoder(code).decode(llr, syn, max_iter=4, return_llr=True)
    for f in range(4):
        ref = layered_sum_product(code, llr[f].astype(np.float64), syn[f], int(res.iterations[f]))
        kept = ~np.isnan(res.llr[f])  # folded degree-one variables have no posterior output
        np.testing.assert_allclose(res.llr[f][kept], ref[kept], rtol=1e-3, atol=1e-3)
        sure = np.abs(ref) > 1e-2
        assert np.array_equal(res.bits[f][sure], (ref < 0)[sure])


def test_folded_degree_one_bits_satisfy_their_checks():
    code = _with_degree_one(6)
    dec = ld.Decoder(code)
    assert dec.folded_variables == _checks_with_degree_one_variable(code) == code.m // 2
    x, syn, llr = _noisy_frames(code, 16, 0.45, 7)
    res = dec.decode(llr, syn, max_iter=50)
    assert res.converged.all()
    assert np.array_equal(code.syndrome(res.bits), syn)
    assert np.array_equal(res.bits, x)


def test_check_with_single_remaining_variable_is_applied_as_constant():
    # check 0 = {v0, v1} with v1 shortened: v0 must equal s_0 whatever its LLR says
    h = np.array([[1, 1, 0, 0], [1, 0, 1, 1], [0, 1, 1, 0]], np.uint8)
    base = LdpcCode.from_dense("tiny", h)
    code = LdpcCode(
        "tiny_short", base.n, base.m, base.check_ptr, base.var_idx, shortened=np.array([1])
    )
    llr = np.array([[3.0, 5.0, -2.0, 1.0], [3.0, -9.0, 2.0, 2.0]], np.float32)
    syn = np.array([[1, 0, 1], [0, 1, 1]], np.uint8)
    res = ld.decode(code, llr, syn, max_iter=20)
    assert res.converged.all()
    assert np.array_equal(res.bits[:, 1], [0, 0])  # shortened
    assert np.array_equal(code.syndrome(res.bits), syn)


@pytest.mark.parametrize("name,sigma", [("dvbs2_short_r1_3", 0.75), ("5gnr_bg2_z64", 0.6)])
def test_standard_codes_decode_above_threshold(name, sigma):
    code = standard_code(name)
    x, syn, llr = _noisy_frames(code, 16, sigma, 8)
    llr[:, code.punctured] = 99.0  # must be ignored: punctured bits are never sent
    res = ld.decode(code, llr, syn, max_iter=60)
    assert res.converged.all()
    assert np.array_equal(res.bits, x)
    assert 1 <= res.iterations.mean() < 60


def test_fails_gracefully_below_threshold():
    code = standard_code("dvbs2_short_r1_3")  # BI-AWGN capacity 1/3 at sigma ~ 1.5
    _x, syn, llr = _noisy_frames(code, 8, 1.6, 9)
    res = ld.decode(code, llr, syn, max_iter=15)
    assert not res.converged.any()
    assert np.all(res.iterations == 15)
    assert np.all((code.syndrome(res.bits) != syn).any(axis=1))


def test_random_cosets_and_channel_decisions_already_right():
    code = random_code(200, 3, 6, 10)
    rng = np.random.default_rng(11)
    x = rng.integers(0, 2, (9, code.n), dtype=np.uint8)
    syn = code.syndrome(x)
    llr = np.where(x == 0, 4.0, -4.0).astype(np.float32)
    res = ld.decode(code, llr, syn)
    assert res.converged.all() and np.all(res.iterations == 0)
    assert np.array_equal(res.bits, x)


def test_results_are_bit_exact_across_runs_threads_batches_and_paths():
    code = standard_code("dvbs2_short_r1_3")
    _x, syn, llr = _noisy_frames(code, 19, 0.92, 12)  # near threshold: mixed outcomes
    dec = ld.Decoder(code)
    ref = dec.decode(llr, syn, max_iter=30, return_llr=True)
    assert 0 < ref.converged.sum() < 19 or ref.iterations.std() > 0
    single = dec.decode(llr[5:6], syn[5:6], max_iter=30, return_llr=True)
    for threads in (1, 2):
        other = dec.decode(llr, syn, max_iter=30, threads=threads, return_llr=True)
        assert np.array_equal(other.bits, ref.bits)
        assert np.array_equal(other.iterations, ref.iterations)
        assert np.array_equal(other.llr.view(np.uint32), ref.llr.view(np.uint32))
    assert np.array_equal(single.bits[0], ref.bits[5])
    assert np.array_equal(single.llr[0].view(np.uint32), ref.llr[5].view(np.uint32))
    if "avx2" in PATHS:
        port = dec.decode(llr, syn, max_iter=30, return_llr=True, simd="portable")
        avx2 = dec.decode(llr, syn, max_iter=30, return_llr=True, simd="avx2")
        assert np.array_equal(port.llr.view(np.uint32), avx2.llr.view(np.uint32))
    if "avx512" in PATHS:  # the avx2fma kernel compiled for AVX-512VL: the same arithmetic
        fma = dec.decode(llr, syn, max_iter=30, return_llr=True, simd="avx2fma")
        avx512 = dec.decode(llr, syn, max_iter=30, return_llr=True, simd="avx512")
        assert np.array_equal(fma.llr.view(np.uint32), avx512.llr.view(np.uint32))


def _refill_makespan(iterations: np.ndarray, max_iter: int) -> int:
    """Passes of one group of 8 lanes taking the frames in order, a lane taking the next
    frame as soon as its own stops (ties: lowest lane first); an independent model of the
    decoder's lane refill, from the frames' iteration counts."""
    free_at = [0] * ld.LANES
    for it in iterations:
        lane = min(range(ld.LANES), key=lambda i: (free_at[i], i))
        free_at[lane] += min(int(it), max_iter)
    return max(free_at)


def test_lane_refill_keeps_each_frames_result_and_fills_the_group():
    """Frames queued behind a full group give the same outputs as decoded one at a time
    (bits, iterations, posterior LLRs bit for bit) for 8, 16 and 24 frames per call, 1 to 3
    threads (whose groups hand their last lanes to one another), and one group's passes are
    those of lanes refilled as soon as a frame stops."""
    code = standard_code("dvbs2_short_r1_3")
    sigma = np.random.default_rng(22).permutation(np.linspace(0.95, 1.25, 24))[:, None]
    x, syn, llr = _noisy_frames(code, 24, sigma, 21)  # mixed: 0 to max_iter passes
    llr[3] = np.where(x[3] == 0, 9.0, -9.0)  # right at pass 0: its lane refills at once
    dec = ld.Decoder(code)
    cap = 30
    alone = [dec.decode(llr[f:f + 1], syn[f:f + 1], max_iter=cap, return_llr=True)
             for f in range(24)]
    iters = np.array([r.iterations[0] for r in alone])
    assert iters.min() == 0 and iters.max() == cap and iters.std() > 3
    assert all(r.group_passes == r.iterations[0] for r in alone)
    for frames in (8, 16, 24):
        for threads in (1, 2, 3):
            res = dec.decode(llr[:frames], syn[:frames], max_iter=cap, threads=threads,
                             return_llr=True)
            for f in range(frames):
                assert np.array_equal(res.bits[f], alone[f].bits[0])
                assert res.iterations[f] == alone[f].iterations[0]
                assert res.converged[f] == alone[f].converged[0]
                assert np.array_equal(res.llr[f].view(np.uint32), alone[f].llr[0].view(np.uint32))
        one = dec.decode(llr[:frames], syn[:frames], max_iter=cap, threads=1)
        assert one.group_passes == _refill_makespan(iters[:frames], cap)
    # the refill pays: 24 frames in one group cost fewer passes than three groups of 8
    assert _refill_makespan(iters, cap) < sum(iters[i:i + 8].max() for i in (0, 8, 16))


def test_frames_of_different_puncturings_decode_in_one_call():
    """Frames of one MET mother code punctured by different amounts (nested sets, as the
    link's per-frame rate adaptation makes them) decode in one call by the least punctured
    code's decoder with the same bits and iteration counts as by their own decoders."""
    mother = met_codes.get_code("met_r0.212", 24000)
    snr = 0.42
    adaptations = [rate_adapt.for_snr(mother, s, 0.86, 8, max_fraction=0.6)
                   for s in (0.41, 0.42, 0.43)]
    assert len({a.punctured for a in adaptations}) == 3
    assert all(a.shortened == 0 for a in adaptations)
    rng = np.random.default_rng(31)
    codes, llr, syn, own = [], [], [], []
    for i in range(12):
        a = adaptations[i % 3]
        word = rate_adapt.bob_word(a, rng.integers(0, 2, mother.n))
        x = rng.normal(size=a.transmitted.size)
        y = x + rng.normal(scale=np.sqrt(1 / snr), size=x.size)
        alpha, norms = mdr.bob_encode(y, word[a.transmitted], 8)
        codes.append(a.code)
        llr.append(rate_adapt.alice_llr(a, mdr.alice_llr(x, alpha, norms, 8, 1 / snr)))
        syn.append(a.code.syndrome(word[None])[0])
        own.append(ld.decode(a.code, llr[-1][None], syn[-1][None], max_iter=60))
    mixed = ld.decode_punctured_mix(codes, np.array(llr), np.array(syn), max_iter=60, threads=2)
    assert 0 < sum(r.converged[0] for r in own)
    for i, r in enumerate(own):
        assert np.array_equal(mixed.bits[i], r.bits[0])
        assert mixed.iterations[i] == r.iterations[0]
    with pytest.raises(ValueError, match="one code per row"):
        ld.decode_punctured_mix(codes[:2], np.array(llr), np.array(syn))
    other = met_codes.get_code("met_r0.212", 25000)
    with pytest.raises(ValueError, match="punctured differently"):
        ld.decode_punctured_mix([codes[0], other], np.zeros((2, 24000)), np.zeros((2, 18912)))


def test_concurrent_calls_from_python_threads_agree():
    code = standard_code("dvbs2_short_r1_3")
    _x, syn, llr = _noisy_frames(code, 16, 0.85, 13)
    dec = ld.Decoder(code)
    expected = dec.decode(llr, syn, max_iter=40)
    results: list = [None] * 4
    errors: list = []

    def run(i: int) -> None:
        try:
            results[i] = ld.decode(code, llr, syn, max_iter=40, threads=1 + i % 2)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    for r in results:
        assert np.array_equal(r.bits, expected.bits)
        assert np.array_equal(r.iterations, expected.iterations)


def test_shortened_and_punctured_positions():
    base = random_code(120, 3, 6, 14)
    code = LdpcCode(
        "sp",
        base.n,
        base.m,
        base.check_ptr,
        base.var_idx,
        punctured=np.arange(0, 6),
        shortened=np.arange(6, 18),
    )
    x, syn, llr = _noisy_frames(code, 8, 0.5, 15)
    res = ld.decode(code, llr, syn, max_iter=50)
    assert res.converged.all()
    assert np.all(res.bits[:, 6:18] == 0)
    assert np.array_equal(res.bits, x)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"llr": np.zeros((2, 95), np.float32)}, "llr must have shape"),
        ({"llr": np.zeros(96, np.float32)}, "llr must have shape"),
        ({"syndrome": np.zeros((2, 3), np.uint8)}, "syndrome must have shape"),
        ({"llr": np.zeros((2, 96), np.int32)}, "floating-point"),
        ({"syndrome": "two"}, "0 or 1"),
        ({"syndrome": "float"}, "integer"),
        ({"llr": np.full((2, 96), np.nan, np.float32)}, "NaN"),
        ({"max_iter": -1}, "max_iter"),
        ({"max_iter": 2.5}, "max_iter"),
        ({"threads": 0}, "threads"),
        ({"simd": "sse9"}, "simd"),
    ],
)
def test_bad_inputs_raise_value_error(kwargs, match):
    code = random_code(96, 3, 6, 1)
    args = {"llr": np.zeros((2, 96), np.float32), "syndrome": np.zeros((2, code.m), np.uint8)}
    args.update(kwargs)
    special = {"two": np.full((2, code.m), 2, np.uint8), "float": np.zeros((2, code.m))}
    if isinstance(kwargs.get("syndrome"), str):
        args["syndrome"] = special[kwargs["syndrome"]]
    llr, syn = args.pop("llr"), args.pop("syndrome")
    with pytest.raises(ValueError, match=match):
        ld.Decoder(code).decode(llr, syn, **args)


def test_code_with_repeated_edge_is_rejected():
    code = LdpcCode("dup", 3, 1, np.array([0, 3]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="twice"):
        ld.Decoder(code)


def test_decoder_cache_reuses_and_distinguishes_codes():
    a, b = random_code(96, 3, 6, 1), random_code(96, 3, 6, 2)
    assert ld.decoder_for(a) is ld.decoder_for(a)
    assert ld.decoder_for(a) is not ld.decoder_for(b)


def test_checks_of_punctured_degree_one_variables_are_skipped_but_solved():
    base = _with_degree_one(16)
    h = base.to_dense()
    deg1 = np.flatnonzero(h.sum(axis=0) == 1)[:6]
    code = LdpcCode("p1", base.n, base.m, base.check_ptr, base.var_idx, punctured=deg1)
    full, skipped = ld.Decoder(base), ld.Decoder(code)
    dropped = sum(int(h[np.flatnonzero(h[:, v])[0]].sum()) - 1 for v in deg1)
    assert skipped.scheduled_edges == full.scheduled_edges - dropped
    x, syn, llr = _noisy_frames(code, 8, 0.45, 17)
    res = skipped.decode(llr, syn, max_iter=50)
    assert res.converged.all()
    assert np.array_equal(code.syndrome(res.bits), syn)
    core = np.setdiff1d(np.arange(code.n), deg1)
    assert np.array_equal(res.bits[:, core], x[:, core])


def test_decoder_cache_does_not_keep_dead_codes() -> None:
    """A cached decoder leaves the cache when its code is freed (the link punctures a new code
    per frame): the cache must not hold the decoders of dead codes."""
    import gc
    import weakref

    code = random_code(96, 3, 6, 3)
    dec = weakref.ref(ld.decoder_for(code))
    assert dec() is not None and any(ref() is code for ref, _ in ld._cache.values())
    del code
    gc.collect()
    assert dec() is None


C_EXT = Path(__file__).resolve().parent.parent / "c_ext"


def _run_selftest(compiler: str, runner: list[str], tmp_path: Path) -> str:
    exe = tmp_path / "ldpc_selftest"
    sources = [C_EXT / f for f in ("ldpc_selftest.c", "ldpc_decoder.c", "ldpc_decoder_fma.c",
                                   "ldpc_decoder_avx512.c")]
    subprocess.run([compiler, "-O2", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-Wno-psabi",
                    "-static", "-pthread", f"-I{C_EXT}", *map(str, sources), "-o", str(exe),
                    "-lm"], check=True, capture_output=True, timeout=120)
    res = subprocess.run([*runner, str(exe)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:]
    return res.stdout


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_selftest_native(tmp_path):
    """The C decoder alone (no Python): every SIMD path of this CPU gives each frame the same
    bits and iterations with 1, 2 or 3 threads and one frame per call (the harness the
    aarch64 test below runs under emulation)."""
    out = _run_selftest("cc", [], tmp_path)
    assert out.strip().endswith(" 0 failed") and int(out.split()[-4]) >= 61


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None
                    or shutil.which("qemu-aarch64") is None,
                    reason="needs gcc-aarch64-linux-gnu and qemu-user (Debian packages)")
def test_c_selftest_aarch64_under_qemu(tmp_path):
    """The boards' architecture: the NEON build (FMA contraction on), cross-compiled, run by
    qemu: lane refill and the threads' hand-over give the same results there too."""
    out = _run_selftest("aarch64-linux-gnu-gcc", ["qemu-aarch64", "-cpu", "max"], tmp_path)
    assert "path 1:" in out and "path 2:" not in out
    assert out.strip().endswith(" 0 failed") and int(out.split()[-4]) == 61
