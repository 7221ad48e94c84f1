"""`cvqkd link --sim`: run the whole protocol end to end on the link model and fill both key
stores (see controller/link.py and docs/protocol.md).

    cvqkd link --sim [--config FILE.toml] [--distance-km L] [--xi XI] [--va V]
                     [--frame-symbols N] [--block-symbols N] [--frames F | --duration S]
                     [--json] [--workdir DIR]

Options override the configuration file. Progress goes to stdout (stderr with --json), one
line per frame and stage; --json prints one JSON object at the end with both store paths.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import shutil
import sys
import time
from pathlib import Path

from controller.cli import UsageError
from controller.config import ConfigError, LinkConfig, load_config

_PHYSICS = {"distance_km": "distance_km", "xi": "xi", "eta": "eta", "v_el": "vel",
            "linewidth_hz": "linewidth_hz", "seed": "seed"}
_PROTOCOL = {"frame_symbols": "frame_symbols", "block_symbols": "block_symbols",
             "xi_abort": "xi_abort", "beta_target": "beta", "code_n": "code_n",
             "security_bound": "bound", "reconciliation": "reconciliation"}
_MODULATION = {"v_a": "va", "converter_factor": "converter_factor", "layout": "layout",
               "planned_linewidth_hz": "planned_linewidth_hz"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("link", help="run the QKD link end to end (both ends, --sim)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--sim", action="store_true", required=True,
                   help="both ends in this process on the link model (the only mode so far)")
    add_config_arguments(p)
    add_frame_arguments(p)
    p.add_argument("--workdir", type=Path, default=Path("out/link"), metavar="DIR",
                   help="pools and key stores (created if absent; default %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")
    p.set_defaults(func=run)


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """--config and the options that override it (shared by link, tx and rx)."""
    p.add_argument("--config", type=Path, metavar="FILE.toml", help="link configuration")
    p.add_argument("--distance-km", type=float, metavar="L")
    p.add_argument("--xi", type=float, metavar="XI", help="excess noise, SNU, channel input")
    p.add_argument("--eta", type=float, metavar="E", help="detector efficiency")
    p.add_argument("--vel", type=float, metavar="VEL", help="electronic noise, SNU")
    p.add_argument("--va", type=float, metavar="V", help="modulation variance, SNU")
    p.add_argument("--linewidth-hz", type=float, metavar="HZ", help="combined laser linewidth")
    p.add_argument("--converter-factor", type=int, metavar="K",
                   help="DAC interpolation = ADC decimation (8: 500 MS/s, 4: 1 GS/s)")
    p.add_argument("--layout", choices=("centre", "edge"),
                   help="frame layout: 'edge' puts data and strong pilot at opposite edges "
                        "of the pass band (docs/dsp.md, 'Wide capture')")
    p.add_argument("--planned-linewidth-hz", type=float, metavar="HZ",
                   help="combined linewidth the edge layout's pilot power is planned for")
    p.add_argument("--seed", type=int, metavar="S", help="seed of the simulated channel")
    p.add_argument("--frame-symbols", type=int, metavar="N")
    p.add_argument("--block-symbols", type=int, metavar="N",
                   help="privacy-amplification block (finite-size bound), symbols")
    p.add_argument("--xi-abort", type=float, metavar="XI")
    p.add_argument("--reconciliation", choices=("auto", "fixed"),
                   help="auto: code, length, beta and iterations from the measured operating "
                        "points (default); fixed: --beta and --code-n")
    p.add_argument("--beta", type=float, metavar="B",
                   help="target reconciliation efficiency (with --reconciliation fixed)")
    p.add_argument("--code-n", type=int, metavar="N",
                   help="LDPC mother code length, bits (with --reconciliation fixed)")
    p.add_argument("--bound", choices=("lgg", "composable", "min"),
                   help="finite-size bound for the key length")


def add_frame_arguments(p: argparse.ArgumentParser) -> None:
    """--frames | --duration (the transmitter decides how many frames a session has)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--frames", type=int, metavar="F", help="frames to run (default: one block)")
    g.add_argument("--duration", type=float, metavar="S",
                   help="run for S seconds of wall time: frames start until then, the frames "
                        "in progress complete and the block closes")


