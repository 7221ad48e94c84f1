"""`cvqkd dsp`: run Bob's receiver DSP on a capture directory.

Reads the directory written by `cvqkd sim capture` (or a board capture in the same format):
adc.npy, shot_noise.npy, electronic_noise.npy (int16 (n, 2) I/Q from the down-converter, or
int16 (n,) real IF samples when meta.json's "ddc" "mode" is "REAL_IF": they then go through
the software down-converter `dsp.ddc`), alice_symbols.npy, meta.json.
Writes bob_symbols.npy (complex SNU, indexed like alice_symbols.npy), bob_mask.npy (True where
recovered) and dsp_summary.json; prints the summary. A synchronisation failure writes no
symbols, prints the reason and exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from controller.cli import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("dsp", help="receiver DSP: capture directory -> Bob's symbols (SNU)")
    p.add_argument("--in", dest="indir", type=Path, required=True, metavar="DIR",
                   help="capture directory (adc.npy, meta.json, ...)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR2",
                   help="output directory (default: the input directory)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--disclose-fraction", type=float, default=0.1, metavar="F",
                   help="fraction of Alice's symbols disclosed for sync checks and estimation")
    p.add_argument("--linewidth-hz", type=float, default=None, metavar="HZ",
                   help="combined laser linewidth if known (default: estimated from the pilot)")
    p.set_defaults(func=run)


def _load(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise UsageError(f"{what}: {path} not found")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise UsageError(f"{what}: {path}: {exc}") from None


def _software_ddc(meta: dict, adc, shot, elec):
    """Real-IF captures -> complex int16 I/Q at adc rate / decimation (the board's default),
    NCO at the nominal IF; one gain for all three, putting the shot noise near 2048 LSB rms."""
    from dsp.ddc import downconvert

    try:
        fs_adc = float(meta["rates"]["adc_sps"])
        decim = int(meta["board"]["default_decimation"])
        if_hz = float(meta["link"]["if_hz"])
    except (KeyError, TypeError) as exc:
        raise UsageError(f"meta.json: real-IF capture needs field {exc}") from None
    for name, x in (("adc.npy", adc), ("shot_noise.npy", shot), ("electronic_noise.npy", elec)):
        if x.ndim != 1:
            raise UsageError(f"{name}: REAL_IF capture must be int16 of shape (n,)")
    sigma = float(np.std(np.asarray(shot[: 1 << 20], dtype=np.float64)))
    gain = 2048.0 / max(sigma / np.sqrt(2 * decim), 1e-9)
    out = [downconvert(x, fs_adc, if_hz, decim, gain) for x in (adc, shot, elec)]
    return out[0], out[1], out[2], fs_adc / decim, if_hz


def run(args: argparse.Namespace) -> int:
    from dsp.receiver import RxConfig, SyncError, receive

    t0 = time.perf_counter()
    indir: Path = args.indir
    out: Path = args.out or indir
    if not 0 < args.disclose_fraction <= 1:
        raise UsageError("--disclose-fraction must be in (0, 1]")
    try:
        meta = json.loads((indir / "meta.json").read_text())
    except FileNotFoundError:
        raise UsageError(f"--in {indir}: meta.json not found") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"--in {indir}: meta.json: {exc}") from None
    try:
        tx_meta = meta["waveform"]
        fs = float(meta["rates"]["capture_sps"])
        nco_hz = float(meta["ddc"]["nco_hz"])
        if_hz = float(meta["link"].get("if_hz", 0.0))
        eta = float(meta["link"]["eta"])
        detection = meta["link"].get("detection", "heterodyne")
    except (KeyError, TypeError) as exc:
        raise UsageError(f"meta.json: missing field {exc}") from None
    if tx_meta.get("format") != "cvqkd-dsp-frame/1":
        raise UsageError("meta.json: the waveform is not a dsp.transmitter frame "
                         "(cvqkd-dsp-frame/1)")
    adc = _load(indir / "adc.npy", "capture")
    shot = _load(indir / "shot_noise.npy", "shot-noise capture")
    elec = _load(indir / "electronic_noise.npy", "electronic-noise capture")
    if meta["ddc"].get("mode", "DDC") == "REAL_IF":
        adc, shot, elec, fs, nco_hz = _software_ddc(meta, adc, shot, elec)
    alice = np.asarray(_load(indir / "alice_symbols.npy", "Alice's symbols"))
    if alice.ndim != 1 or not np.iscomplexobj(alice) or alice.size != tx_meta["n_data"]:
        raise UsageError("alice_symbols.npy: expected the frame's complex data symbols")
    # disclosed positions are public: evenly spaced with a public random offset per stride
    stride = max(1, round(1 / args.disclose_fraction))
    rng = np.random.default_rng(0)
    idx = np.arange(0, alice.size - stride + 1, stride) + rng.integers(0, stride,
                                                                      alice.size // stride)
    t_load = time.perf_counter() - t0
    try:
        res = receive(adc, tx_meta, fs, idx, alice[idx], np.asarray(shot), np.asarray(elec),
                      eta=eta, detection=detection, nco_hz=nco_hz, if_hz=if_hz,
                      config=RxConfig(linewidth_hz=args.linewidth_hz))
    except SyncError as exc:
        summary = {"ok": False, "reason": exc.reason}
        print(json.dumps(summary) if args.json else f"cvqkd dsp: sync failed: {exc.reason}")
        return 1
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "bob_symbols.npy", res.symbols, allow_pickle=False)
    np.save(out / "bob_mask.npy", res.mask, allow_pickle=False)
    summary = {"ok": True, "disclosed": int(idx.size), **res.summary}
    summary["timings_s"]["load_s"] = t_load
    (out / "dsp_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"recovered {summary['n_recovered']}/{summary['n_symbols']} symbols; "
              f"clock {summary['clock_offset_ppm']:+.3f} ppm, LO offset "
              f"{summary['lo_offset_hz'] / 1e6:+.6f} MHz, T = {summary.get('transmittance', 0):.4f}"
              f", xi = {summary.get('excess_noise_snu', float('nan')):.4f} SNU, v_el = "
              f"{summary['electronic_noise_snu']:.4f} SNU, "
              f"{summary['samples_per_s'] / 1e6:.1f} M samples/s")
    return 0
