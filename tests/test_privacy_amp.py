"""Toeplitz hashing against a direct, slow evaluation of the same families (explicit matrices
over GF(2) in numpy), across kernels, tilings and edge sizes; universality statistics."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import reconcile._pa as pa_module
from reconcile._pa import ffi, lib

from reconcile import privacy_amp as pa

KERNELS = [k for k in pa.available_kernels() if k != "auto"]
C_EXT = Path(__file__).resolve().parent.parent / "c_ext"


def toeplitz_matrix(seed: np.ndarray, n: int, m: int) -> np.ndarray:
    """T[i][j] = s[i - j + n - 1], built entry by entry from its definition."""
    i = np.arange(m)[:, None]
    j = np.arange(n)[None, :]
    return seed[i - j + n - 1].astype(np.int64)


def direct_hash(key: np.ndarray, seed: np.ndarray, m: int, family: str) -> np.ndarray:
    n = key.size
    if family == "toeplitz":
        mat = toeplitz_matrix(seed, n, m)
    else:  # (T' | I_m), T' m x (n - m) from n - 1 seed bits
        mat = np.concatenate(
            [toeplitz_matrix(seed, n - m, m), np.eye(m, dtype=np.int64)], axis=1)
    return ((mat @ key.astype(np.int64)) % 2).astype(np.uint8)


def raw_hash(key, seed, m, family, kernel, block_words=0, base_words=0):
    """The C entry with a forced tiling (block and base-case sizes in 64-bit words)."""
    n = key.size
    kb = np.packbits(key, bitorder="little")
    sb = np.packbits(np.append(seed, 0).astype(np.uint8), bitorder="little")
    out = np.zeros((m + 7) // 8, np.uint8)
    fn = lib.pa_toeplitz_hash if family == "toeplitz" else lib.pa_modified_toeplitz_hash
    rc = fn(ffi.from_buffer(kb), n, ffi.from_buffer(sb), ffi.from_buffer(out), m,
            pa.KERNELS[kernel], block_words, base_words)
    assert rc == 0
    return np.unpackbits(out, bitorder="little")[:m], out


def _random_case(rng, n, m, family):
    key = rng.integers(0, 2, n, dtype=np.uint8)
    seed = rng.integers(0, 2, pa.seed_length(n, m, family), dtype=np.uint8)
    return key, seed


EDGE_SIZES = [(1, 1), (2, 1), (2, 2), (63, 1), (64, 1), (65, 1), (64, 64), (65, 65), (127, 64),
              (128, 127), (129, 65), (200, 200), (640, 64), (641, 63), (1000, 1), (1000, 999),
              (4097, 129)]


@pytest.mark.parametrize("family", pa.FAMILIES)
@pytest.mark.parametrize("kernel", KERNELS)
def test_edge_sizes_match_direct_evaluation(family, kernel):
    rng = np.random.default_rng(11)
    for n, m in EDGE_SIZES:
        for _ in range(3):
            key, seed = _random_case(rng, n, m, family)
            got = pa.hash_bits(key, seed, m, family=family, kernel=kernel)
            np.testing.assert_array_equal(got, direct_hash(key, seed, m, family),
                                          err_msg=f"n={n} m={m}")


@pytest.mark.parametrize("family", pa.FAMILIES)
def test_random_sizes_and_tilings_match_direct_evaluation(family):
    """Many random (n, m) with every kernel and forced tilings: block k = b 2^L words tiles the
    matrix with zero padding, b words is the base case of the Karatsuba recursion."""
    rng = np.random.default_rng(12)
    tilings = [(0, 0), (0, 1), (0, 2), (0, 3), (0, 8), (0, 9), (0, 32), (2, 1), (4, 2), (12, 3),
               (16, 16), (32, 8)]
    for _ in range(120):
        n = int(rng.integers(1, 3000))
        m = int(rng.integers(1, n + 1)) if rng.random() < 0.5 else int(rng.integers(1, 200))
        m = min(m, n)
        key, seed = _random_case(rng, n, m, family)
        want = direct_hash(key, seed, m, family)
        for kernel in KERNELS:
            for block, base in tilings:
                got, packed = raw_hash(key, seed, m, family, kernel, block, base)
                assert np.array_equal(got, want), (n, m, kernel, block, base)
                if m % 8:
                    assert packed[-1] >> (m % 8) == 0  # output padding bits are zero


def test_large_columns_against_seed():
    """At large sizes: the image of a unit vector e_j is column j of T, s[i - j + n - 1]; a
    sum of unit vectors maps to the xor of columns (an independent check of 10^5-10^6 bits)."""
    rng = np.random.default_rng(13)
    n, m = 1_000_003, 100_019
    seed = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    seed_packed = pa.pack_bits(seed)
    cols = [0, 1, 63, 64, 4095, 517_331, n - 65, n - 1]
    total = np.zeros(m, np.uint8)
    key_all = np.zeros(n, np.uint8)
    for j in cols:
        key = np.zeros(n, np.uint8)
        key[j] = 1
        key_all[j] = 1
        want = seed[n - 1 - j: n - 1 - j + m]
        total ^= want
        for kernel in KERNELS:
            got = pa.unpack_bits(pa.hash_packed(pa.pack_bits(key), n, seed_packed, m,
                                                family="toeplitz", kernel=kernel), m)
            np.testing.assert_array_equal(got, want, err_msg=f"column {j}, {kernel}")
    got = pa.unpack_bits(pa.hash_packed(pa.pack_bits(key_all), n, seed_packed, m,
                                        family="toeplitz"), m)
    np.testing.assert_array_equal(got, total)


def test_kernels_agree_on_a_large_random_block():
    rng = np.random.default_rng(14)
    n, m = 2_000_001, 150_007
    key = pa.pack_bits(rng.integers(0, 2, n, dtype=np.uint8))
    for family in pa.FAMILIES:
        seed = pa.new_seed(n, m, family)
        outs = {k: pa.hash_packed(key, n, seed, m, family=family, kernel=k) for k in KERNELS}
        assert len(set(outs.values())) == 1, family


def test_linearity_at_large_size():
    """h(x xor y) = h(x) xor h(y) for a fixed seed (the hash is a linear map over GF(2))."""
    rng = np.random.default_rng(15)
    n, m = 3_000_017, 200_003
    x = rng.integers(0, 2, n, dtype=np.uint8)
    y = rng.integers(0, 2, n, dtype=np.uint8)
    seed = pa.new_seed(n, m)
    hx, hy, hxy = (np.frombuffer(pa.hash_packed(pa.pack_bits(v), n, seed, m), np.uint8)
                   for v in (x, y, x ^ y))
    np.testing.assert_array_equal(hxy, hx ^ hy)


@pytest.mark.parametrize("family", pa.FAMILIES)
def test_collision_probability_is_two_to_minus_m(family):
    """2-universality: for fixed x != x', Pr_seed[h(x) = h(x')] = 2^-m (exactly, for these
    families). 4000 seeds, m = 3: count ~ Binomial(4000, 1/8); 5 sigma = 105."""
    rng = np.random.default_rng(16)
    n, m, trials = 40, 3, 4000
    x = rng.integers(0, 2, n, dtype=np.uint8)
    x2 = x.copy()
    x2[[3, 17]] ^= 1
    collisions = 0
    outputs = np.zeros(1 << m, int)
    for _ in range(trials):
        seed = rng.integers(0, 2, pa.seed_length(n, m, family), dtype=np.uint8)
        h1 = pa.hash_bits(x, seed, m, family=family)
        collisions += np.array_equal(h1, pa.hash_bits(x2, seed, m, family=family))
        outputs[int(h1 @ (1 << np.arange(m)))] += 1
    assert abs(collisions - trials / 8) < 5 * np.sqrt(trials * (1 / 8) * (7 / 8))
    # the output of a fixed x under a uniform seed is uniform (x has a 1 among T's columns)
    expected = trials / (1 << m)
    chi2 = float(((outputs - expected) ** 2 / expected).sum())
    assert chi2 < 24.3  # chi-square, 7 degrees of freedom, p = 0.001


def test_packed_and_bit_interfaces_agree_and_ignore_padding():
    rng = np.random.default_rng(17)
    n, m = 1003, 77
    key = rng.integers(0, 2, n, dtype=np.uint8)
    seed = rng.integers(0, 2, pa.seed_length(n, m), dtype=np.uint8)  # 1002 bits
    want = pa.hash_bits(key, seed, m)
    kb = bytearray(pa.pack_bits(key))
    kb[-1] |= 0xF8  # bits beyond n (1003 = 125 * 8 + 3) must not matter
    sb = bytearray(pa.pack_bits(seed))
    sb[-1] |= 0xFC  # nor those beyond the seed's 1002 bits
    out = pa.hash_packed(bytes(kb) + b"\xff", n, sb + b"\xff", m)
    assert len(out) == 10 and out[-1] >> (m % 8) == 0
    np.testing.assert_array_equal(pa.unpack_bits(out, m), want)
    np.testing.assert_array_equal(pa.hash_bits(key.astype(bool), seed.astype(bool), m), want)


def test_bit_order_is_little_endian_within_bytes():
    # identity part of the modified family with n = m: the output is the key itself
    key = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1], np.uint8)
    out = pa.hash_packed(pa.pack_bits(key), 10, b"\x00\x00", 10)
    assert out == bytes([0x01, 0x02])


def test_threads_give_the_same_results():
    rng = np.random.default_rng(18)
    jobs = []
    for _ in range(8):
        n = int(rng.integers(100_000, 400_000))
        m = n // 10
        jobs.append((pa.pack_bits(rng.integers(0, 2, n, dtype=np.uint8)), n,
                     pa.new_seed(n, m), m))
    serial = [pa.hash_packed(*job) for job in jobs]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda job: pa.hash_packed(*job), jobs))
    assert threaded == serial


def _longest_pause(call) -> tuple[float, float]:
    """Run call() in a thread while this thread records ticks; (longest gap between ticks
    inside the call's window, the call's duration), seconds."""
    window: list[float] = []
    done = threading.Event()

    def worker() -> None:
        window.append(time.perf_counter())
        call()
        window.append(time.perf_counter())
        done.set()

    ticks: list[float] = []
    thread = threading.Thread(target=worker)
    thread.start()
    while not done.is_set():
        ticks.append(time.perf_counter())
    thread.join()
    inside = [window[0], *(t for t in ticks if window[0] < t < window[1]), window[1]]
    return float(np.max(np.diff(inside))), window[1] - window[0]


def test_the_c_call_releases_the_gil():
    """While one thread is inside the C kernel (3 x 10^7 bits, a few hundred ms), Python keeps
    running in another: no pause in its ticks as long as the call. Control: the same C
    function called through ctypes.PyDLL, which holds the GIL, pauses them."""
    n, m = 3 * 10**7, 3 * 10**6
    key, seed = bytes(n // 8), pa.new_seed(n, m)
    key_c, seed_c = ffi.from_buffer(key), ffi.from_buffer(seed)
    out = ffi.new("uint8_t[]", m // 8)
    gap, duration = _longest_pause(
        lambda: lib.pa_modified_toeplitz_hash(key_c, n, seed_c, out, m, 0, 0, 0))
    assert gap < 0.5 * duration, (gap, duration)

    fn = ctypes.PyDLL(pa_module.__file__).pa_modified_toeplitz_hash
    fn.argtypes = [ctypes.c_char_p, ctypes.c_uint64, ctypes.c_char_p, ctypes.c_char_p,
                   ctypes.c_uint64, ctypes.c_int, ctypes.c_uint64, ctypes.c_uint64]
    buf = ctypes.create_string_buffer(m // 8)
    gap, duration = _longest_pause(lambda: fn(key, n, seed, buf, m, 0, 0, 0))
    assert gap > 0.5 * duration, (gap, duration)  # the test can tell a held GIL
    assert buf.raw == bytes(ffi.buffer(out))


def test_seed_lengths_and_fresh_seeds():
    assert pa.seed_length(1000, 100, "toeplitz") == 1099
    assert pa.seed_length(1000, 100, "modified-toeplitz") == 999
    s1, s2 = pa.new_seed(1000, 100), pa.new_seed(1000, 100)
    assert len(s1) == 125 and s1 != s2
    assert pa.new_seed(1001, 3, "toeplitz")[-1] >> 3 == 0  # 1003 bits: padding zero


def test_zero_output_length_gives_empty_key():
    assert pa.hash_packed(b"\x01", 8, b"\x00", 0) == b""


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0, "m": 0}, "n must be >= 1"),
        ({"n": 10, "m": 11}, "0 <= m <= n"),
        ({"n": 10, "m": 2, "family": "hankel"}, "family must be one of"),
        ({"n": 10, "m": 2, "kernel": "gpu"}, "kernel must be one of"),
        ({"n": 100, "m": 2}, "key has 2 bytes"),
    ],
)
def test_bad_input_is_rejected_without_key_material(kwargs, message):
    args = {"key": b"\xab\xcd", "seed": bytes(20), **kwargs}
    with pytest.raises(ValueError, match=message) as err:
        pa.hash_packed(args.pop("key"), args.pop("n"), args.pop("seed"), args.pop("m"), **args)
    text = str(err.value)
    assert "abcd" not in text and "\\xab" not in text and "171" not in text


def test_bad_bit_vectors_are_rejected():
    with pytest.raises(ValueError, match="only 0 and 1"):
        pa.hash_bits(np.array([0, 2, 1], np.uint8), np.zeros(2, np.uint8), 1)
    with pytest.raises(ValueError, match="needs 2"):
        pa.hash_bits(np.array([0, 1, 1], np.uint8), np.zeros(3, np.uint8), 1)
    with pytest.raises(ValueError, match="seed has"):
        pa.hash_packed(b"\xff" * 10, 80, b"\x00", 8)


def test_scratch_memory_is_bounded():
    """The kernel's heap is O(m), independent of n beyond the tiling (10^8 -> 10^7 bits)."""
    assert pa.scratch_bytes(10**8, 10**7) < 20 * 10**6
    assert pa.scratch_bytes(10**8, 10**6) < 3 * 10**6


