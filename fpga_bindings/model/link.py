"""Waveform-level model of the optical link: DAC -> laser/IQ modulator -> fibre -> LO and
heterodyne/homodyne detector -> ADC and down-converter. Implements `LinkPhysics`.

Units: quadratures in shot-noise units (SNU, vacuum variance 1), times in seconds of model time
(the DAC clock is the reference), frequencies in Hz, ADC samples in int16 codes (LSB).
The physics and its scaling are derived in docs/model.md; the per-sample loop is
`fpga_bindings.model.receiver.render`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numba
import numpy as np

from fpga_bindings.boards import BoardProfile, get_profile
from fpga_bindings.model import fibre
from fpga_bindings.model.faults import FaultSchedule
from fpga_bindings.model.genie import GroundTruth, SymbolGrid, ideal_receiver
from fpga_bindings.model.lasers import WienerPhase
from fpga_bindings.model.link_api import (
    AdcMode,
    AdcSettings,
    FrontEnd,
    LinkStatus,
    OpticalSwitch,
)
from fpga_bindings.model.normal import seed_state
from fpga_bindings.model.phase_steps import StepSource
from fpga_bindings.model.receiver import (
    KIND_DDC_HET,
    KIND_DDC_HOM,
    KIND_REAL_HET,
    KIND_REAL_HOM,
    render,
)
from fpga_bindings.model.resample import HALF, TABLE, interp_uniform, pad

DAC_CODE_FULL_SCALE = 32768.0  # int16 code of a full-scale DAC sample (2^15)


@dataclass(frozen=True)
class LinkConfig:
    """Every physical setting of the link model (units in the field names or comments)."""

    board: str = "rfsoc4x2"
    # transmitter
    dac_fs_snu: float = 256.0  # quadrature amplitude (SNU, per player-sample mode) at the
    #                            modulator output for a DAC code of 2^15 (full scale), before
    #                            the VOA: 256 SNU = 16384 photons per 2 ns sample, ~1 uW
    tx_linewidth_hz: float = 50.0e3  # transmitter laser Lorentzian FWHM, Hz
    wavelength_m: float = 1550.0e-9
    # fibre
    distance_km: float = 25.0
    loss_db_per_km: float = 0.2
    group_index: float = 1.4682  # SMF-28 at 1550 nm
    xi: float = 0.01  # excess noise referred to the channel input, SNU
    # receiver
    detection: str = "heterodyne"  # "heterodyne" (RF heterodyne) or "homodyne"
    eta: float = 0.6  # detector efficiency
    v_el: float = 0.01  # electronic noise, SNU
    lo_linewidth_hz: float = 50.0e3  # LO laser Lorentzian FWHM, Hz
    if_hz: float = 1.0e9  # nominal heterodyne intermediate frequency (signal - LO), Hz
    lo_offset_hz: float = 1.0e6  # beat frequency error against if_hz at t = 0, Hz
    lo_drift_hz_per_s: float = 0.0  # linear drift of the beat frequency, Hz/s
    rx_gain_lsb: float = 1024.0  # shot-noise rms per output quadrature, LSB (default decimation)
    # ADC clock
    clock_ppm: float = 0.0  # ADC clock offset against the DAC clock, ppm (+: ADC faster)
    adc_jitter_s: float = 0.0  # rms white jitter of the output sampling instants, s
    # converter rates (None: the board profile's defaults)
    dac_sps: float | None = None  # DAC converter rate, samples/s
    interpolation: int | None = None  # DAC interpolation: player rate = dac_sps / interpolation
    adc_sps: float | None = None  # ADC converter rate (nominal, DAC clock), samples/s
    # simulation
    phase_grid: int = 16  # output samples between exact points of the phase trajectory (the
    #                       band-limited bridge fills them in; 1: no bridge, the sampled Wiener
    #                       phase with aliased skirts)
    seed: int | None = None

    def __post_init__(self) -> None:
        prof = get_profile(self.board)
        checks = [
            (self.dac_fs_snu > 0, "dac_fs_snu must be > 0"),
            (self.tx_linewidth_hz >= 0 and self.lo_linewidth_hz >= 0, "linewidths must be >= 0"),
            (self.distance_km >= 0, "distance_km must be >= 0"),
            (self.loss_db_per_km >= 0, "loss_db_per_km must be >= 0"),
            (self.group_index >= 1, "group_index must be >= 1"),
            (self.xi >= 0, "xi must be >= 0"),
            (self.detection in ("heterodyne", "homodyne"),
             "detection must be 'heterodyne' or 'homodyne'"),
            (0 < self.eta <= 1, "eta must be in (0, 1]"),
            (self.v_el >= 0, "v_el must be >= 0"),
            (self.rx_gain_lsb > 0, "rx_gain_lsb must be > 0"),
            (abs(self.clock_ppm) < 1000, "|clock_ppm| must be < 1000"),
            (self.adc_jitter_s >= 0, "adc_jitter_s must be >= 0"),
            (self.phase_grid >= 1, "phase_grid must be >= 1"),
            (self.wavelength_m > 0, "wavelength_m must be > 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"LinkConfig: {msg}")
        if self.interpolation is not None:
            prof.check_interpolation(self.interpolation)
        for rate, limit, name in ((self.dac_sps, prof.dac_max_sps, "dac_sps"),
                                  (self.adc_sps, prof.adc_max_sps, "adc_sps")):
            if rate is not None and not 0 < rate <= limit:
                raise ValueError(f"LinkConfig: {name} must be in (0, {limit:g}] for {prof.name}")
        if abs(self.if_hz) >= 0.5 * self.adc_rate_nominal:
            raise ValueError("LinkConfig: |if_hz| must be below half the ADC rate")

    @property
    def profile(self) -> BoardProfile:
        return get_profile(self.board)

    @property
    def player_sps(self) -> float:
        """Complex sample rate of the DAC player, samples/s (DAC clock)."""
        prof = self.profile
        return ((self.dac_sps or prof.default_dac_sps)
                / (self.interpolation or prof.default_interpolation))

    @property
    def adc_rate_nominal(self) -> float:
        return self.adc_sps or self.profile.default_adc_sps

    @property
    def adc_rate_true(self) -> float:
        """ADC converter rate on the DAC clock's time axis, samples/s (includes clock_ppm)."""
        return self.adc_rate_nominal * (1.0 + 1e-6 * self.clock_ppm)

    @property
    def fibre_transmittance(self) -> float:
        return fibre.transmittance(self.distance_km, self.loss_db_per_km)

    @property
    def delay_s(self) -> float:
        return fibre.delay_s(self.distance_km, self.group_index)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(player_sps=self.player_sps, adc_rate_nominal=self.adc_rate_nominal,
                 fibre_transmittance=self.fibre_transmittance, delay_s=self.delay_s)
        return d


