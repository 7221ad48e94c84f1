"""build_frame and gaussian_symbols against independent numpy references of their exact
arithmetic: the same sums in the same order, so the int16 codes, the metadata and the secret
symbols must be bit-identical (not merely close). The references are plain vectorised numpy,
written from the definitions in dsp/transmitter.py and dsp/csprng_gauss.py, and do not call the
code under test."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from scipy.special import erfcinv

import dsp.csprng_gauss as cg
from dsp.filters import rrc_taps
from dsp.preamble import zadoff_chu
from dsp.transmitter import TxConfig, build_frame

KEY = bytes(range(100, 132))


def _ref_gaussians(key: bytes, stream_id: int, n: int, v_a: float) -> np.ndarray:
    """ChaCha20 (nonce = stream_id, counter 0) -> top 52 bits -> (k + 1/2) 2^-52 -> Box-Muller,
    whole arrays at once."""
    nonce = bytes(4) + stream_id.to_bytes(12, "little")
    ks = Cipher(algorithms.ChaCha20(key, nonce), mode=None).encryptor().update(bytes(16 * n))
    words = np.frombuffer(ks, "<u8")
    u = ((words >> np.uint64(12)).astype(np.float64) + 0.5) * (1.0 / 2.0**52)
    r = np.sqrt(-2.0 * np.log(u[0::2]))
    phase = 2.0 * np.pi * u[1::2]
    scale = np.sqrt(v_a)
    return (scale * (r * np.cos(phase))) + 1j * (scale * (r * np.sin(phase)))


def _ref_tone(r: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin of 2 pi r / n as the product of a coarse (r >> 11) and a fine (r & 2047) table."""
    w = 2.0 * np.pi / n
    hi = np.arange(((n - 1) >> 11) + 1, dtype=np.float64) * 2048
    lo = np.arange(2048, dtype=np.float64)
    ch, sh = np.cos(w * hi)[r >> 11], np.sin(w * hi)[r >> 11]
    cl, sl = np.cos(w * lo)[r & 2047], np.sin(w * lo)[r & 2047]
    return ch * cl - sh * sl, sh * cl + ch * sl


