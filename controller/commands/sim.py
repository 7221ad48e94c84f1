"""`cvqkd sim capture`: run a transmitter waveform through the link model and write a capture
directory (the format is the contract in docs/model.md, "Capture directory")."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from controller.cli import UsageError
from fpga_bindings.model.genie import SymbolGrid
from fpga_bindings.model.link import LinkConfig, LinkModel
from fpga_bindings.model.link_api import AdcMode, AdcSettings, FrontEnd, OpticalSwitch
from fpga_bindings.model.simple_tx import Waveform, required_voa_db, simple_waveform

FORMAT_VERSION = 1
GUARD_S = 2.0e-6  # capture starts this long before the first light of the waveform arrives


def register(subparsers: argparse._SubParsersAction) -> None:
    sim = subparsers.add_parser("sim", help="simulations on the link model")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True, parser_class=type(sim))
    p = sim_sub.add_parser("capture", help="simulate one capture and its calibration records",
                           description=__doc__)
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="output directory (created; must be empty if it exists)")
    p.add_argument("--board", default="rfsoc4x2", help="board profile (default %(default)s)")
    p.add_argument("--distance-km", type=float, default=25.0, metavar="L",
                   help="fibre length, km (default %(default)s)")
    p.add_argument("--loss-db-per-km", type=float, default=0.2, metavar="A",
                   help="fibre attenuation, dB/km (default %(default)s)")
    p.add_argument("--xi", type=float, default=0.01, metavar="XI",
                   help="excess noise referred to the channel input, SNU (default %(default)s)")
    p.add_argument("--va", type=float, default=4.0, metavar="V",
                   help="modulation variance per quadrature at the channel input, SNU")
    p.add_argument("--eta", type=float, default=0.6, metavar="E", help="detector efficiency")
    p.add_argument("--vel", type=float, default=0.01, metavar="VEL",
                   help="electronic noise, SNU (default %(default)s)")
    p.add_argument("--linewidth-hz", type=float, default=50e3, metavar="HZ",
                   help="linewidth of EACH laser (transmitter and LO), Hz (default %(default)s)")
    p.add_argument("--if-hz", type=float, default=None, metavar="HZ",
                   help="nominal heterodyne IF; the NCO is set to it (default 1 GHz "
                        "heterodyne, 0 homodyne)")
    p.add_argument("--lo-offset-hz", type=float, default=1e6, metavar="HZ",
                   help="beat frequency error against the nominal IF, Hz (default %(default)s)")
    p.add_argument("--lo-drift-hz-per-s", type=float, default=0.0, metavar="R",
                   help="linear drift of the beat frequency, Hz/s")
    p.add_argument("--clock-ppm", type=float, default=0.0, metavar="P",
                   help="ADC clock offset against the DAC clock, ppm")
    p.add_argument("--jitter-s", type=float, default=0.0, metavar="S",
                   help="rms ADC sampling jitter, s")
    p.add_argument("--waveform", choices=("dsp", "simple"), default=None,
                   help="transmitter waveform: dsp.transmitter's frame (default, heterodyne) "
                        "or the model's simple RRC + one pilot (default for homodyne)")
    p.add_argument("--symbols", type=int, default=100_000, metavar="N",
                   help="data symbols (default %(default)s)")
    p.add_argument("--symbol-rate", type=float, default=100e6, metavar="HZ",
                   help="symbols/s; the player rate must be an integer multiple")
    p.add_argument("--rolloff", type=float, default=0.2, help="RRC roll-off (default 0.2)")
    p.add_argument("--pilot-hz", type=float, default=100e6, metavar="HZ",
                   help="--waveform simple: pilot offset from the carrier, Hz")
    p.add_argument("--pilot-snu", type=float, default=4.0, metavar="A",
                   help="--waveform simple: pilot amplitude per player sample, SNU")
    p.add_argument("--detection", choices=("heterodyne", "homodyne"), default="heterodyne")
    p.add_argument("--decimation", type=int, default=None, metavar="D",
                   help="ADC down-converter decimation: capture rate = ADC rate / D "
                        "(default: the board's, 8: 500 MS/s on the RFSoC 4x2)")
    p.add_argument("--interpolation", type=int, default=None, metavar="I",
                   help="DAC interpolation: player rate = DAC rate / I (default: the board's)")
    p.add_argument("--model-oversample", type=int, default=1, metavar="K",
                   help="the model renders the down-converter's output at K times the capture "
                        "rate (decimation D/K) and a software stage decimates by K: the laser "
                        "phase-noise skirts outside the pass band are then filtered as by the "
                        "board's DDC instead of aliased (default 1; 4 for excess-noise studies)")
    p.add_argument("--layout", choices=("default", "edge"), default="default",
                   help="--waveform dsp: frame layout; 'edge' puts the data band and the phase "
                        "pilot at opposite edges of the pass band, with the pilot's power "
                        "from --planned-linewidth-hz (dsp.layout.edge_layout)")
    p.add_argument("--planned-linewidth-hz", type=float, default=None, metavar="HZ",
                   help="--layout edge: combined linewidth the pilot power is planned for "
                        "(default: that of the simulation, twice --linewidth-hz)")
    p.add_argument("--calibration-samples", type=int, default=None, metavar="N",
                   help="samples per calibration record (default: as many as the capture)")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="seed of every simulated random draw (default: fresh, recorded)")
    p.set_defaults(func=run_capture)


def _config(args: argparse.Namespace, seed: int) -> LinkConfig:
    if_hz = args.if_hz if args.if_hz is not None else (
        1.0e9 if args.detection == "heterodyne" else 0.0)
    return LinkConfig(
        board=args.board, distance_km=args.distance_km, loss_db_per_km=args.loss_db_per_km,
        xi=args.xi, eta=args.eta, v_el=args.vel, tx_linewidth_hz=args.linewidth_hz,
        lo_linewidth_hz=args.linewidth_hz, if_hz=if_hz, lo_offset_hz=args.lo_offset_hz,
        lo_drift_hz_per_s=args.lo_drift_hz_per_s, clock_ppm=args.clock_ppm,
        adc_jitter_s=args.jitter_s, detection=args.detection,
        interpolation=getattr(args, "interpolation", None), seed=seed)


def build_waveform(args: argparse.Namespace, cfg: LinkConfig, seed: int) -> Waveform:
    """The transmitter's waveform: `dsp.transmitter` (default for heterodyne) or the model's
    simple stand-in (`--waveform simple`, default for homodyne: no subcarrier)."""
    sps_f = cfg.player_sps / args.symbol_rate
    sps = round(sps_f)
    if sps < 2 or abs(sps_f - sps) > 1e-9 * sps_f:
        raise UsageError(f"--symbol-rate: the player rate {cfg.player_sps:g} S/s must be an "
                         f"integer multiple (>= 2) of the symbol rate")
    kind = args.waveform or ("dsp" if args.detection == "heterodyne" else "simple")
    if kind == "simple" and getattr(args, "layout", "default") != "default":
        raise UsageError("--layout applies to --waveform dsp only")
    if kind == "simple":
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        return simple_waveform(args.symbols, sps, args.va, cfg.player_sps, rng,
                               rolloff=args.rolloff, pilot_hz=args.pilot_hz,
                               pilot_snu=args.pilot_snu, dac_bits=cfg.profile.dac_bits)
    if args.detection != "heterodyne":
        raise UsageError("--waveform dsp puts the data on a subcarrier: heterodyne only")
    from dsp.filters import rrc_taps
    from dsp.transmitter import TxConfig, build_frame

    if getattr(args, "layout", "default") == "edge":
        from dsp.layout import edge_layout

        planned = args.planned_linewidth_hz or 2 * args.linewidth_hz
        try:
            tx = replace(edge_layout(cfg.player_sps, planned, symbol_rate_hz=args.symbol_rate,
                                     rolloff=args.rolloff, v_a=args.va,
                                     transmittance_eta=cfg.fibre_transmittance * cfg.eta,
                                     v_el=cfg.v_el), dac_bits=cfg.profile.dac_bits)
        except ValueError as exc:
            raise UsageError(f"--layout edge: {exc}") from None
    else:
        tx = TxConfig(sample_rate_hz=cfg.player_sps, symbol_rate_hz=args.symbol_rate,
                      rolloff=args.rolloff, v_a=args.va, dac_bits=cfg.profile.dac_bits)
    # simulation only: the ChaCha20 key is derived from the seed so that runs are reproducible
    key = hashlib.sha256(b"cvqkd sim capture " + str(seed).encode()).digest()
    frame = build_frame(tx, args.symbols, key=key, stream_id=0)
    meta = frame.meta
    grid = SymbolGrid(rrc_taps(sps, tx.rolloff, tx.half_span), sps,
                      meta["data_start_symbol"] * sps, args.symbols,
                      subcarrier=meta["signal_offset_hz"] / cfg.player_sps)
    params = {"kind": "dsp.transmitter", **meta}
    return Waveform(frame.iq_int16, frame.symbols, grid, params, meta["quad_per_lsb"])


def _pilots(wf: Waveform) -> list[dict]:
    """Pilot tones of the waveform: offset from the carrier (Hz), amplitude (SNU per sample)."""
    p = wf.params
    if p["kind"] == "simple-rrc-gaussian-pilot":
        return [{"freq_hz": p["pilot_hz"], "amplitude_snu": p["pilot_snu"]}]
    return [{"freq_hz": q["freq_hz"], "amplitude_snu": q["amplitude"]} for q in p["pilots"]]


def _record(model: LinkModel, settings: AdcSettings, path: Path, oversample: int = 1) -> None:
    """Stream one capture into an .npy file without holding it in memory. With oversample K > 1
    (DDC mode) the model renders at decimation D/K into a temporary file and
    `dsp.ddc.decimate_iq` (the DDC's filter: flat to 0.4, 100 dB from 0.6 of the output rate)
    brings it to D; the result starts (L - 1) / 2 model samples (L filter taps) later."""
    if oversample > 1:
        from dsp.ddc import decimate_iq, lowpass

        taps = lowpass(oversample, atten_db=100.0).size
        fine = replace(settings, n_samples=settings.n_samples * oversample + taps - 1,
                       decimation=settings.decimation // oversample)
        tmp = path.with_name(path.stem + ".model.npy")
        _record(model, fine, tmp)
        np.save(path, decimate_iq(np.load(tmp, mmap_mode="r"), oversample),
                allow_pickle=False)
        tmp.unlink()
        return
    shape = (settings.n_samples, 2) if settings.mode == AdcMode.DDC else (settings.n_samples,)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.int16, shape=shape)
    pos = 0
    for chunk in model.capture(settings):
        out[pos:pos + len(chunk)] = chunk
        pos += len(chunk)
    out.flush()
    del out


def run_capture(args: argparse.Namespace) -> int:
    for name in ("symbols", "calibration_samples"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
    if args.symbol_rate <= 0:
        raise UsageError("--symbol-rate must be > 0")
    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out}: exists and is not an empty directory")
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(8), "little") >> 1
    cfg = _config(args, seed)
    wf = build_waveform(args, cfg, seed)
    voa_db = required_voa_db(wf.quad_per_lsb, cfg.dac_fs_snu)
    if voa_db < 0:
        raise UsageError(f"the waveform needs {-voa_db:.1f} dB of gain after the modulator: "
                         "lower --va or the pilot power")
    prof = cfg.profile
    decim = args.decimation or prof.default_decimation
    try:
        prof.check_decimation(decim)
    except ValueError as exc:
        raise UsageError(f"--decimation: {exc}") from None
    over = args.model_oversample
    if over < 1 or decim % over or (decim // over) not in prof.decimations:
        raise UsageError(f"--model-oversample {over}: decimation {decim} / {over} must be one "
                         f"of the board's {prof.decimations}")
    nco = cfg.if_hz
    fs_cap = cfg.adc_rate_nominal / decim
    # signal capture: the whole waveform plus the guard on both sides
    n_sig = math.ceil((len(wf.iq) / cfg.player_sps + 2 * GUARD_S) * fs_cap
                      * (1 + 1e-6 * abs(cfg.clock_ppm)))
    n_cal = args.calibration_samples or n_sig
    out.mkdir(parents=True, exist_ok=True)

    model = LinkModel(cfg)
    statuses = {}
    for name, switch in (("shot_noise", OpticalSwitch.BLOCKED),
                         ("electronic_noise", OpticalSwitch.LO_OFF)):
        model.set_frontend(FrontEnd(switch=switch, voa_db=voa_db))
        _record(model, AdcSettings(n_samples=n_cal, nco_hz=nco, decimation=decim),
                out / f"{name}.npy", over)
        statuses[name] = model.status().__dict__
    model.set_frontend(FrontEnd(voa_db=voa_db))
    t_play = model.now_s
    np.save(out / "dac.npy", wf.iq, allow_pickle=False)
    np.save(out / "alice_symbols.npy", wf.symbols.astype(np.complex128), allow_pickle=False)
    model.load_dac(wf.iq, cyclic=False)
    model.request_ground_truth(wf.grid)
    pilots = _pilots(wf)
    # the files and the model hold what is needed: free the waveform's big arrays
    wf = replace(wf, iq=np.empty((0, 2), np.int16), symbols=np.empty(0, np.complex128))
    model.advance(max(0.0, cfg.delay_s - GUARD_S))
    _record(model, AdcSettings(n_samples=n_sig, nco_hz=nco, decimation=decim), out / "adc.npy",
            over)
    statuses["signal"] = model.status().__dict__
    truth = model.ground_truth()
    genie = truth.genie
    np.save(out / "genie_symbols.npy", genie.symbols.astype(np.complex128), allow_pickle=False)
    np.savez(out / "truth.npz", sample_index=truth.sample_index, phase_rad=truth.phase_rad,
             tx_position=truth.tx_position, symbol_position=genie.position,
             symbol_angle_rad=genie.angle_rad)
    meta = {
        "format_version": FORMAT_VERSION,
        "generator": "cvqkd sim capture (fpga_bindings.model.link.LinkModel, loopback)",
        "seed": seed,
        "board": dict(prof.__dict__),
        "link": cfg.as_dict(),
        "rates": {
            "player_sps": cfg.player_sps, "dac_sps": prof.default_dac_sps,
            "interpolation": cfg.interpolation or prof.default_interpolation,
            "adc_sps": cfg.adc_rate_nominal,
            "capture_sps": fs_cap, "clock_ppm": cfg.clock_ppm,
        },
        "ddc": {"mode": "DDC", "nco_hz": nco, "decimation": decim, "model_oversample": over},
        "adc": {"dtype": "int16", "layout": "(n, 2) I, Q", "bits": prof.adc_bits,
                # the model keeps the shot-noise power per Hz: rms scales as sqrt(1/decimation)
                "shot_noise_rms_lsb_nominal": cfg.rx_gain_lsb * math.sqrt(
                    prof.default_decimation / decim),
                "n_samples": n_sig, "calibration_samples": n_cal},
        "symbol_rate": args.symbol_rate,
        "samples_per_symbol": {"player": wf.grid.sps,
                               "capture_nominal": fs_cap / args.symbol_rate},
        "pilots": pilots,
        "waveform": wf.params,
        "frontend": {"voa_db": voa_db},
        "trigger_after_player_start_s": truth.trigger_time_s - t_play,
        "truth": {"u0_player_samples": truth.u0, "du_player_per_capture_sample": truth.du,
                  "phase_grid": cfg.phase_grid,
                  "genie_valid": int(np.count_nonzero(~np.isnan(genie.symbols)))},
        "status": statuses,
        "files": {"adc.npy": "signal capture", "dac.npy": "DAC player waveform",
                  "shot_noise.npy": "switch BLOCKED",
                  "electronic_noise.npy": "switch LO_OFF", "alice_symbols.npy": "SNU",
                  "genie_symbols.npy": "SNU", "truth.npz": "trajectories (tests only)"},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
    print(f"wrote {out}: {n_sig} samples at {fs_cap:g} S/s, {args.symbols} symbols "
          f"({wf.params['kind']}), VOA {voa_db:.2f} dB, "
          f"{statuses['signal']['clip_count']} ADC samples clipped")
    return 0


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple | np.ndarray):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