@dataclass
class _Player:
    """The loaded DAC waveform as the field at the modulator output (SNU per player sample)."""

    n: int  # waveform length, player samples
    fr: np.ndarray  # padded real part, float32
    fi: np.ndarray  # padded imaginary part, float32
    cyclic: bool
    start_s: float  # model time at which the player started
    mean_abs2: float  # mean |field|^2, SNU^2
    remote_tx_phase: np.ndarray | None = None  # two-board topology: the field came through
    #   the fibre with Alice's VOA and laser phase applied; her laser phase (ground truth)

    def field(self) -> np.ndarray:
        """The unpadded field, complex64 (a new array)."""
        out = np.empty(self.n, np.complex64)
        out.real = self.fr[HALF:HALF + self.n]
        out.imag = self.fi[HALF:HALF + self.n]
        return out


def _make_player(field: np.ndarray, cyclic: bool, start_s: float,
                 remote_tx_phase: np.ndarray | None = None) -> _Player:
    fr = pad(field.real, cyclic, HALF, np.float32)
    fi = pad(field.imag, cyclic, HALF, np.float32)
    power = float(np.mean(fr[HALF:len(fr) - HALF] ** 2, dtype=np.float64)
                  + np.mean(fi[HALF:len(fi) - HALF] ** 2, dtype=np.float64))
    return _Player(len(field), fr, fi, bool(cyclic), start_s, power, remote_tx_phase)