def build_config(args: argparse.Namespace) -> LinkConfig:
    try:
        cfg = load_config(args.config)
        phys = {k: getattr(args, a) for k, a in _PHYSICS.items() if getattr(args, a) is not None}
        prot = {k: getattr(args, a) for k, a in _PROTOCOL.items() if getattr(args, a) is not None}
        mod = {k: getattr(args, a) for k, a in _MODULATION.items()
               if getattr(args, a) is not None}
        from controller.config import config_from_dict

        doc = {"physics": {**dataclasses.asdict(cfg.physics), **phys},
               "modulation": {**dataclasses.asdict(cfg.modulation), **mod},
               "protocol": {**dataclasses.asdict(cfg.protocol), **prot},
               "endpoints": dataclasses.asdict(cfg.endpoints)}
        return config_from_dict(doc)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def frame_count(args: argparse.Namespace, cfg: LinkConfig) -> int | None:
    """Frames of the run: --frames, None with --duration (a wall-time limit, `duration`), or
    one block's worth."""
    if args.frames is not None:
        if args.frames < 1:
            raise UsageError("--frames must be >= 1")
        return args.frames
    if args.duration is not None:
        return None
    return max(1, math.ceil(cfg.protocol.block_symbols / cfg.protocol.frame_symbols))


def duration(args: argparse.Namespace) -> float | None:
    """--duration in seconds of wall time (None without it)."""
    if args.duration is None:
        return None
    if not (args.duration > 0 and math.isfinite(args.duration)):
        raise UsageError("--duration must be a positive number of seconds")
    return float(args.duration)


class Progress:
    """Plain lines when `out` is not a terminal; on a terminal, one status line rewritten in
    place (a bar over the frames) with block results and aborts kept as lines."""

    def __init__(self, out, frames: int | None, duration_s: float | None = None) -> None:
        """`frames` to run, or None with `duration_s` (the bar then shows elapsed time)."""
        self.out, self.frames, self.duration_s = out, frames, duration_s
        self.t0 = time.monotonic()
        self.tty = out.isatty()
        self.width = max(40, shutil.get_terminal_size().columns - 1)
        self.done_frames = 0

    def __call__(self, line: str) -> None:
        if not self.tty:
            print(line, file=self.out, flush=True)
            return
        if "verified" in line or "aborted" in line:
            self.done_frames += 1
        keep = "block" in line or "aborted" in line
        if keep:
            self.out.write("\r\033[K" + line + "\n")
        if self.frames is not None:
            n = 20 * self.done_frames // self.frames
            count = f"{self.done_frames}/{self.frames}"
        else:
            elapsed = time.monotonic() - self.t0
            n = min(20, int(20 * elapsed / self.duration_s)) if self.duration_s else 0
            count = f"{self.done_frames} frames, {elapsed:.0f}/{self.duration_s:g} s"
        bar = f"[{'#' * n}{'.' * (20 - n)}] {count} "
        self.out.write("\r\033[K" + (bar + line)[:self.width])
        self.out.flush()

    def done(self) -> None:
        if self.tty:
            self.out.write("\r\033[K")
            self.out.flush()


def run(args: argparse.Namespace) -> int:
    from controller.link import prepare_workdir, run_link
    from controller.link_memory import single_malloc_arena

    single_malloc_arena()  # before the worker threads allocate: keeps the peak RSS down
    cfg = build_config(args)
    seconds = duration(args)
    frames = frame_count(args, cfg)
    out = sys.stderr if args.json else sys.stdout
    wd = prepare_workdir(cfg, args.workdir)
    p = cfg.physics
    run_len = f"{frames} frames" if frames is not None else f"{seconds:g} s of frames"
    print(f"cvqkd link --sim: {p.distance_km:g} km (T {p.transmittance:.4f}), xi {p.xi:g} SNU, "
          f"V_A {cfg.modulation.v_a:g} SNU, {run_len} of {cfg.protocol.frame_symbols} "
          f"symbols, PA block {cfg.protocol.block_symbols} symbols, workdir {wd.root}",
          file=out, flush=True)
    progress = Progress(out, frames, seconds)
    try:
        report = asyncio.run(run_link(cfg, wd, frames, duration_s=seconds, progress=progress))
    finally:
        progress.done()
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print(report.text())
    return 0 if report.session_abort is None else 1
