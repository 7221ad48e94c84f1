"""`cvqkd tx` and `cvqkd rx`: the two ends of the link as separate processes (see
controller/link_two_process.py and docs/protocol.md, "Two processes").

    cvqkd tx --listen HOST:PORT [--fibre HOST:PORT | --board --bitfile BIT] [--workdir DIR]
             [--sessions N] [--frames F | --duration S] [config options as for `cvqkd link`]
             [--json]
    cvqkd rx --connect HOST:PORT [--fibre HOST:PORT | --board --bitfile BIT] [--workdir DIR]
             [config options] [--json]

The fibre address defaults to the classical one's port + 1 (the simulated fibre; with
`--board` the light takes the real fibre). Each end's work directory must hold its key pool
and key store (`cvqkd setup`). `cvqkd tx` serves N sessions one after another (default 1; 0:
until SIGINT/SIGTERM). The first SIGINT/SIGTERM stops taking sessions and lets the session in
progress finish; a second one aborts it. Exit status 0 when every session ended normally, 1
when one aborted, 2 on bad input (also `--board` without a usable board: one line).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from controller.cli import UsageError
from controller.commands.link import (
    Progress,
    add_config_arguments,
    add_frame_arguments,
    build_config,
    duration,
    frame_count,
)
from controller.config import LinkConfig
from controller.link_report import LinkReport

if TYPE_CHECKING:  # pynq is imported only when a link end runs
    from fpga_bindings.overlay import CvqkdOverlay

DEVICE_TREE = Path("/proc/device-tree/compatible")


def _common(p: argparse.ArgumentParser, role: str) -> None:
    p.add_argument("--fibre", metavar="HOST:PORT",
                   help="simulated fibre (default: the classical address's port + 1)")
    p.add_argument("--board", action="store_true",
                   help="drive the RFSoC board's cvqkd overlay instead of the model")
    p.add_argument("--bitfile", type=Path, metavar="BIT",
                   help="the cvqkd overlay bitstream for --board (its .hwh beside it)")
    add_config_arguments(p)
    p.add_argument("--workdir", type=Path, default=Path(f"out/{role}"), metavar="DIR",
                   help=f"this end's key pool ({role}-pool.sqlite) and key store "
                        "(default %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object at the end")


def register_tx(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tx", help="the transmitter (Alice) as its own process",
                              description="Alice: serve one session of the link.")
    p.add_argument("--listen", required=True, metavar="HOST:PORT",
                   help="address of the authenticated classical channel")
    p.add_argument("--sessions", type=int, default=1, metavar="N",
                   help="sessions to serve one after another (0: until SIGINT/SIGTERM; "
                        "default %(default)s)")
    _common(p, "alice")
    add_frame_arguments(p)
    p.set_defaults(func=run_tx)


def register_rx(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("rx", help="the receiver (Bob) as its own process",
                              description="Bob: connect to the transmitter and run a session.")
    p.add_argument("--connect", required=True, metavar="HOST:PORT",
                   help="the transmitter's classical channel")
    _common(p, "bob")
    p.set_defaults(func=run_rx)


def check_board(bitfile: Path | None) -> None:
    """`--board` before anything else: a ZynqMP board with the PYNQ image (xrfdc) and the
    overlay's bitstream and .hwh; each missing piece is a one-line UsageError."""
    try:
        zynqmp = b"xlnx,zynqmp" in DEVICE_TREE.read_bytes()
    except OSError:
        zynqmp = False
    if not zynqmp:
        raise UsageError("--board: no RFSoC board on this machine (no xlnx,zynqmp in "
                         f"{DEVICE_TREE}); run without --board to use the model")
    if importlib.util.find_spec("xrfdc") is None:
        raise UsageError("--board: the xrfdc package is missing (it comes with the PYNQ image "
                         "for RFSoC boards)")
    if bitfile is None:
        raise UsageError("--board needs --bitfile PATH (the cvqkd overlay bitstream)")
    if not bitfile.is_file():
        raise UsageError(f"--bitfile {bitfile}: no such file")
    if not bitfile.with_suffix(".hwh").is_file():
        raise UsageError(f"--bitfile {bitfile}: {bitfile.with_suffix('.hwh').name} is missing "
                         "beside it (pynq needs it to find the IP blocks)")


