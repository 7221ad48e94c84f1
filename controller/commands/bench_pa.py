"""`cvqkd bench pa`: throughput of privacy amplification (Toeplitz hashing) on one core.

Hashes N random bits (os.urandom) to m bits, m = ratio x N, or the output length of a link at
--distance-km from the security core's finite-size rate. Reports Mbit/s of input per second of
wall-clock time and per second of the thread's CPU time (the one-core figure on a shared
machine, where the wall clock also counts other processes' time slices).
"""

from __future__ import annotations

import argparse
import json
import os
import time

from controller.cli import UsageError
from controller.commands.keyrate import DEFAULTS
from reconcile import privacy_amp
from reconcile.finite_size import DEFAULT_EPSILON, DEFAULT_PE_FRACTION, finite_size_rate
from reconcile.keyrate import fibre_transmittance
from reconcile.pa_length import output_length

DEFAULT_RATIO = 0.10  # above the 25 km default link's 0.03-0.045: a conservative load
MAX_BITS = 4_000_000_000
VERIFY_TAG_BITS = 64


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("pa", help="privacy amplification (Toeplitz hash) throughput")
    p.add_argument("--bits", type=float, required=True, metavar="N",
                   help="input block length in bits (e.g. 1e7)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--ratio", type=float, metavar="R",
                      help=f"output/input length ratio (default {DEFAULT_RATIO})")
    size.add_argument("--distance-km", type=float, metavar="D",
                      help="instead of --ratio: the output length of the default heterodyne "
                           "link at D km (LGG finite-size rate, N = bits/2 key symbols)")
    p.add_argument("--family", choices=privacy_amp.FAMILIES, default="modified-toeplitz",
                   help="hash family (default %(default)s)")
    p.add_argument("--kernel", choices=tuple(privacy_amp.KERNELS), default="auto",
                   help="carry-less multiply kernel (default %(default)s)")
    p.add_argument("--repeat", type=int, default=3, help="runs; the best is reported (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def link_output_bits(n_bits: int, distance_km: float) -> int:
    """m for n_bits of reconciled key from the default link at distance_km (heterodyne MDR:
    2 bits per key symbol; LGG rate holds the leftover-hash term; 64-bit verification tag)."""
    n_key = n_bits // 2
    n_total = round(n_key / (1.0 - DEFAULT_PE_FRACTION))
    d = DEFAULTS
    rate = finite_size_rate(d["va"], fibre_transmittance(distance_km, d["loss_db_per_km"]),
                            d["xi"], d["beta"], n_total=n_total, eta=d["eta"], v_el=d["vel"],
                            detection=d["detection"], detector=d["detector"])
    n_key = int(rate.n_key)
    per_key_symbol = float(rate.k_finite_raw) * n_total / n_key
    return output_length(n_key, per_key_symbol, input_bits=n_bits,
                         leak_verify_bits=VERIFY_TAG_BITS, auth_key_bits=0,
                         eps_pa=DEFAULT_EPSILON, pa_term_in_rate=True).hash_output_bits


def run(args: argparse.Namespace) -> int:
    if not (64 <= args.bits <= MAX_BITS and args.bits == int(args.bits)):
        raise UsageError(f"--bits must be an integer in [64, {MAX_BITS:.0e}], got {args.bits:g}")
    if args.repeat < 1:
        raise UsageError(f"--repeat must be >= 1, got {args.repeat}")
    if args.kernel not in privacy_amp.available_kernels():
        raise UsageError(f"kernel {args.kernel!r} is not available on this CPU")
    n = int(args.bits)
    if args.distance_km is not None:
        if not 0.0 <= args.distance_km <= 500.0:
            raise UsageError(f"--distance-km must be in [0, 500], got {args.distance_km:g}")
        m = link_output_bits(n, args.distance_km)
        if m == 0:
            raise UsageError(f"no key at {args.distance_km:g} km with {n} bits: use --ratio")
    else:
        ratio = DEFAULT_RATIO if args.ratio is None else args.ratio
        if not 0.0 < ratio <= 1.0:
            raise UsageError(f"--ratio must be in (0, 1], got {ratio:g}")
        m = max(1, round(ratio * n))
    key = os.urandom((n + 7) // 8)
    seed = privacy_amp.new_seed(n, m, args.family)
    best = best_cpu = float("inf")
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.thread_time()
        privacy_amp.hash_packed(key, n, seed, m, family=args.family, kernel=args.kernel)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.thread_time() - c0)
    kernel = args.kernel
    if kernel == "auto":
        kernel = next(k for k in ("vpclmul", "pclmul", "pmull", "portable")
                      if k in privacy_amp.available_kernels())
    result = {
        "n_bits": n, "m_bits": m, "ratio": m / n, "family": args.family, "kernel": kernel,
        "seconds": best, "mbit_per_s": n / best / 1e6,
        "cpu_seconds": best_cpu, "mbit_per_cpu_s": n / best_cpu / 1e6, "repeat": args.repeat,
        "scratch_bytes": privacy_amp.scratch_bytes(n, m), "load_average": os.getloadavg()[0],
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"privacy amplification ({args.family}, {kernel}): n = {n} bits -> m = {m} bits "
              f"(ratio {m / n:.4f})")
        print(f"  best of {args.repeat}: {best:.4f} s wall, {result['mbit_per_s']:.1f} Mbit/s of "
              f"input; {best_cpu:.4f} s on the CPU, {result['mbit_per_cpu_s']:.1f} Mbit/s")
        print(f"  kernel heap {result['scratch_bytes'] / 1e6:.1f} MB; "
              f"load average {result['load_average']:.2f}")
    return 0
