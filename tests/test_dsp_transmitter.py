"""Transmitter: CSPRNG Gaussians, frame layout, pulse shaping, pilots, DAC scaling."""

import numpy as np
import pytest
from scipy import stats

from dsp.csprng_gauss import chacha20_words, gaussian_symbols, uniforms_52
from dsp.filters import rrc_taps
from dsp.preamble import zadoff_chu
from dsp.transmitter import TxConfig, build_frame, config_from_dict, preamble_symbols

KEY = bytes(range(32))


def test_chacha20_matches_rfc8439_keystream():
    # RFC 8439 sec. 2.4.2 test vector: key 00..1f, nonce 000000000000004a00000000, counter 1
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
    nonce = (1).to_bytes(4, "little") + bytes.fromhex("000000000000004a00000000")
    ks = Cipher(algorithms.ChaCha20(KEY, nonce), mode=None).encryptor().update(bytes(16))
    assert ks.hex().startswith("224f51f3401bd9e1")
    # our words for stream 0 are the keystream of counter 0 read little-endian
    w = chacha20_words(KEY, 0, 2)
    nonce0 = bytes(16)
    ks0 = Cipher(algorithms.ChaCha20(KEY, nonce0), mode=None).encryptor().update(bytes(16))
    assert w.tobytes() == ks0


def test_uniforms_in_open_interval_and_gaussian_statistics():
    u = uniforms_52(np.array([0, 2**64 - 1], dtype=np.uint64))
    assert 0 < u[0] < 1e-15 and 1 - 1e-15 < u[1] < 1
    s = gaussian_symbols(KEY, 7, 200_000, 4.0)
    for q in (s.real, s.imag):
        assert stats.kstest(q / 2.0, "norm").pvalue > 1e-3
    assert abs(np.var(s.real) - 4) < 0.05 and abs(np.mean(s.real * s.imag)) < 0.05
    assert not np.array_equal(s, gaussian_symbols(KEY, 8, 200_000, 4.0))
    assert np.array_equal(s[:10], gaussian_symbols(KEY, 7, 10, 4.0))


def test_zadoff_chu_cazac():
    z = zadoff_chu(509, 7)
    assert np.allclose(np.abs(z), 1)
    c = np.fft.ifft(np.fft.fft(z) * np.conj(np.fft.fft(z)))
    assert abs(c[0]) == pytest.approx(509) and np.max(np.abs(c[1:])) < 1e-8


def test_frame_recovers_symbols_and_respects_dac_budget():
    cfg = TxConfig()
    f = build_frame(cfg, 20_000, KEY, 3)
    m = f.meta
    assert f.iq_int16.shape == (m["n_samples"], 2) and f.iq_int16.dtype == np.int16
    assert m["clipped_components"] == 0
    assert np.all(f.iq_int16 % 4 == 0)  # 14-bit codes, MSB-aligned
    assert config_from_dict(m["config"]) == cfg
    n = m["n_samples"]
    s = (f.iq_int16[:, 0] + 1j * f.iq_int16[:, 1]) * m["quad_per_lsb"]
    i = np.arange(n)
    for p in m["pilots"]:
        s -= p["amplitude"] * np.exp(2j * np.pi * p["freq_hz"] / cfg.sample_rate_hz * i)
    s *= np.exp(-2j * np.pi * m["signal_offset_hz"] / cfg.sample_rate_hz * i)
    h = rrc_taps(m["sps"], cfg.rolloff, 16)
    y = np.convolve(s, h)[h.size // 2:][:n]
    d = y[m["data_start_symbol"] * m["sps"]::m["sps"]][:m["n_data"]]
    err = np.mean(np.abs(d - f.symbols) ** 2) / 2
    assert err < 1e-5  # quantisation + truncation, SNU per quadrature
    # pilot power relative to data per-sample power
    p1 = m["pilots"][0]
    assert 10 * np.log10(p1["amplitude"] ** 2 / (2 * cfg.v_a / m["sps"])) == pytest.approx(19.0)


def test_bad_config_rejected():
    with pytest.raises(ValueError):
        build_frame(TxConfig(symbol_rate_hz=123e6), 10, KEY)
    with pytest.raises(ValueError):
        build_frame(TxConfig(), 10, b"short")


def _reference_codes(cfg: TxConfig, f) -> tuple[np.ndarray, np.ndarray]:
    """Frame codes recomputed independently: FFT circular convolution of the zero-stuffed slots
    with the centred taps, direct complex exponentials for the shift and the pilots. Returns
    (codes, distance of each component from its rounding boundary, in code steps)."""
    m = f.meta
    n, sps = m["n_samples"], m["sps"]
    slots = np.zeros(m["n_slots"], complex)
    for which, start in ((0, m["preamble_start_symbol"]), (1, m["postamble_start_symbol"])):
        slots[start:start + cfg.preamble_len] = preamble_symbols(cfg, which)
    slots[m["data_start_symbol"]:m["data_start_symbol"] + m["n_data"]] = f.symbols
    up = np.zeros(n, complex)
    up[::sps] = slots
    taps = rrc_taps(sps, cfg.rolloff, cfg.half_span)
    h = np.zeros(n)
    np.add.at(h, (np.arange(taps.size) - taps.size // 2) % n, taps)  # may wrap several times
    wave = np.fft.ifft(np.fft.fft(up) * np.fft.fft(h))
    i = np.arange(n)
    wave *= np.exp(2j * np.pi * m["signal_offset_hz"] / cfg.sample_rate_hz * i)
    for p in m["pilots"]:
        wave += p["amplitude"] * np.exp(2j * np.pi * p["freq_hz"] / cfg.sample_rate_hz * i)
    step = 1 << (16 - cfg.dac_bits)
    v = np.stack([wave.real, wave.imag], axis=1) / (m["quad_per_lsb"] * step)
    return np.round(v) * step, np.abs(np.abs(v - np.floor(v)) - 0.5)


@pytest.mark.parametrize(("cfg", "n_data"), [
    (TxConfig(guard_symbols=0, preamble_len=13, half_span=8), 3001),  # tails wrap onto data
    (TxConfig(guard_symbols=3, preamble_len=31, signal_offset_hz=0.0, sample_rate_hz=400e6),
     3001),
    (TxConfig(guard_symbols=0, preamble_len=13), 5),  # frame shorter than one pulse
])
def test_frame_codes_match_independent_fft_synthesis(cfg, n_data):
    f = build_frame(cfg, n_data, KEY, 2)
    codes, margin = _reference_codes(cfg, f)
    clear = margin > 1e-6  # components not within rounding error of a code boundary
    assert clear.mean() > 0.99
    assert np.array_equal(f.iq_int16[clear], codes[clear].astype(np.int16))