def _run_selftest(compiler: str, runner: list[str], tmp_path: Path) -> str:
    exe = tmp_path / "pa_selftest"
    subprocess.run([compiler, "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-static",
                    f"-I{C_EXT}", str(C_EXT / "pa_selftest.c"), str(C_EXT / "pa_toeplitz.c"),
                    "-o", str(exe)], check=True, capture_output=True, timeout=120)
    res = subprocess.run([*runner, str(exe)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:]
    return res.stdout


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_selftest_native(tmp_path):
    """The C kernel alone (no Python), every kernel of this CPU against a bit-level
    evaluation: the harness that the aarch64 test below runs under emulation."""
    out = _run_selftest("cc", [], tmp_path)
    assert out.strip().endswith(" 0 failed") and int(out.split()[-4]) > 1000


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None
                    or shutil.which("qemu-aarch64") is None,
                    reason="needs gcc-aarch64-linux-gnu and qemu-user (Debian packages)")
def test_c_selftest_aarch64_under_qemu(tmp_path):
    """The boards' architecture: portable and PMULL kernels, cross-compiled, run by qemu."""
    out = _run_selftest("aarch64-linux-gnu-gcc", ["qemu-aarch64", "-cpu", "max"], tmp_path)
    assert "kernel 4 available" in out  # PMULL exercised
    assert out.strip().endswith(" 0 failed") and int(out.split()[-4]) > 1000
