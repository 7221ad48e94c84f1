"""Excess noise added by the receiver DSP and its cost per symbol (docs/dsp.md, "Measured excess
noise"; docs/performance.md, "Receiver DSP"). Run from the project root:

    .venv/bin/python docs/dsp_excess_noise.py noise --channel test --layout edge --linewidth 1e4 \\
        --seeds 1 2 3 4 --symbols 200000
    .venv/bin/python docs/dsp_excess_noise.py noise --channel model --layout edge --linewidth 1e4 \\
        --seeds 21 22 23 --symbols 250000 --model-oversample 4
    .venv/bin/python docs/dsp_excess_noise.py cost --layout edge --symbols 1000000

Prints one JSON line per seed: xi_added (the tests' metric), and "phase_part", the share of
|Bob - genie|^2 proportional to |x_k|^2 (the phase-tracking term), both input-referred SNU.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dsp_channel import (
    ChannelParams,
    chain_noise_gain,
    pilot_to_data,
    run_channel,
)

from controller.commands import dsp as dsp_cmd
from controller.commands import sim as sim_cmd
from dsp.layout import edge_layout
from dsp.receiver import receive
from dsp.transmitter import TxConfig, build_frame


def _fit(x, y):
    t = np.vdot(x, y) / np.vdot(x, x).real
    return t, float(np.mean(np.abs(y - t * x) ** 2) / 2)


def _compare(x, bob, genie, v_el, v_a):
    """xi_added and the phase-tracking part (regression of |Bob - genie|^2 on |x|^2)."""
    (tb, vb), (tg, vg) = _fit(x, bob), _fit(x, genie)
    xi = (vb - 1 - v_el) / abs(tb) ** 2 - (vg - 1 - v_el) / abs(tg) ** 2
    d = bob - genie * tb / tg
    a = np.vstack([np.ones(x.size), np.abs(x) ** 2]).T
    slope = np.linalg.lstsq(a, np.abs(d) ** 2, rcond=None)[0][1]
    return float(xi), float(slope * v_a / abs(tg) ** 2)


def _tx(layout, linewidth, rate):
    return TxConfig() if layout == "default" else edge_layout(rate, linewidth or 1e4)


def noise_test_channel(args, seed):
    cfg = _tx(args.layout, args.linewidth, 1e9)
    f = build_frame(cfg, args.symbols, bytes(32), seed)
    p = ChannelParams(seed=seed, linewidth_hz=args.linewidth)
    ch = run_channel(f.meta, f.symbols, p)
    idx = np.arange(0, args.symbols, 2)
    r = receive(ch["adc"], f.meta, cfg.sample_rate_hz, idx, f.symbols[idx], ch["shot"],
                ch["elec"], eta=p.eta)
    s = r.summary
    resc = np.sqrt(s["shot_noise_adc2"] / ch["adc_scale"] ** 2 / chain_noise_gain(
        s["smoother_a"], pilot_to_data(f.meta), cfg.sps, cfg.rolloff))
    xi, phase = _compare(f.symbols, r.symbols * resc, ch["genie"], p.v_el, cfg.v_a)
    return {"pilot_db": cfg.pilots[0].power_db, "xi_added": xi, "phase_part": phase}


def _sim_argv(out, seed, args):
    argv = ["sim", "capture", "--out", str(out), "--seed", str(seed), "--symbols",
            str(args.symbols), "--distance-km", "25", "--va", "4", "--eta", "0.7", "--vel", "0.1",
            "--xi", "0.02", "--linewidth-hz", str(args.linewidth / 2), "--lo-offset-hz", "50e6",
            "--lo-drift-hz-per-s", "1e6", "--clock-ppm", "20",
            "--model-oversample", str(args.model_oversample)]
    if args.layout == "edge":
        argv += ["--decimation", "4", "--interpolation", "4", "--layout", "edge"]
        if args.linewidth == 0:
            argv += ["--planned-linewidth-hz", "1e4"]
    return argv


def _cli(module, argv):
    p = argparse.ArgumentParser()
    module.register(p.add_subparsers())
    a = p.parse_args(argv)
    return a.func(a)


def noise_model(args, seed):
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "cap"
        _cli(sim_cmd, _sim_argv(d, seed, args))
        _cli(dsp_cmd, ["dsp", "--in", str(d), "--disclose-fraction", "0.5"])
        s = json.loads((d / "dsp_summary.json").read_text())
        meta = json.loads((d / "meta.json").read_text())
        cfg = meta["waveform"]["config"]
        sps = round(cfg["sample_rate_hz"] / cfg["symbol_rate_hz"])
        n0 = meta["adc"]["shot_noise_rms_lsb_nominal"] ** 2 * chain_noise_gain(
            s["smoother_a"], pilot_to_data(meta["waveform"]), sps, cfg["rolloff"])
        x, g = np.load(d / "alice_symbols.npy"), np.load(d / "genie_symbols.npy")
        b = np.load(d / "bob_symbols.npy") * np.sqrt(s["shot_noise_adc2"] / n0)
        ok = np.isfinite(g)
        xi, phase = _compare(x[ok], b[ok], g[ok], 0.1, 4.0)
    return {"pilot_db": meta["waveform"]["pilots"][0]["power_db"], "xi_added": xi,
            "phase_part": phase}


def _cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cost(args):
    """Process CPU per symbol of `cvqkd sim capture` and of `cvqkd dsp` (after a warm-up)."""
    tmp = Path(tempfile.mkdtemp())
    try:
        warm = argparse.Namespace(**{**vars(args), "symbols": 20000})
        _cli(sim_cmd, [*_sim_argv(tmp / "w", 5, warm), "--calibration-samples", "1048576"])
        _cli(dsp_cmd, ["dsp", "--in", str(tmp / "w")])
        c0 = _cpu()
        _cli(sim_cmd, [*_sim_argv(tmp / "c", 5, args), "--calibration-samples", "1048576"])
        c1 = _cpu()
        _cli(dsp_cmd, ["dsp", "--in", str(tmp / "c")])
        c2 = _cpu()
    finally:
        shutil.rmtree(tmp)
    return {"model_us_per_symbol": (c1 - c0) / args.symbols * 1e6,
            "dsp_us_per_symbol": (c2 - c1) / args.symbols * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("noise", "cost"))
    ap.add_argument("--channel", choices=("test", "model"), default="test")
    ap.add_argument("--layout", choices=("default", "edge"), default="edge")
    ap.add_argument("--linewidth", type=float, default=10e3, help="combined, Hz")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--symbols", type=int, default=200_000)
    ap.add_argument("--model-oversample", type=int, default=1)
    args = ap.parse_args()
    if args.what == "cost":
        print(json.dumps({"layout": args.layout, "model_oversample": args.model_oversample,
                          **cost(args)}))
        return
    for seed in args.seeds:
        t0 = time.perf_counter()
        run = noise_test_channel if args.channel == "test" else noise_model
        out = run(args, seed)
        print(json.dumps({"channel": args.channel, "layout": args.layout,
                          "linewidth_hz": args.linewidth, "seed": seed, **out,
                          "wall_s": round(time.perf_counter() - t0, 1)}), flush=True)


if __name__ == "__main__":
    main()