def open_board_overlay(bitfile: Path, cfg: LinkConfig) -> CvqkdOverlay:
    """`--board`: the cvqkd overlay of this RFSoC board (fpga_bindings.overlay.open_board),
    checked against the configured board profile (modulation.board); failures are one-line
    UsageErrors (another overlay or board, converter clocks not locked)."""
    from fpga_bindings.drivers import OverlayError
    from fpga_bindings.overlay import open_board

    try:
        overlay = open_board(str(bitfile))
    except (OverlayError, OSError, RuntimeError, AttributeError, KeyError) as exc:
        raise UsageError(f"--board: cannot load {bitfile}: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    return check_overlay(overlay, cfg)


def check_overlay(overlay: CvqkdOverlay, cfg: LinkConfig) -> CvqkdOverlay:
    """The overlay must be the configured board's (modulation.board), able to stream the
    configured converter rate (contract 1.2 for 1 GS/s), with its clocks locked."""
    if overlay.profile.name != cfg.modulation.board:
        raise UsageError(f"--board: the overlay is built for {overlay.profile.name}, the "
                         f"configuration says modulation.board = {cfg.modulation.board}")
    if overlay.board_info.version < (1, 2, 0) and cfg.modulation.player_sps > 500e6:
        raise UsageError(f"--board: overlay {'.'.join(map(str, overlay.board_info.version))} "
                         f"streams one sample per beat (at most 500 MS/s); "
                         f"modulation.converter_factor {cfg.modulation.converter_factor} needs "
                         f"contract 1.2 (two samples per beat)")
    clocks = overlay.board_info.clocks()
    if not (clocks["ADC_PLL_LOCKED"] and clocks["DAC_PLL_LOCKED"]):
        raise UsageError(f"--board: converter clocks not locked ({clocks})")
    return overlay


def _addresses(args: argparse.Namespace, main: str, what: str
               ) -> tuple[tuple[str, int], tuple[str, int] | None]:
    from controller.link_fibre import parse_hostport

    host, port = parse_hostport(main, what)
    if args.board:
        if args.fibre is not None:
            raise UsageError("--fibre is the simulated fibre: not with --board")
        return (host, port), None
    if args.bitfile is not None:
        raise UsageError("--bitfile goes with --board")
    if args.fibre is not None:
        fibre = parse_hostport(args.fibre, "--fibre")
    elif port == 0 or port == 65535:
        raise UsageError(f"{what}: give --fibre when the port is {port}")
    else:
        fibre = (host, port + 1)
    return (host, port), fibre


def _overlay(args: argparse.Namespace, cfg: LinkConfig) -> CvqkdOverlay | None:
    """The board's overlay with --board (checked: check_board), else None (the model)."""
    return open_board_overlay(args.bitfile, cfg) if args.board else None


def _tx_summary(report: LinkReport) -> str:
    """Alice's lines of one session (the frame and block records are the receiver's)."""
    s = report.summary()
    abort = s["session_abort"]
    state = f"aborted: {abort['reason']}: {abort['detail']}" if abort else "completed"
    stages = ", ".join(f"{k} {v:.2f}" for k, v in s["stage_seconds_alice"].items())
    return (f"session {state} (wall {s['wall_s']:.1f} s; frame and block results: the "
            f"receiver's summary)\ntime per stage (s): {stages}\nkey store: "
            f"{s['key_store_alice']} ({s['keys_in_store_alice']} keys)")


def run_tx(args: argparse.Namespace) -> int:
    from controller.link_memory import single_malloc_arena
    from controller.link_two_process import TxServer, end_files
    from controller.link_two_process import run_tx as serve

    single_malloc_arena()  # before the worker threads allocate: keeps the peak RSS down
    if args.board:
        check_board(args.bitfile)
    cfg = build_config(args)
    if args.sessions < 0:
        raise UsageError("--sessions must be >= 0 (0: until interrupted)")
    frames = args.frames if args.frames is not None or args.duration is not None \
        else frame_count(args, cfg)
    if frames is not None and frames < 1:
        raise UsageError("--frames must be >= 1")
    seconds = duration(args)
    listen, fibre = _addresses(args, args.listen, "--listen")
    files = end_files(cfg, args.workdir, "alice")
    overlay = _overlay(args, cfg)
    out = sys.stderr if args.json else sys.stdout
    server = TxServer(frames=frames, duration_s=seconds, sessions=args.sessions or None)
    many = args.sessions != 1
    what = f"{frames} frames" if frames is not None else f"{seconds:g} s"

    def listening(a: tuple[str, int], f: tuple[str, int] | None) -> None:
        where = f"fibre {f[0]}:{f[1]}" if f is not None else "board overlay, real fibre"
        count = f"{args.sessions} session(s)" if args.sessions else "sessions until stopped"
        print(f"cvqkd tx: listening on {a[0]}:{a[1]} ({where}), {count} of {what} "
              f"of {cfg.protocol.frame_symbols} symbols, key store {files.store}",
              file=out, flush=True)

    def session_done(report: LinkReport) -> None:
        progress.done()  # the next session's bar starts afresh
        progress.done_frames, progress.t0 = 0, time.monotonic()
        if args.json:
            print(json.dumps(report.to_json()), flush=True)
        elif many:
            print(f"session {len(server.reports)}: {_tx_summary(report)}", flush=True)

    def on_signal(signum: int) -> None:
        if server.stops == 0:
            print(f"cvqkd tx: {signal.Signals(signum).name}: finishing the session in "
                  "progress (again to abort it)", file=sys.stderr, flush=True)
        server.stop()

    async def main() -> list[LinkReport]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        return await serve(cfg, files, listen, fibre, server, progress, listening,
                           session_done, overlay)

    progress = Progress(out, frames, seconds)
    try:
        reports = asyncio.run(main())
    finally:
        progress.done()
    if not args.json and not many and reports:
        print(_tx_summary(reports[0]), flush=True)
    return 0 if all(r.session_abort is None for r in reports) else 1


def run_rx(args: argparse.Namespace) -> int:
    from controller.link_memory import single_malloc_arena
    from controller.link_two_process import end_files
    from controller.link_two_process import run_rx as receive

    single_malloc_arena()  # before the worker threads allocate: keeps the peak RSS down
    if args.board:
        check_board(args.bitfile)
    cfg = build_config(args)
    connect, fibre = _addresses(args, args.connect, "--connect")
    files = end_files(cfg, args.workdir, "bob")
    overlay = _overlay(args, cfg)
    out = sys.stderr if args.json else sys.stdout
    where = f"fibre {fibre[0]}:{fibre[1]}" if fibre is not None else "board overlay"
    print(f"cvqkd rx: connecting to {connect[0]}:{connect[1]} ({where}), key store "
          f"{files.store}", file=out, flush=True)

    def progress(line: str) -> None:  # plain lines: Bob learns the frame count as it goes
        print(line, file=out, flush=True)

    report = asyncio.run(receive(cfg, files, connect, fibre, progress, overlay=overlay))
    print(json.dumps(report.to_json()) if args.json else report.text(), flush=True)
    return 0 if report.session_abort is None else 1
