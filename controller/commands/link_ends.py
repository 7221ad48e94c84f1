"""`cvqkd tx` and `cvqkd rx`: the two ends of the link as separate processes (see
controller/link_two_process.py and docs/protocol.md, "Two processes").

    cvqkd tx --listen HOST:PORT [--fibre HOST:PORT] [--board] [--workdir DIR]
             [--frames F | --duration S] [config options as for `cvqkd link`] [--json]
    cvqkd rx --connect HOST:PORT [--fibre HOST:PORT] [--board] [--workdir DIR]
             [config options] [--json]

The fibre address defaults to the classical one's port + 1. Each end's work directory must
hold its key pool and key store (`cvqkd setup`). Exit status 0 when the session ended
normally, 1 when it aborted, 2 on bad input (also `--board` without a board).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from controller.cli import UsageError
from controller.commands.link import (
    Progress,
    add_config_arguments,
    add_frame_arguments,
    build_config,
    frame_count,
)
from controller.link_report import LinkReport

DEVICE_TREE = Path("/proc/device-tree/compatible")


def _common(p: argparse.ArgumentParser, role: str) -> None:
    p.add_argument("--fibre", metavar="HOST:PORT",
                   help="simulated fibre (default: the classical address's port + 1)")
    p.add_argument("--board", action="store_true",
                   help="use the RFSoC board's overlay instead of the model")
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


def check_board() -> None:
    """`--board`: the link's quantum channel on the overlay is not available here."""
    try:
        zynqmp = b"xlnx,zynqmp" in DEVICE_TREE.read_bytes()
    except OSError:
        zynqmp = False
    if not zynqmp:
        raise UsageError("--board: no RFSoC board or cvqkd overlay is available on this "
                         "machine; run without --board to use the model")
    raise UsageError("--board: the link does not drive the overlay yet (only the model); "
                     "run without --board")


def _addresses(args: argparse.Namespace, main: str, what: str
               ) -> tuple[tuple[str, int], tuple[str, int]]:
    from controller.link_fibre import parse_hostport

    host, port = parse_hostport(main, what)
    if args.fibre is not None:
        fibre = parse_hostport(args.fibre, "--fibre")
    elif port == 0 or port == 65535:
        raise UsageError(f"{what}: give --fibre when the port is {port}")
    else:
        fibre = (host, port + 1)
    return (host, port), fibre


def _finish(args: argparse.Namespace, report: LinkReport, role: str) -> int:
    if args.json:
        print(json.dumps(report.to_json()), flush=True)
    elif role == "bob":
        print(report.text(), flush=True)
    else:  # the frame and block records are the receiver's (reverse reconciliation)
        s = report.summary()
        abort = s["session_abort"]
        state = f"aborted: {abort['reason']}: {abort['detail']}" if abort else "completed"
        stages = ", ".join(f"{k} {v:.2f}" for k, v in s["stage_seconds_alice"].items())
        print(f"session {state} (wall {s['wall_s']:.1f} s; frame and block results: the "
              f"receiver's summary)\ntime per stage (s): {stages}\nkey store: "
              f"{s['key_store_alice']} ({s['keys_in_store_alice']} keys)", flush=True)
    return 0 if report.session_abort is None else 1


def run_tx(args: argparse.Namespace) -> int:
    from controller.link_two_process import end_files
    from controller.link_two_process import run_tx as serve

    if args.board:
        check_board()
    cfg = build_config(args)
    frames = frame_count(args, cfg)
    listen, fibre = _addresses(args, args.listen, "--listen")
    files = end_files(cfg, args.workdir, "alice")
    out = sys.stderr if args.json else sys.stdout

    def listening(a: tuple[str, int], f: tuple[str, int]) -> None:
        print(f"cvqkd tx: listening on {a[0]}:{a[1]} (fibre {f[0]}:{f[1]}), {frames} frames "
              f"of {cfg.protocol.frame_symbols} symbols, key store {files.store}",
              file=out, flush=True)

    progress = Progress(out, frames)
    try:
        report = asyncio.run(serve(cfg, files, listen, fibre, frames, progress, listening))
    finally:
        progress.done()
    return _finish(args, report, "alice")


def run_rx(args: argparse.Namespace) -> int:
    from controller.link_two_process import end_files
    from controller.link_two_process import run_rx as receive

    if args.board:
        check_board()
    cfg = build_config(args)
    connect, fibre = _addresses(args, args.connect, "--connect")
    files = end_files(cfg, args.workdir, "bob")
    out = sys.stderr if args.json else sys.stdout
    print(f"cvqkd rx: connecting to {connect[0]}:{connect[1]} (fibre {fibre[0]}:{fibre[1]}), "
          f"key store {files.store}", file=out, flush=True)

    def progress(line: str) -> None:  # plain lines: Bob learns the frame count as it goes
        print(line, file=out, flush=True)

    return _finish(args, asyncio.run(receive(cfg, files, connect, fibre, progress)), "bob")
