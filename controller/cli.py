"""The `cvqkd` command line.

Each subcommand lives in its own module under `controller.commands` and exposes
`register(subparsers) -> None`, which adds its parser and sets `func(args) -> int`.
Bad input raises `UsageError` (or `ValueError`): the user gets one line on stderr and exit
status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from threadpoolctl import threadpool_limits

# Top-level subcommands, in the order `cvqkd --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "keys",
    "setup",
    "keyrate",
    "plan",
    "sim",
    "dsp",
    "link",
    "tx",
    "rx",
)

# `cvqkd bench <target>` targets; each module exposes `register(subparsers)` likewise.
BENCH_MODULES: tuple[str, ...] = (
    "bench_ldpc",
    "bench_pa",
)


class UsageError(ValueError):
    """Invalid command-line input; reported as one line and exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: one line, status 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cvqkd", description="Continuous-variable QKD link control plane")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"controller.commands.{name}").register(sub)
    if BENCH_MODULES:
        bench = sub.add_parser("bench", help="performance benchmarks of the pipeline's stages")
        bench_sub = bench.add_subparsers(dest="target", required=True, parser_class=_Parser)
        for name in BENCH_MODULES:
            importlib.import_module(f"controller.commands.{name}").register(bench_sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The pipeline runs its own threads (one per stage, the decoder's pthreads); a
    # multithreaded BLAS under them only adds spinning workers: np.vdot of a few MB through
    # OpenBLAS's second thread cost ~13 % of a link run's CPU in sched_yield (docs/performance.md).
    threadpool_limits(limits=1, user_api="blas")
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:  # includes UsageError
        print(f"cvqkd {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"cvqkd {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
