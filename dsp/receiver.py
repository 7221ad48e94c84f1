"""Bob's receiver: ADC capture (int16 I/Q from the down-converter) -> symbol estimates in SNU.

Stages (docs/dsp.md has the reasoning and the measurements):
 1. coarse pilot frequencies from a periodogram of the first samples;
 2. pilot statistics (power, noise, linewidth) -> coefficient of the Wiener phase smoother;
 3. clock: phase of the pilot-pair product, in blocks over the whole capture -> Alice's sample
    index a(n) at Bob's sample n, up to whole periods of the pair's beat;
 4. frame sync: Zadoff-Chu correlation (fractional peak) of the pilot-corrected samples resolves
    the period; the postamble must appear where the clock predicts;
 5. main pass, in chunks: pilot phase recovery and subtraction, carrier offset, matched filter
    evaluated at the fractional positions of the symbols (resampling + downsampling);
 6. signal-loss check (pilot power per 512 symbols, data-aided correlation per block): lost
    stretches are masked, never returned as symbols; symbol lag confirmed against the
    disclosed symbols; data-aided timing check (a second main pass if the timing is off by more
    than a tolerance); closed-form phase (linear in time) and gain;
 7. shot-noise and electronic-noise captures through the same linear chain -> SNU (once per
    calibration, carried to later frames: dsp/calibration.py).
A failure of a frame-level check raises `SyncError` with a reason; nothing is returned then.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from dsp import kernels
from dsp.calibration import Calibration
from dsp.chain import Chain, check_iq
from dsp.clock import ClockTrack, track_from_blocks
from dsp.filters import rrc_polyphase
from dsp.pilot import coarse_frequencies, phase_statistics, smoother_coefficient
from dsp.sync import SyncError, confirm_lag, correlate, find_peak, preamble_template
from dsp.transmitter import config_from_dict, preamble_symbols

__all__ = ["Calibration", "RxConfig", "RxResult", "SyncError", "receive"]


@dataclass(frozen=True)
class RxConfig:
    """Receiver settings (frequencies in Hz, lengths in samples unless named otherwise)."""

    max_lo_offset_hz: float = 100e6  # pilot search range around its nominal frequency
    max_clock_ppm: float = 100.0
    fft_len: int = 1 << 18  # coarse frequency / pilot statistics block
    pair_block: int = 1 << 14  # pilot-pair (clock) block
    search_samples: int = 1 << 20  # preamble search window from the capture start
    chunk_symbols: int = 1 << 15
    mf_half_span: int = 10  # matched filter truncated at +-10 symbols
    mf_phases: int = 1024  # fractional-delay resolution of the matched filter (1/1024 sample)
    linewidth_hz: float | None = None  # None: estimate from the pilot
    min_pilot_ratio: float = 1e3  # strong-pilot periodogram peak / median
    min_sync_ratio: float = 30.0  # preamble correlation peak / median power
    max_lag: int = 8
    min_lag_z: float = 8.0
    timing_tol_symbols: float = 0.004  # data-aided timing error that triggers another pass
    timing_block_symbols: int = 1 << 14


@dataclass
class RxResult:
    """Bob's symbols (complex SNU, indexed like Alice's data symbols), mask of recovered ones,
    and a JSON-serialisable summary."""

    symbols: np.ndarray
    mask: np.ndarray
    summary: dict = field(default_factory=dict)


def _complex(iq: np.ndarray) -> np.ndarray:
    out = np.empty(iq.shape[0], dtype=np.complex128)
    kernels.to_complex(np.ascontiguousarray(iq), out)
    return out


def receive(iq: np.ndarray, tx_meta: dict, capture_rate_hz: float, disclosed_idx: np.ndarray,
            disclosed_x: np.ndarray, shot_iq: np.ndarray | None = None,
            elec_iq: np.ndarray | None = None, eta: float | None = None,
            detection: str = "heterodyne", nco_hz: float = 0.0, if_hz: float = 0.0,
            config: RxConfig = RxConfig(), calibration: Calibration | None = None
            ) -> RxResult:
    """Run the receiver on one capture.

    iq: int16 (n, 2) I/Q at `capture_rate_hz` (may be a memory map: it is read in chunks).
    tx_meta: the transmitter frame's `meta`. disclosed_idx/disclosed_x: indices into the data
    symbols and Alice's values there (SNU), used for the lag check, timing check, phase and
    gain. shot_iq/elec_iq: calibration captures (LO only; LO off) in the same format, or
    `calibration`: a `dsp.calibration.Calibration` of them, kept across the frames until the
    next calibration (its variances are computed once and carried from frame to frame);
    without either the output is in ADC units and `summary["snu"]` is False. eta: detector
    efficiency (for the transmittance estimate). nco_hz: down-converter NCO frequency (in the
    ADC clock's units); if_hz: nominal heterodyne IF (LO-to-laser detuning), so that the pilot
    is expected at pilot + if_hz - nco_hz and the reported LO offset is the absolute error
    against if_hz.
    """
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    check_iq(iq, "capture")
    if calibration is not None and (shot_iq is not None or elec_iq is not None):
        raise ValueError("give the calibration records or a Calibration, not both")
    if detection not in ("heterodyne", "homodyne"):
        raise ValueError("detection must be 'heterodyne' or 'homodyne'")
    cfg = config_from_dict(tx_meta["config"])
    n = iq.shape[0]
    fs_tx, fs = cfg.sample_rate_hz, float(capture_rate_hz)
    sps = tx_meta["sps"]
    r0 = fs_tx / fs  # nominal Alice samples per Bob sample
    pilots = tx_meta["pilots"]
    if len(pilots) < 2:
        raise ValueError("the receiver needs the phase pilot and the clock pilot")
    nu1, nu2 = pilots[0]["freq_hz"] / fs_tx, pilots[1]["freq_hz"] / fs_tx  # Alice cycles/sample
    nus = tx_meta["signal_offset_hz"] / fs_tx
    disclosed_idx = np.asarray(disclosed_idx, dtype=np.int64)
    disclosed_x = np.asarray(disclosed_x, dtype=np.complex128)
    n_data = tx_meta["n_data"]
    if disclosed_idx.size < 100 or disclosed_idx.shape != disclosed_x.shape:
        raise ValueError("need at least 100 disclosed symbols (indices and values)")
    if disclosed_idx.min() < 0 or disclosed_idx.max() >= n_data:
        raise ValueError("disclosed indices outside the frame's data symbols")
    if n < 2 * config.pair_block:
        raise SyncError("capture too short")

    # 1-2. coarse pilot frequencies and statistics
    x0 = _complex(iq[: min(n, config.fft_len)])
    f1_nom = (pilots[0]["freq_hz"] + if_hz - nco_hz) / fs
    f2_nom = (pilots[1]["freq_hz"] + if_hz - nco_hz) / fs
    f1, f2, ratio = coarse_frequencies(x0, f1_nom, f2_nom, config.max_lo_offset_hz / fs,
                                       config.max_clock_ppm)
    if ratio < config.min_pilot_ratio:
        raise SyncError(f"phase pilot not found (peak/median {ratio:.0f})")
    a2, noise, q_est = phase_statistics(x0, f1)
    q = q_est if config.linewidth_hz is None else 2 * np.pi * config.linewidth_hz / fs
    r = noise / (2 * a2)
    a_coef = smoother_coefficient(q, r)
    margin = int(np.ceil(np.log(1e-9) / np.log(a_coef))) + 4 * config.mf_half_span * sps
    del x0
    timings["pilot_s"] = time.perf_counter() - t_start

    # 3. clock from the pilot pair over the whole capture
    t0 = time.perf_counter()
    nb_full = n // config.pair_block
    sums = np.zeros(nb_full + 1, dtype=np.complex128)
    step = config.pair_block * 64
    for s in range(0, nb_full * config.pair_block, step):
        e = min(s + step, nb_full * config.pair_block)
        kernels.pair_blocks(np.ascontiguousarray(iq[s:e]), s, f1 - f2, config.pair_block, sums)
    try:
        track = track_from_blocks(sums[:nb_full], config.pair_block, f1 - f2, nu1 - nu2, n)
    except ValueError as exc:
        raise SyncError(str(exc)) from None
    if abs(track.ratio / r0 - 1) > config.max_clock_ppm * 1e-6:
        raise SyncError(f"clock offset {(r0 / track.ratio - 1) * 1e6:.1f} ppm beyond limit")
    timings["clock_s"] = time.perf_counter() - t0

    # 4. preamble / postamble
    t0 = time.perf_counter()
    table = rrc_polyphase(sps / track.ratio, cfg.rolloff, config.mf_half_span, config.mf_phases)
    chain = Chain(iq, f1, a_coef, margin, track, nu1 - nus, table)
    period = 1.0 / (nu1 - nu2)
    sync = {}
    offsets = []
    w = min(n, config.search_samples)
    pre_a = tx_meta["preamble_start_symbol"] * sps
    post_a = tx_meta["postamble_start_symbol"] * sps
    for name, which, a_true in (("preamble", 0, pre_a), ("postamble", 1, post_a)):
        tmpl, c0 = preamble_template(preamble_symbols(cfg, which), sps, cfg.rolloff, 8)
        if which == 0:
            # the whole frame must follow the preamble inside the capture
            rest = (tx_meta["n_samples"] - a_true) / track.ratio
            lo, hi = 0, min(w, int(n - rest) + tmpl.size - c0)
            if hi - lo < tmpl.size + 3:
                raise SyncError("capture shorter than one frame")
        else:
            pred = float(chain.track.bob(a_true))
            if not np.isfinite(pred):
                raise SyncError("frame not fully captured (postamble outside the capture)")
            lo, hi = int(pred) - c0 - 64, int(pred) - c0 + tmpl.size + 64
            if lo < 0 or hi > n:
                raise SyncError("frame not fully captured (postamble outside the capture)")
        peak, pratio = _search(chain, lo, hi, tmpl, config.min_sync_ratio)
        n_at = peak + c0
        # the peak aligns the template's centre (the clock stretches the preamble by ~0.05
        # sample at 20 ppm), so compare the clock there
        mid = (cfg.preamble_len - 1) * sps / 2
        a_meas = float(chain.track.alice(n_at + mid)) - mid
        if not np.isfinite(a_meas):
            raise SyncError(f"{name} outside the clock-tracked part of the capture")
        if which == 0:
            k = np.round((a_true - a_meas) / period)
            chain.track = chain.track.shifted(k * period)
            a_meas += k * period
        err = a_true - a_meas  # Alice samples
        if abs(err) > 0.25 * period:
            raise SyncError(f"{name} and pilot clock disagree by {err:.2f} samples")
        offsets.append(err)
        sync[name] = {"bob_sample": float(n_at), "peak_ratio": pratio, "error_samples": err}
    chain.track = chain.track.shifted(float(np.mean(offsets)))
    timings["sync_s"] = time.perf_counter() - t0

    # 5-6. main pass(es)
    a0 = tx_meta["data_start_symbol"] * float(sps)
    first, last = chain.track.bob(np.array([a0, a0 + (n_data - 1) * sps]))
    half = chain.half
    if not (np.isfinite(first) and np.isfinite(last)) or first - half < 0 or last + half >= n:
        raise SyncError("frame not fully captured (data outside the capture)")
    t0 = time.perf_counter()
    tblk = config.timing_block_symbols
    if np.all(disclosed_idx[1:] > disclosed_idx[:-1]):
        didx, dx = disclosed_idx, disclosed_x
    else:
        order = np.argsort(disclosed_idx)
        didx, dx = disclosed_idx[order], disclosed_x[order]
    passes = 0
    chunk = config.chunk_symbols
    y = np.empty(n_data, dtype=np.complex128)
    while True:
        passes += 1
        st, lost = _main_pass(chain, a0, sps, didx, dx, y, chunk, tblk, a2)
        lost |= np.repeat(st.bad(), tblk)[:n_data]
        if lost.mean() > 0.5:
            raise SyncError(f"signal lost in {lost.mean():.0%} of the frame")
        good = ~lost[disclosed_idx]
        gidx, gx = disclosed_idx[good], disclosed_x[good]
        sub = slice(None, None, max(1, gidx.size // 20000))  # 2e4 symbols: z ~ 70 at SNR 0.4
        _, lag_z = confirm_lag(y, gidx[sub], gx[sub], config.max_lag, config.min_lag_z)
        counts = np.where(st.bad(), 0.0, st.counts)
        delta = _timing_offsets(st.s3, counts)  # Bob samples, constant
        worst = float(np.nanmax(np.abs(delta))) * track.ratio / sps  # symbols
        if worst <= config.timing_tol_symbols or passes >= 3:
            break
        _shift_track(chain, delta, tblk, sps, tx_meta["data_start_symbol"])
    timings["main_s"] = time.perf_counter() - t0

    # 7. calibration through the same filter (dsp/calibration.py: once per calibration)
    t0 = time.perf_counter()
    if calibration is None and shot_iq is not None:
        calibration = Calibration(shot_iq, elec_iq, copy=False)
    n_shot = n_el = cal_note = None
    if calibration is not None:
        (n_shot, n_el), cal_note = calibration.variances(chain, sps / track.ratio)
    timings["calibration_s"] = time.perf_counter() - t0

    _phase_line(y, st.s3[:, 1], counts, tblk)
    t_hat = _cdot(gx, y[gidx]) / _cdot(gx, gx).real
    rot = np.exp(-1j * np.angle(t_hat))
    snu = n_shot is not None
    n0 = (n_shot - (n_el or 0.0)) if snu else 1.0
    if snu and n0 <= 0:
        raise ValueError("shot-noise variance not above electronic noise: bad calibration")
    kernels.rotate_linear(y, float(np.angle(rot)), 0.0, 1.0 / np.sqrt(n0))
    mask = np.isfinite(y) & ~lost
    y[~mask] = 0
    v_el = (n_el / n0) if (snu and n_el is not None) else None
    est = _estimates(y[gidx], gx, v_el, eta, detection)
    timings["total_s"] = time.perf_counter() - t_start
    # absolute beat = (apparent + NCO) scaled by the ADC clock error; minus IF and pilot
    lo_hz = (f1 * fs + nco_hz) * (r0 / track.ratio) - if_hz - pilots[0]["freq_hz"]
    summary = {
        "snu": snu,
        "n_symbols": int(n_data),
        "n_recovered": int(mask.sum()),
        "lost_ranges": _ranges(~mask),
        "clock_offset_ppm": float((r0 / track.ratio - 1) * 1e6),
        "clock_track_rms_samples": track.residual_rms,
        "lo_offset_hz": float(lo_hz),
        "linewidth_estimate_hz": float(q_est * fs / (2 * np.pi)),
        "smoother_a": a_coef,
        "phase_pilot_cycles_per_sample": float(f1),
        "pilot_snr_db": float(10 * np.log10(a2 / noise)),
        "sync": sync,
        "lag_z": lag_z,
        "timing_passes": passes,
        "timing_residual_symbols": worst,
        "shot_noise_adc2": n0 if snu else None,
        "electronic_noise_snu": v_el,
        "calibration": cal_note,
        **est,
        "timings_s": timings,
        "samples_per_s": n / timings["total_s"],
    }
    return RxResult(y, mask, summary)


def _search(chain: Chain, lo: int, hi: int, tmpl: np.ndarray, min_ratio: float,
            window: int = 1 << 17) -> tuple[float, float]:
    """Best preamble correlation peak (capture sample index, fractional) in [lo, hi), in
    overlapping windows so that memory stays small; the peak/median ratio of its window."""
    best: tuple[float, float, float] | None = None  # (|peak|, position, ratio)
    fails = []
    start = lo
    while start + tmpl.size + 2 < hi:
        end = min(hi, start + window + tmpl.size)
        v, s0, _ = chain.corrected(start, end)
        c = correlate(v[start - s0: end - s0], tmpl)
        del v
        try:
            pk, ratio, val = find_peak(c, min_ratio)
        except SyncError as exc:
            fails.append(exc.reason)
        else:
            if best is None or abs(val) > best[0]:
                best = (abs(val), start + pk, ratio)
        start += window
    if best is None:
        raise SyncError(fails[0] if fails else "search window shorter than the preamble")
    return best[1], best[2]


def _shift_track(chain: Chain, delta: np.ndarray, tblk: int, sps: int, data_start: int
                 ) -> None:
    """Move the symbol positions by the measured offsets (Bob samples per timing block)."""
    centres = (np.arange(delta.size) + 0.5) * tblk
    kn_sym = chain.track.knot_a / sps - data_start
    shift = np.interp(kn_sym, centres, delta)
    chain.track = ClockTrack(chain.track.knot_n + shift, chain.track.knot_a, chain.track.ratio,
                             chain.track.residual_rms)


@dataclass
class _Blocks:
    """Per timing block of symbols: data-aided sums over the disclosed symbols that survived
    the pilot check."""

    s3: np.ndarray  # (nblk, 3) sum y(pos + d) conj(x), d = -1/2, 0, +1/2 sample
    counts: np.ndarray  # disclosed symbols
    yy: np.ndarray  # sum |y|^2 over disclosed symbols
    xx: np.ndarray  # sum |x|^2 over disclosed symbols

    def bad(self) -> np.ndarray:
        """Blocks whose data-aided correlation is below half the median block's (blocks with
        >= 50 disclosed symbols): a signal lost without losing the pilot."""
        ok = self.counts >= 50
        rho = np.zeros_like(self.yy)
        rho[ok] = np.abs(self.s3[ok, 1]) / np.sqrt(self.yy[ok] * self.xx[ok])
        if not ok.any():
            return np.zeros_like(ok)
        return ok & (rho < 0.5 * np.median(rho[ok]))


PILOT_CHECK_SYMBOLS = 512  # 5 us at 100 MBd


def _main_pass(chain: Chain, a0: float, sps: int, didx: np.ndarray, dx: np.ndarray,
               y: np.ndarray, chunk: int, tblk: int, pilot_ref: float
               ) -> tuple[_Blocks, np.ndarray]:
    """Data symbols k at Alice sample a0 + k sps, i.e. Bob sample chain.track.bob(...), in
    chunks; the per-block statistics (`_Blocks`, blocks of `tblk` symbols); and the symbols
    lost by the pilot check: in runs of PILOT_CHECK_SYMBOLS, a mean pilot power outside
    [1/4, 4] times `pilot_ref` (the pilot's power from the start of the capture) means the
    light or the detector was lost (fibre cut, saturation, LO unlock) there. `didx` must be
    sorted (with `dx`). Writes the symbols into `y` (reused across passes). Memory: the
    output plus one chunk's buffers."""
    n_data = y.size
    lost = np.zeros(n_data, dtype=bool)
    nblk = (n_data + tblk - 1) // tblk
    st = _Blocks(np.zeros((nblk, 3), dtype=np.complex128), np.zeros(nblk), np.zeros(nblk),
                 np.zeros(nblk))
    half = chain.half
    run = PILOT_CHECK_SYMBOLS
    chunk = max(run, chunk // run * run)
    for k0 in range(0, n_data, chunk):
        k1 = min(n_data, k0 + chunk)
        p = np.empty(k1 - k0)
        kernels.interp_increasing(a0 + np.arange(k0, k1) * float(sps), chain.track.knot_a,
                                  chain.track.knot_n, p)
        lo, hi = int(np.floor(p[0])) - half - 1, int(np.ceil(p[-1])) + half + 2
        v, s0, pil = chain.corrected(lo, hi)
        y[k0:k1] = chain.sample(p, v, s0)
        mean_pp = kernels.run_power(pil, p, s0, run)
        bad_run = (mean_pp < 0.25 * pilot_ref) | (mean_pp > 4.0 * pilot_ref)
        grown = bad_run.copy()  # neighbours within the chunk now, across chunks at the end
        grown[:-1] |= bad_run[1:]
        grown[1:] |= bad_run[:-1]
        lost[k0:k1] = np.repeat(grown, run)[:k1 - k0]
        i0, i1 = np.searchsorted(didx, [k0, k1])
        if i1 > i0:
            sel, xs = didx[i0:i1], dx[i0:i1]
            keep = ~lost[sel]
            sel = sel[keep]
            kernels.disclosed_sums(v, s0, p[sel - k0], chain.table, y[sel], np.conj(xs[keep]),
                                   sel // tblk, st.s3, st.counts, st.yy, st.xx)
        del v, pil
    # a run partly hit shows a diluted mean: lose the neighbours of a bad run too (runs are
    # aligned across chunks, chunk being a multiple of run)
    runs = lost[::run]
    grown = runs.copy()
    grown[:-1] |= runs[1:] & (np.arange(1, runs.size) * run % chunk == 0)
    grown[1:] |= runs[:-1] & (np.arange(1, runs.size) * run % chunk == 0)
    return st, np.repeat(grown, run)[:n_data]


def _ranges(flags: np.ndarray) -> list[list[int]]:
    """[start, end) index ranges where `flags` is True."""
    z = np.zeros(1, dtype=np.int8)
    e = np.flatnonzero(np.diff(np.concatenate((z, flags.astype(np.int8), z))))
    return [[int(a), int(b)] for a, b in zip(e[0::2], e[1::2], strict=True)]


def _timing_offsets(sums3: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Timing offset (Bob samples) maximising the data-aided correlation: per block the vertex
    of the parabola through c(d) = Re(S(d) conj(S(0))) at d = -1/2, 0, +1/2 (each block its own
    phase reference), then their weighted mean: a constant. Per-block values carry self-noise
    from the unknown neighbouring symbols (about 0.09 sample per 1600 disclosed symbols at
    SNR 0.4), far more than the pilot clock's slope error, so no slope is fitted here."""
    c = (sums3 * np.conj(sums3[:, 1:2])).real
    den = c[:, 0] - 2 * c[:, 1] + c[:, 2]
    ok = (counts >= 50) & (den < 0)
    if not ok.any():
        raise SyncError("too few disclosed symbols for the timing check")
    delta = 0.5 * (c[ok, 0] - c[ok, 2]) / (2 * den[ok])
    return np.full(c.shape[0], float(np.average(delta, weights=counts[ok])))


def _phase_line(y: np.ndarray, s0: np.ndarray, counts: np.ndarray, tblk: int) -> None:
    """Remove a phase linear in the symbol index, fitted in closed form (weighted least squares)
    to the phases of the per-block data-aided correlations sum y conj(x). It absorbs the carrier
    phase error left by the clock track's noise (2 pi (nu1 - nu_s) rad per sample of timing)."""
    ok = counts >= 50
    if ok.sum() < 3:
        return
    idx = np.flatnonzero(ok)
    ph = np.unwrap(np.angle(s0[ok]))
    coef = np.polyfit((idx + 0.5) * tblk, ph, 1, w=np.sqrt(counts[ok]))
    kernels.rotate_linear(y, 0.0, -float(coef[0]), 1.0)


def _cdot(a: np.ndarray, b: np.ndarray) -> complex:
    """sum conj(a) b without BLAS (a multithreaded BLAS spins its idle threads after each
    call, doubling the process's CPU time for nothing when its thread count is not limited)."""
    return complex(np.sum(a.conj() * b))


def _estimates(y: np.ndarray, x: np.ndarray, v_el: float | None, eta: float | None,
               detection: str) -> dict:
    """Closed-form gain, transmittance and excess noise from disclosed pairs (y in SNU, real
    gain after the phase rotation)."""
    t = float(_cdot(x, y).real / _cdot(x, x).real)
    resid = y - t * x
    var = float(np.mean(np.abs(resid) ** 2) / 2)  # per quadrature
    out = {"gain": t, "noise_var_snu": var, "snr": float(t * t * np.var(x) / (2 * var))}
    if eta is not None and v_el is not None:
        g2 = t * t if detection == "homodyne" else 2 * t * t  # eta T
        trans = g2 / eta
        out["transmittance"] = trans
        scale = g2 if detection == "homodyne" else g2 / 2
        out["excess_noise_snu"] = (var - 1.0 - v_el) / scale
    return out