@numba.njit(cache=True, nogil=True)
def _dac_field(iq: np.ndarray, drop: int, scale: np.float32, fr: np.ndarray,
               fi: np.ndarray) -> float:
    """The DAC's field (SNU) into fr, fi[HALF:HALF + n] (float32): each int16 code truncated
    to its top 16 - drop bits (arithmetic shift), times `scale` in float32. Returns the sum of
    |field|^2 (each square in float32, summed in float64)."""
    total = 0.0
    for k in range(iq.shape[0]):
        re = np.float32((iq[k, 0] >> drop) << drop) * scale
        im = np.float32((iq[k, 1] >> drop) << drop) * scale
        fr[HALF + k] = re
        fi[HALF + k] = im
        total += np.float64(re * re) + np.float64(im * im)
    return total


class _Prefetch:
    """Calls fn(*args) for each args in order, the next one on a worker thread while the caller
    works on the current result (numpy's generators release the GIL while they fill arrays).
    The calls, and so the random streams they draw, are exactly those of a plain loop."""

    def __init__(self, fn, arg_list: list[tuple]) -> None:
        self._fn = fn
        self._args = list(arg_list)
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending = self._pool.submit(fn, *self._args.pop(0)) if self._args else None

    def next(self):
        result = self._pending.result()
        self._pending = self._pool.submit(self._fn, *self._args.pop(0)) if self._args else None
        return result

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class LinkModel:
    """Loopback topology: this board's DAC player through the link to its own ADC capture;
    with `attach_fibre`, the two-board topology's receiving end (fibre_transport.py)."""

    def __init__(self, config: LinkConfig | None = None):
        self.config = config or LinkConfig()
        seeds = np.random.SeedSequence(self.config.seed).spawn(5)
        self._noise_state = seed_state(seeds[0])  # detection noise, drawn inside `render`
        self._rng_jitter = np.random.Generator(np.random.SFC64(seeds[1]))
        self._tx_phase = WienerPhase(self.config.tx_linewidth_hz,
                                     np.random.Generator(np.random.SFC64(seeds[2])))
        self._lo_phase = WienerPhase(self.config.lo_linewidth_hz,
                                     np.random.Generator(np.random.SFC64(seeds[3])))
        self._steps = StepSource(np.random.Generator(np.random.SFC64(seeds[4])))
        self._now = 0.0
        self._player: _Player | None = None
        self._loaded: _Player | None = None  # the last player made by load_dac
        self._streams_open = 0  # captures started and not finished or closed
        self._frontend = FrontEnd()
        self._faults = FaultSchedule()
        self._attack = None
        self._fibre = None
        self._symbol_grid: SymbolGrid | None = None
        self._truth: GroundTruth | None = None
        self._status = LinkStatus(lo_locked=True, beat_hz=self._beat_hz(0.0),
                                  monitor_power_w=0.0, clip_count=0, overflow=False,
                                  trigger_sample=0)

    # ---- LinkPhysics ---------------------------------------------------------------------
    def load_dac(self, iq: np.ndarray, cyclic: bool) -> None:
        """Load and start the DAC player now: int16 (n, 2) I/Q codes at the player rate.

        The DAC keeps the profile's `dac_bits` most significant bits (truncation), and the IQ
        modulator maps code 2^15 to `dac_fs_snu` SNU of quadrature amplitude.
        """
        iq = np.asarray(iq)
        if iq.dtype != np.int16 or iq.ndim != 2 or iq.shape[1] != 2 or iq.shape[0] == 0:
            raise ValueError("load_dac: need a non-empty int16 array of shape (n, 2)")
        n = len(iq)
        old = self._player
        if (old is not None and old is self._loaded and old.n == n
                and self._streams_open == 0):  # no capture reads the previous waveform
            fr, fi = old.fr, old.fi  # its buffers: no fresh 8 bytes per sample (page faults)
        else:
            fr = np.empty(n + 2 * HALF, np.float32)
            fi = np.empty(n + 2 * HALF, np.float32)
        sum_abs2 = _dac_field(iq, 16 - self.config.profile.dac_bits,
                              np.float32(self.config.dac_fs_snu / DAC_CODE_FULL_SCALE), fr, fi)
        for part in (fr, fi):  # the halo: wrapped (cyclic) or zeros, as `resample.pad`
            if n < HALF:
                part[:] = pad(part[HALF:HALF + n], cyclic, HALF, np.float32)
            else:
                part[:HALF] = part[n:n + HALF] if cyclic else 0.0
                part[HALF + n:] = part[HALF:2 * HALF] if cyclic else 0.0
        self._player = self._loaded = _Player(n, fr, fi, bool(cyclic), self._now, sum_abs2 / n)

    def set_frontend(self, frontend: FrontEnd) -> None:
        if not frontend.voa_db >= 0.0:
            raise ValueError(f"VOA attenuation must be >= 0 dB, got {frontend.voa_db}")
        self._frontend = frontend

    def capture(self, settings: AdcSettings, chunk: int = 1 << 20) -> Iterator[np.ndarray]:
        """Trigger a capture now; yield int16 chunks ((m, 2) DDC, (m,) REAL_IF) in order.

        Model time advances by the capture's duration as the chunks are produced. Status and
        ground truth are updated when the last chunk has been produced.
        """
        plan = self._plan(settings, chunk)
        return self._stream(plan)

    def status(self) -> LinkStatus:
        return self._status

    def inject(self, fault: str, **params: float) -> None:
        """Inject a fault now (see `fpga_bindings.model.faults` for kinds and parameters)."""
        self._faults.add(fault, self._now, **params)

    def clear_faults(self) -> None:
        self._faults.clear(self._now)

    # ---- extensions ------------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        """Let model time pass without capturing (e.g. a trigger delay), seconds."""
        if not seconds >= 0.0:
            raise ValueError("advance: seconds must be >= 0")
        self._now += float(seconds)

    @property
    def now_s(self) -> float:
        return self._now

    def attach_fibre(self, receiver) -> None:
        """Two-board topology: take the signal from a `fibre_transport.FibreReceiver` (Alice in
        another process) instead of this board's DAC. None detaches."""
        self._fibre = receiver
        self._player = None

    def set_attack(self, attack) -> None:
        """Install an attack on the channel (see `fpga_bindings.model.attacks`): from the next
        capture on, every capture sees a freshly attacked copy of the field at the channel
        input (after the VOA). None removes it."""
        self._attack = attack

    def request_ground_truth(self, grid: SymbolGrid | None) -> None:
        """Ask the next captures to compute the ideal receiver's quadratures for this symbol
        grid (test/simulation only; costs 12 bytes of memory per captured sample)."""
        self._symbol_grid = grid

    def ground_truth(self) -> GroundTruth:
        """Ground truth of the last capture (phase and clock trajectories, genie symbols)."""
        if self._truth is None:
            raise RuntimeError("no capture has completed yet")
        return self._truth

    # ---- internals -------------------------------------------------------------------------
    def _remote(self) -> bool:
        return self._fibre is not None

    def _voa_power(self) -> float:
        """VOA power transmission applied here (1 when Alice applied hers before the fibre)."""
        return 1.0 if self._remote() else 10.0 ** (-self._frontend.voa_db / 10.0)

    def _pull_fibre(self, t_trig: float, n: int, fs_out: float) -> None:
        """Receive the field the capture needs (blocking) and make it the signal source."""
        c = self.config
        t0 = self._fibre.wait_start()
        u_end = (t_trig + n / fs_out - c.delay_s - t0) * c.player_sps
        self._fibre.wait_until(math.ceil(u_end) + HALF + 2)
        field, tx_phase = self._fibre.field()
        self._player = (_make_player(field, False, t0, tx_phase) if len(field) else None)

    def _beat_hz(self, t: float) -> float:
        c = self.config
        return c.if_hz + c.lo_offset_hz + c.lo_drift_hz_per_s * t + self._faults.lo_freq_hz(t)

    def _plan(self, settings: AdcSettings, chunk: int) -> dict:
        c = self.config
        prof = c.profile
        if not isinstance(settings.n_samples, int | np.integer) or settings.n_samples <= 0:
            raise ValueError("capture: n_samples must be a positive integer")
        homodyne = c.detection == "homodyne"
        if settings.mode == AdcMode.DDC:
            prof.check_decimation(settings.decimation)
            decim = settings.decimation
            if abs(settings.nco_hz) >= 0.5 * c.adc_rate_nominal:
                raise ValueError("capture: |nco_hz| must be below half the ADC rate")
            if homodyne and settings.nco_hz != 0.0:
                raise ValueError("capture: homodyne detection gives a real baseband signal; "
                                 "the model needs the NCO at 0 Hz")
            kind = KIND_DDC_HOM if homodyne else KIND_DDC_HET
            nco = settings.nco_hz
            # in-band share of the converter's quantisation noise (uniform, step 2^(16-bits))
            qvar = (2.0 ** (16 - prof.adc_bits)) ** 2 / 12.0 / decim
            qstep = 1.0
        else:
            decim = 1
            kind = KIND_REAL_HOM if homodyne else KIND_REAL_HET
            nco = 0.0
            qvar = 0.0
            qstep = 2.0 ** (16 - prof.adc_bits)
        grid = c.phase_grid
        chunk = max(grid, int(chunk) - int(chunk) % grid)
        fs_out = c.adc_rate_true / decim
        return dict(n=int(settings.n_samples), kind=kind, decim=decim, nco=nco, qvar=qvar,
                    qstep=qstep, chunk=chunk, fs_out=fs_out, settings=settings,
                    gain_lsb=c.rx_gain_lsb * math.sqrt(prof.default_decimation / decim))

    def _lit(self) -> bool:
        """The signal can reach the detector (front end and player; faults aside)."""
        fe = self._frontend
        return (fe.lo_on and (fe.laser_on or self._remote())
                and fe.switch == OpticalSwitch.SIGNAL and self._player is not None)

    def _signal_gain(self, plan: dict, t: float) -> float:
        """sqrt(eta T k 10^(-VOA/10)) at time t: field SNU at the channel input -> output SNU
        (k = 1/2 heterodyne, 1 homodyne); 0 while the signal cannot reach the detector."""
        c = self.config
        if not self._lit():
            return 0.0
        k = 1.0 if c.detection == "homodyne" else 0.5
        t_tot = fibre.transmittance(c.distance_km, c.loss_db_per_km,
                                    self._faults.effects(t).extra_loss_db)
        return math.sqrt(c.eta * t_tot * k * self._voa_power())

    def _segment_params(self, plan: dict, t: float) -> tuple[float, float, float]:
        """(amp: codes per SNU of field, noise sigma: codes, noise sigma: SNU) at time t."""
        c = self.config
        fe = self._frontend
        eff = self._faults.effects(t)
        k = 1.0 if c.detection == "homodyne" else 0.5
        t_tot = fibre.transmittance(c.distance_km, c.loss_db_per_km, eff.extra_loss_db)
        lo_light = fe.lo_on and fe.switch != OpticalSwitch.LO_OFF
        n0 = c.v_el + (1.0 if lo_light else 0.0)
        if lo_light and fe.switch == OpticalSwitch.SIGNAL:
            n0 += c.eta * t_tot * k * (c.xi + eff.extra_xi)
        rho = c.player_sps / plan["fs_out"]
        g = plan["gain_lsb"] * eff.gain
        amp = g * math.sqrt(rho) * self._signal_gain(plan, t)
        sigma = math.sqrt(g * g * n0 + plan["qvar"])
        return amp, sigma, math.sqrt(n0)

    def _phase_at(self, t: np.ndarray, plan: dict) -> np.ndarray:
        """Total beat phase at times t (after the down-converter's NCO in DDC mode), rad."""
        c = self.config
        det = 2.0 * np.pi * ((c.if_hz + c.lo_offset_hz) * t + 0.5 * c.lo_drift_hz_per_s * t * t)
        if plan["nco"]:
            det -= 2.0 * np.pi * plan["nco"] * (1.0 + 1e-6 * c.clock_ppm) * t
        tx = 0.0 if self._remote() else self._tx_phase.sample(t)  # remote: in the field
        return det + tx - self._lo_phase.sample(t) + self._faults.lo_phase(t)

    def _segments(self, plan: dict, t0: float, m: int) -> tuple[np.ndarray, ...]:
        """Fault windows inside a chunk: (end index, amp, sigma codes, sigma SNU) per segment."""
        fs_out = plan["fs_out"]
        cuts = [t0, *self._faults.boundaries(t0, t0 + m / fs_out)]
        ends = [min(m, max(0, math.ceil((tb - t0) * fs_out))) for tb in cuts[1:]] + [m]
        params = np.array([self._segment_params(plan, tb) for tb in cuts])
        return np.array(ends, dtype=np.int64), params[:, 0], params[:, 1], params[:, 2]

    def _stream(self, plan: dict) -> Iterator[np.ndarray]:
        self._streams_open += 1
        try:
            yield from self._render_capture(plan)
        finally:
            self._streams_open -= 1

    def _render_capture(self, plan: dict) -> Iterator[np.ndarray]:
        c = self.config
        n, kind, grid, fs_out = plan["n"], plan["kind"], c.phase_grid, plan["fs_out"]
        dt = 1.0 / fs_out
        t_trig = self._now
        fs_tx = c.player_sps
        du = fs_tx * dt
        if self._remote():
            self._pull_fibre(t_trig, n, fs_out)
        player = self._player
        if player is not None:
            u0 = (t_trig - c.delay_s - player.start_s) * fs_tx
            fr, fi, n_field, cyclic = player.fr, player.fi, player.n, player.cyclic
            if self._attack is not None:  # Eve acts on the field at the channel input
                a_voa = math.sqrt(self._voa_power())
                field = self._attack.apply(player.field() * a_voa, cyclic) / a_voa
                fr = pad(field.real, cyclic, HALF, np.float32)
                fi = pad(field.imag, cyclic, HALF, np.float32)
        else:
            u0 = 0.0
            fr = fi = np.zeros(2 * HALF + 1, np.float32)
            n_field, cyclic = 1, False
        ncol = 2 if kind in (KIND_DDC_HET, KIND_DDC_HOM) else 1
        want_truth = self._symbol_grid is not None and ncol == 2 and player is not None
        zrot_all = np.empty(n if want_truth else 0, np.complex64)
        fine_all = np.empty(n if want_truth else 0, np.float32)
        no_z = np.empty(0, np.complex64)
        no_f = np.empty(0, np.float32)
        linewidth = c.lo_linewidth_hz + (0.0 if self._remote() else c.tx_linewidth_hz)
        pn_sd = math.sqrt(2.0 * math.pi * linewidth * dt)
        jit_phase = 2.0 * np.pi * (c.if_hz + c.lo_offset_hz) * c.adc_jitter_s
        s_buf_r = np.empty(min(n, plan["chunk"]), np.float32)
        s_buf_i = np.empty_like(s_buf_r)
        psi_parts: list[np.ndarray] = []
        recent, recent_first, have = np.empty(0), 0, 0
        clips = 0
        # the phase-noise bridge acts on the signal only: no steps for a dark record
        bridge = linewidth > 0 and (want_truth or self._lit())
        draws = _Prefetch(self._draw_chunk, [(min(plan["chunk"], n - s), bridge)
                                             for s in range(0, n, plan["chunk"])])
        try:  # a capture abandoned part-way still stops the prefetching thread
            for start in range(0, n, plan["chunk"]):
                m = min(plan["chunk"], n - start)
                g0 = start // grid
                need = g0 + m // grid + 2  # grid points g0 .. need-1 cover the chunk
                new = self._phase_at(t_trig + grid * dt * np.arange(have, need), plan)
                psi_parts.append(new)
                recent = np.concatenate([recent[g0 - recent_first:], new])
                recent_first, have = g0, need
                seg_end, seg_amp, seg_sigma, seg_zsnu = self._segments(plan, t_trig + start * dt, m)
                jitter, pn = draws.next()
                s_r, s_i = s_buf_r[:m], s_buf_i[:m]
                if seg_amp.any():
                    interp_uniform(fr, fi, HALF, n_field, cyclic, u0 + start * du, du, jitter,
                                   fs_tx * c.adc_jitter_s, TABLE, s_r, s_i)
                else:
                    s_r[:] = 0.0
                    s_i[:] = 0.0
                out = np.empty((m, ncol), np.int16)
                clips += render(s_r, s_i, recent, grid, seg_end, seg_amp, seg_sigma, seg_zsnu,
                                self._noise_state, jitter, jit_phase, pn, pn_sd, kind,
                                plan["qstep"], out,
                                zrot_all[start:start + m] if want_truth else no_z,
                                fine_all[start:start + m] if want_truth else no_f)
                # the phase trajectory is known up to grid point need-1: time may not restart
                # earlier
                self._now = t_trig + max(start + m, grid * (need - 1)) * dt
                yield out if ncol == 2 else out[:, 0]
        finally:
            draws.close()
        self._finish(plan, t_trig, u0, du, np.concatenate(psi_parts), clips,
                     zrot_all if want_truth else None, (fr, fi, n_field),
                     fine_all if want_truth else None)

    def _draw_chunk(self, m: int, phase_noise: bool) -> tuple[np.ndarray, np.ndarray]:
        """One chunk's simulation noise apart from the detection noise (drawn by `render`):
        clock jitter (m,) N(0, 1) (empty without jitter), the phase bridge's band-limited steps
        (`phase_steps.StepSource`)."""
        c = self.config
        jitter = self._rng_jitter.standard_normal(m) if c.adc_jitter_s > 0 else np.empty(0)
        pn = (self._steps.draw(-(-m // c.phase_grid) * c.phase_grid)
              if phase_noise else np.empty(0, np.float32))
        return jitter, pn

    def _finish(self, plan: dict, t_trig: float, u0: float, du: float, psi: np.ndarray,
                clips: int, zrot: np.ndarray | None,
                emitted: tuple[np.ndarray, np.ndarray, int], fine: np.ndarray | None) -> None:
        c = self.config
        fe = self._frontend
        t_end = self._now
        power = 0.0
        if self._player is not None and (fe.laser_on or self._remote()):
            t_tot = fibre.transmittance(c.distance_km, c.loss_db_per_km,
                                        self._faults.effects(t_end).extra_loss_db)
            photons_per_sample = self._player.mean_abs2 / 4.0 * self._voa_power()
            power = (photons_per_sample * c.player_sps * t_tot
                     * fibre.photon_energy_j(c.wavelength_m))
        self._status = LinkStatus(
            lo_locked=self._faults.lo_locked(t_end) and fe.lo_on,
            beat_hz=self._beat_hz(t_end),
            monitor_power_w=power,
            clip_count=int(clips),
            overflow=clips > 0,
            trigger_sample=round(t_trig * c.adc_rate_true),
        )
        sample_index = c.phase_grid * np.arange(len(psi), dtype=np.int64)
        tx_position = u0 + du * sample_index
        fr, fi, n_field = emitted
        remote_phase = None if self._player is None else self._player.remote_tx_phase
        if remote_phase is not None:  # Alice's laser phase travelled inside the field
            idx = np.arange(len(remote_phase))
            psi = psi + np.interp(tx_position, idx, remote_phase)
            if zrot is not None:  # the ideal receiver removes it too
                tx_fine = np.interp(u0 + du * np.arange(len(zrot)), idx, remote_phase)
                zrot = zrot * np.exp(-1j * tx_fine.astype(np.float32))
                rot = np.exp(-1j * remote_phase.astype(np.float32))
                field = (fr[HALF:HALF + n_field] + 1j * fi[HALF:HALF + n_field]) * rot
                fr = pad(field.real, False, HALF, np.float32)
                fi = pad(field.imag, False, HALF, np.float32)
        genie = None
        if zrot is not None:
            dt = 1.0 / plan["fs_out"]

            def gain(pos: np.ndarray) -> np.ndarray:
                t = t_trig + pos * dt
                cuts = self._faults.boundaries(float(t.min()), float(t.max()))
                vals = np.array([self._signal_gain(plan, tb)
                                 for tb in [float(t.min()), *cuts]])
                return vals[np.searchsorted(np.array(cuts), t, side="right")]

            genie = ideal_receiver(
                grid=self._symbol_grid, fr=fr, fi=fi, halo=HALF, n_field=n_field,
                cyclic=self._player.cyclic,
                zrot=zrot, u0=u0, du=du, psi_index=sample_index, psi=psi,
                detection=c.detection, signal_gain=gain)
        self._truth = GroundTruth(
            sample_index=sample_index, phase_rad=psi, tx_position=tx_position,
            u0=u0, du=du, fs_out=plan["fs_out"], trigger_time_s=t_trig, genie=genie,
            bridge=fine, remote_tx_phase=remote_phase)
