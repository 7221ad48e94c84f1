"""Test-only channel for the DSP: Alice's frame -> Bob's ADC samples, plus the ideal receiver.

Independent of the receiver's code: the waveform is synthesised at Bob's sample instants
directly from the symbols with the analytic RRC (band-limited resampling for any clock offset),
so the clock offset, LO frequency offset and drift, and phase noise are exact. Noise is white
complex Gaussian per Bob sample in SNU (per quadrature 1 + v_el + eta T xi / 2 for heterodyne),
quantised by a 14-bit ADC. The ideal receiver ("genie") applies the true phase and clock and a
unit-energy matched filter to the same noise realisation: genie_k = g x_k + z_k.
Not modelled here: DAC quantisation (6e-7 SNU), ADC clipping, jitter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from dsp.transmitter import config_from_dict, preamble_symbols


@dataclass
class ChannelParams:
    transmittance: float = 0.316
    eta: float = 0.7
    v_el: float = 0.1
    xi: float = 0.02  # input-referred excess noise, SNU
    linewidth_hz: float = 10e3  # combined
    lo_offset_hz: float = 50e6
    lo_drift_hz_per_s: float = 2e6
    clock_ppm: float = 20.0  # Bob's ADC clock faster than Alice's DAC by this much
    delay_samples: float = 1234.37  # Bob sample at which Alice's frame sample 0 arrives
    extra_samples: int = 20000  # capture length beyond the frame
    adc_bits: int = 14
    # Pilot tones are rendered at this many times Bob's rate with the laser phase there, then
    # low-pass filtered and decimated like the board's down-converter (pass band +-0.42, stop
    # band beyond +-0.58 of the output rate). 1: the tones' phase noise is a random walk per
    # output sample, which aliases the phase-noise skirts of every Nyquist zone into the band
    # (a simulation artefact: a real DDC filters them out before decimating).
    pilot_oversample: int = 4
    seed: int = 1


@nb.njit(cache=True)
def _rrc(t: float, beta: float) -> float:
    if abs(t) < 1e-12:
        return 1 - beta + 4 * beta / np.pi
    if abs(abs(4 * beta * t) - 1) < 1e-9:
        return (beta / np.sqrt(2)) * ((1 + 2 / np.pi) * np.sin(np.pi / (4 * beta))
                                      + (1 - 2 / np.pi) * np.cos(np.pi / (4 * beta)))
    return (np.sin(np.pi * t * (1 - beta)) + 4 * beta * t * np.cos(np.pi * t * (1 + beta))) / (
        np.pi * t * (1 - (4 * beta * t) ** 2))


@nb.njit(cache=True)
def _synth(a: np.ndarray, slots: np.ndarray, sps: int, beta: float, span: int, norm: float,
           nus: float, out: np.ndarray) -> None:
    """Circular RRC waveform at Alice positions a (samples), shifted to nus cycles/sample."""
    ns = slots.size
    nframe = ns * sps
    for i in range(a.size):
        am = a[i] % nframe
        kc = int(np.floor(am / sps))
        acc = 0j
        for k in range(kc - span, kc + span + 2):
            t = am / sps - k
            acc += slots[k % ns] * _rrc(t, beta)
        ph = 2 * np.pi * ((nus * am) % 1.0)
        out[i] = acc * norm * complex(np.cos(ph), np.sin(ph))


@nb.njit(cache=True)
def _genie_noise(w: np.ndarray, psi: np.ndarray, n_k: np.ndarray, a_k: np.ndarray, n0: float,
                 ratio: float, nus: float, sps: int, beta: float, span: int, out: np.ndarray
                 ) -> None:
    """Ideal matched filter of noise w at the symbol times, derotated by the true phase psi and
    the data band's carrier (nus cycles per Alice sample)."""
    for k in range(n_k.size):
        c = int(np.round(n_k[k]))
        lo, hi = c - span * sps - 2, c + span * sps + 3
        acc = 0j
        e = 0.0
        for n in range(lo, hi):
            t = ((n - n0) * ratio - a_k[k]) / sps
            if abs(t) > span:
                continue
            h = _rrc(t, beta)
            ph = psi[n] + 2 * np.pi * ((nus * (n - n0) * ratio) % 1.0)
            acc += w[n] * complex(np.cos(ph), -np.sin(ph)) * h
            e += h * h
        out[k] = acc / np.sqrt(e)