def _ref_shape(slots: np.ndarray, taps: np.ndarray, sps: int, n: int) -> np.ndarray:
    """Circular shaping, each sample summed from 0.0 in increasing slot order k (then tap m):
    sample j gets slots[k] taps[m] for j = k sps - c + m (mod n). When the pulse wraps at most
    once (n >= 2 (taps + sps)), the slots of the copy at +n samples come first, then those of
    the frame itself, then those of the copy at -n (vectorised over j); otherwise a plain
    scatter loop."""
    c = (taps.size - 1) // 2
    if n < 2 * (taps.size + sps):
        out = np.zeros(n, complex)
        for k in range(slots.size):
            for m in range(taps.size):
                jj = (k * sps - c + m) % n
                out[jj] = complex(out[jj].real + slots[k].real * taps[m],
                                  out[jj].imag + slots[k].imag * taps[m])
        return out
    j = np.arange(n)
    re = np.zeros(n)
    im = np.zeros(n)
    for p in (j - n, j, j + n):
        lo = np.maximum(-((taps.size - 1 - p - c) // sps), 0)
        hi = np.minimum((p + c) // sps, slots.size - 1)
        for i in range(int(np.max(hi - lo, initial=-1)) + 1):
            k = lo + i
            ok = k <= hi
            kk = np.where(ok, k, 0)
            t = taps[np.where(ok, p + c - kk * sps, 0)]
            re = np.where(ok, re + slots.real[kk] * t, re)
            im = np.where(ok, im + slots.imag[kk] * t, im)
    return re + 1j * im


def _ref_frame(cfg: TxConfig, n_data: int, symbols: np.ndarray) -> dict:
    """The frame's int16 codes and scale, from the definitions (see dsp/transmitter.py)."""
    sps, fs = cfg.sps, cfg.sample_rate_hz
    g, lp = cfg.guard_symbols, cfg.preamble_len
    n_slots = 2 * g + 2 * lp + n_data
    n = n_slots * sps
    amp_pre = np.sqrt(2 * cfg.v_a * 10 ** (cfg.preamble_power_db / 10))
    slots = np.zeros(n_slots, complex)
    slots[g:g + lp] = amp_pre * zadoff_chu(lp, cfg.preamble_roots[0])
    slots[g + lp:g + lp + n_data] = symbols
    slots[g + lp + n_data:g + 2 * lp + n_data] = amp_pre * zadoff_chu(lp, cfg.preamble_roots[1])
    wave = _ref_shape(slots, rrc_taps(sps, cfg.rolloff, cfg.half_span), sps, n)
    j = np.arange(n, dtype=np.int64)
    x, y = wave.real, wave.imag
    sig_cycles = round(cfg.signal_offset_hz / fs * n)
    if sig_cycles:
        c, s = _ref_tone((sig_cycles * j) % n, n)
        x, y = x * c - y * s, x * s + y * c
    peak = max(np.max(np.abs(x)), np.max(np.abs(y)))
    amp_sum = 0.0
    for p in cfg.pilots:
        amp = float(np.sqrt(2 * cfg.v_a / sps * 10 ** (p.power_db / 10)))
        amp_sum += amp
        c, s = _ref_tone((round(p.freq_hz / fs * n) * j) % n, n)
        x = x + amp * c
        y = y + amp * s
    k = float(np.sqrt(2.0) * erfcinv(cfg.clip_probability))
    full_scale = amp_sum + max(k * np.sqrt(cfg.v_a / sps), peak)
    step = 1 << (16 - cfg.dac_bits)
    code_max = (1 << (cfg.dac_bits - 1)) - 1
    lsb = full_scale / (code_max * step)
    q = np.round(np.stack([x, y], axis=1) / (lsb * step)) * step
    limit = code_max * step
    clipped = int(np.sum(np.abs(q) > limit))
    return {"iq": np.clip(q, -limit, limit).astype(np.int16), "quad_per_lsb": lsb,
            "full_scale": full_scale, "clipped": clipped, "peak": peak,
            "data_sigma_k": k * np.sqrt(cfg.v_a / sps)}


def test_gaussians_bit_identical_to_whole_array_box_muller(monkeypatch):
    for n, stream in ((1, 0), (777, 5), (40_000, 2**90 + 3), (2 * 8192 + 5, 1)):
        want = _ref_gaussians(KEY, stream, n, 2.5)
        got = cg.gaussian_symbols(KEY, stream, n, 2.5)
        assert got.dtype == np.complex128 and np.array_equal(got.view(np.uint64),
                                                             want.view(np.uint64))
    monkeypatch.setattr(cg, "_CHUNK_SYMBOLS", 96)  # many chunks, a partial last one
    for n in (1000, 1003):
        want = _ref_gaussians(KEY, 9, n, 4.0)
        assert np.array_equal(cg.gaussian_symbols(KEY, 9, n, 4.0).view(np.uint64),
                              want.view(np.uint64))
    assert cg.gaussian_symbols(KEY, 9, 0, 4.0).shape == (0,)


CASES = [
    (TxConfig(), 3000),
    (TxConfig(guard_symbols=0, preamble_len=13, half_span=8), 3001),  # tails wrap onto data
    (TxConfig(guard_symbols=3, preamble_len=31, signal_offset_hz=0.0, sample_rate_hz=400e6),
     2001),
    (TxConfig(guard_symbols=0, preamble_len=13), 5),  # frame shorter than two pulses
    (TxConfig(sample_rate_hz=1e9, signal_offset_hz=-200e6, pilots=()), 1500),  # sps 10
    # data above the preamble and a loose clip level: the data's peak sets the full scale
    (TxConfig(preamble_power_db=-12.0, clip_probability=0.05, preamble_len=31), 4000),
]


@pytest.mark.parametrize(("cfg", "n_data"), CASES)
def test_frame_bit_identical_to_reference(cfg, n_data):
    f = build_frame(cfg, n_data, KEY, 11)
    assert np.array_equal(f.symbols, _ref_gaussians(KEY, 11, n_data, cfg.v_a))
    ref = _ref_frame(cfg, n_data, f.symbols)
    assert f.meta["quad_per_lsb"] == ref["quad_per_lsb"]
    assert f.meta["full_scale_quad"] == ref["full_scale"]
    assert f.meta["clipped_components"] == ref["clipped"]
    assert np.array_equal(f.iq_int16, ref["iq"])


def test_data_peak_case_is_covered():
    """The last case really has its full scale set by a data sample (not by the preamble or
    the clip level): the synthesis' rescaling path runs."""
    cfg, n_data = CASES[-1]
    f = build_frame(cfg, n_data, KEY, 11)
    ref = _ref_frame(cfg, n_data, f.symbols)
    sps = cfg.sps
    pre = slice(0, (cfg.guard_symbols + cfg.preamble_len) * sps)
    pre_ref = _ref_frame(cfg, n_data, np.zeros(n_data))  # preamble-only waveform
    assert ref["peak"] > max(ref["data_sigma_k"], pre_ref["peak"])
    assert f.iq_int16[pre].any()