def ddc_filter(m: int) -> np.ndarray:
    """Low-pass of the down-converter at m times the output rate: pass band +-0.42 and stop
    band beyond +-0.58 of the output rate (100 dB, Kaiser window), unit DC gain. Odd length
    with the centre tap at a multiple of m."""
    from scipy.signal import firwin, kaiserord
    ntaps, beta = kaiserord(100.0, 0.16 / m * 2)
    ntaps = 2 * m * (ntaps // (2 * m) + 1) + 1
    return firwin(ntaps, 1.0 / m, window=("kaiser", beta))


@nb.njit(cache=True)
def _decimate(xf: np.ndarray, h: np.ndarray, m: int, out: np.ndarray) -> None:
    """out[i] = sum_k h[k] xf[i m + k] (the filter's centre lands on fine sample i m + L//2)."""
    for i in range(out.size):
        acc = 0j
        b = i * m
        for k in range(h.size):
            acc += h[k] * xf[b + k]
        out[i] = acc


def _laser_phase_and_pilots(n: int, m: int, q: float, pilots: list[tuple[float, float]],
                            det_phase, alice_pos, rng: np.random.Generator
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Laser phase noise at Bob's samples (a Wiener process, q rad^2 per output sample) and the
    pilot tones (amplitude, cycles per Alice sample) carrying that phase and the deterministic
    beat phase `det_phase(t_samples)`, rendered at m times the rate and down-converted by
    `ddc_filter(m)`. With m = 1 the tones are sampled directly (aliased skirts)."""
    psi = np.empty(n)
    tones = np.zeros(n, dtype=np.complex128)
    if m == 1:
        psi[:] = np.cumsum(rng.normal(0, np.sqrt(q), n))
        tt = np.arange(n, dtype=np.float64)
        a = alice_pos(tt)
        for amp, nu in pilots:
            tones += amp * np.exp(2j * np.pi * ((nu * a) % 1.0))
        tones *= np.exp(1j * (psi + det_phase(tt)))
        return psi, tones
    h = ddc_filter(m)
    half = h.size // 2  # fine samples, a multiple of m: output i needs fine i m +- half
    f_end = (n - 1) * m + half + 1  # fine samples [-half, f_end)
    step = (1 << 16) * m
    buf = np.zeros(0, dtype=np.complex128)
    buf_start = -half  # global fine index of buf[0]
    last, nxt = 0.0, 0
    for f_lo in range(-half, f_end, step):
        f_hi = min(f_lo + step, f_end)
        ph = last + np.cumsum(rng.normal(0, np.sqrt(q / m), f_hi - f_lo))
        last = ph[-1]
        gi = np.arange(f_lo, f_hi)
        on = (gi >= 0) & (gi % m == 0) & (gi < n * m)
        psi[gi[on] // m] = ph[on]
        tf = gi / m  # in output samples
        a = alice_pos(tf)
        fine = np.zeros(f_hi - f_lo, dtype=np.complex128)
        for amp, nu in pilots:
            fine += amp * np.exp(2j * np.pi * ((nu * a) % 1.0))
        fine *= np.exp(1j * (ph + det_phase(tf)))
        buf = np.concatenate((buf, fine))
        top = min(n, (f_hi - 1 - half) // m + 1)  # outputs whose support is in the buffer
        if top > nxt:
            _decimate(buf[nxt * m - half - buf_start:], h, m, tones[nxt:top])
            nxt = top
        keep = nxt * m - half  # first fine sample still needed
        buf, buf_start = buf[keep - buf_start:], keep
    return psi, tones


def run_channel(meta: dict, symbols: np.ndarray, p: ChannelParams) -> dict:
    """ADC capture (int16 (n, 2)), calibration captures, genie symbols and the truth."""
    cfg = config_from_dict(meta["config"])
    sps = meta["sps"]
    fs = cfg.sample_rate_hz
    rng = np.random.default_rng(p.seed)  # channel noise: not secret
    slots = np.zeros(meta["n_slots"], dtype=np.complex128)
    lp = cfg.preamble_len
    slots[meta["preamble_start_symbol"]:meta["preamble_start_symbol"] + lp] = \
        preamble_symbols(cfg, 0)
    slots[meta["data_start_symbol"]:meta["data_start_symbol"] + meta["n_data"]] = symbols
    slots[meta["postamble_start_symbol"]:meta["postamble_start_symbol"] + lp] = \
        preamble_symbols(cfg, 1)
    ratio = 1.0 / (1.0 + p.clock_ppm * 1e-6)  # Alice samples per Bob sample
    n = int(np.ceil(meta["n_samples"] / ratio + p.delay_samples)) + p.extra_samples
    nn = np.arange(n, dtype=np.float64)
    a = (nn - p.delay_samples) * ratio
    span = cfg.half_span
    tt = np.arange(-span * sps, span * sps + 1) / sps
    norm = 1.0 / np.sqrt(sum(_rrc(t, cfg.rolloff) ** 2 for t in tt))
    wave = np.empty(n, dtype=np.complex128)
    _synth(a, slots, sps, cfg.rolloff, span, norm, meta["signal_offset_hz"] / fs, wave)

    def det_phase(tt: np.ndarray) -> np.ndarray:  # LO offset and drift, tt in Bob samples
        t = tt / fs
        return 2 * np.pi * ((p.lo_offset_hz * t + 0.5 * p.lo_drift_hz_per_s * t * t) % 1.0)

    pil = [(q["amplitude"], q["freq_hz"] / fs) for q in meta["pilots"]]
    psi_pn, tones = _laser_phase_and_pilots(
        n, p.pilot_oversample, 2 * np.pi * p.linewidth_hz / fs, pil, det_phase,
        lambda tt: (tt - p.delay_samples) * ratio, rng)
    psi = det_phase(nn) + psi_pn
    g = np.sqrt(p.eta * p.transmittance / 2)
    ntot = 1 + p.v_el + p.eta * p.transmittance * p.xi / 2
    w = np.sqrt(ntot) * (rng.standard_normal(n) + 1j * rng.standard_normal(n))
    rx = g * (wave * np.exp(1j * psi) + tones) + w
    del tones
    peak = g * (sum(pl["amplitude"] for pl in meta["pilots"]) + meta["preamble_amplitude"]) \
        + 7 * np.sqrt(ntot)
    scale = 32767.0 / peak  # ADC units per quadrature unit

    def adc(z: np.ndarray) -> np.ndarray:
        step = 1 << (16 - p.adc_bits)
        lim = 32768 - step
        out = np.empty((z.size, 2), dtype=np.int16)
        out[:, 0] = np.clip(np.round(z.real * scale / step) * step, -lim, lim)
        out[:, 1] = np.clip(np.round(z.imag * scale / step) * step, -lim, lim)
        return out

    n_cal = 1 << 18
    shot = np.sqrt(1 + p.v_el) * (rng.standard_normal(n_cal)
                                        + 1j * rng.standard_normal(n_cal))
    elec = np.sqrt(p.v_el) * (rng.standard_normal(n_cal) + 1j * rng.standard_normal(n_cal))
    a_k = (meta["data_start_symbol"] + np.arange(meta["n_data"])) * float(sps)
    n_k = a_k / ratio + p.delay_samples
    z = np.empty(a_k.size, dtype=np.complex128)
    _genie_noise(w, psi, n_k, a_k, p.delay_samples, ratio, meta["signal_offset_hz"] / fs, sps,
                 cfg.rolloff, 16, z)
    genie = g * symbols + z
    return {"adc": adc(rx), "shot": adc(shot), "elec": adc(elec), "genie": genie, "gain": g,
            "phase": psi,
            "ntot": ntot, "n_k": n_k, "ratio": ratio, "adc_scale": scale}


def dsp_added_noise(bob: np.ndarray, genie: np.ndarray, x: np.ndarray, v_el: float,
                    snu_rescale: float = 1.0) -> dict:
    """Input-referred excess noise the DSP adds relative to the ideal receiver on the same noise
    realisation (heterodyne): xi_hat(bob) - xi_hat(genie), each from its own closed-form fit
    t = <x, y>/<x, x>, sigma^2 = mean |y - t x|^2 / 2, xi_hat = (sigma^2 - 1 - v_el) / |t|^2.

    `snu_rescale` multiplies Bob's symbols first: tests pass sqrt(N0_estimated / N0_true) to
    take the statistical error of the shot-noise calibration (a property of the calibration
    length, not of the DSP) out of the comparison."""
    def fit(y):
        t = np.vdot(x, y) / np.vdot(x, x).real
        var = np.mean(np.abs(y - t * x) ** 2) / 2
        return t, var, (var - 1 - v_el) / abs(t) ** 2
    tb, _vb, xb = fit(bob * snu_rescale)
    tg, _vg, xg = fit(genie)
    return {"xi_added": float(xb - xg), "xi_bob": float(xb), "xi_genie": float(xg),
            "gain_ratio": float(abs(tb / tg))}


def pilot_to_data(meta: dict) -> float:
    """Distance from the phase pilot to the data band's centre, cycles per (Alice) sample."""
    return (meta["pilots"][0]["freq_hz"] - meta["signal_offset_hz"]) / \
        meta["config"]["sample_rate_hz"]


def chain_noise_gain(a: float, distance: float, sps: int, rolloff: float,
                     half_span: int = 10) -> float:
    """Variance gain of the receiver's linear path for white noise in the data band: matched
    filter after the subtraction of the pilot smoother's output (filter delta - h,
    h[k] = (1-a)/(1+a) a^|k| shifted to the pilot, `distance` cycles per sample from the data
    band's centre: `pilot_to_data`). The smoother's response leaks into the data band as
    (1-a)^2 / |1 - a exp(-j 2 pi distance)|^2 (~1e-3 at a = 0.95), scaling signal and noise
    there alike; the receiver's own calibration goes through the same path. Computed here
    independently of dsp/."""
    k = np.arange(-int(np.log(1e-12) / np.log(a)), int(np.log(1e-12) / np.log(a)) + 1)
    h = (1 - a) / (1 + a) * a ** np.abs(k) * np.exp(2j * np.pi * distance * k)
    t = np.arange(-half_span * sps, half_span * sps + 1) / sps
    mf = np.array([_rrc(v, rolloff) for v in t])
    mf /= np.sqrt(np.sum(mf ** 2))
    g = -np.convolve(mf, h)
    c = (g.size - mf.size) // 2
    g[c:c + mf.size] += mf
    return float(np.sum(np.abs(g) ** 2))
