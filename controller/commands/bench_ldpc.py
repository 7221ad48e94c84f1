"""`cvqkd bench ldpc`: reconciliation efficiency, frame error rate and decoder speed.

Simulates reverse reconciliation on a Gaussian channel at the SNR that gives efficiency beta
for the chosen code, SNR = 2^(2R/beta) - 1 per real dimension (R the code's effective rate):
Alice's x ~ N(0, 1), Bob's y = x + z with Var z = 1/SNR; Bob draws his word, publishes its
syndrome and the MDR message (reconcile.mdr, dimension d); Alice decodes with the C decoder.
The simulated data come from a seeded generator (reproducible with --seed); they are test data,
not key material.

Code choice: --code NAME, or by --rate: the project's multi-edge-type codes
(reconcile.met_codes) for rates up to 0.2 when one is within 10 % of the requested rate, the
closest standard code (DVB-S2/S2X, 5G NR) otherwise. `--n` sets the length of MET codes
(rounded to their lifting granularity); standard codes have their own lengths.

`--method slice` runs slice reconciliation instead (reconcile.slice_reconciliation) at a given
--snr: q = --slices equiprobable slices, --margins per slice (1 discloses it), 5G/MET slice
codes on frames of 24 z samples; beta is then (H(Q) - leak) / I(X;Y) (docs/reconciliation.md).

Reported: beta, snr, fer, avg_iterations, mbps (decoded codeword bits per second of decoder
wall time) and ns_per_edge_iteration = decoder wall time x threads used / (edges of H x
layered passes actually run over all frames: a group of 8 frames runs until its slowest member
stops; each thread takes whole groups, so threads beyond frames/8 stay idle), and
cpu_ns_per_edge_iteration, the same with the process CPU time (all threads), which a shared
machine distorts less.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np

from controller.cli import UsageError
from reconcile import mdr, standard_codes
from reconcile.ldpc_code import LdpcCode
from reconcile.ldpc_decoder import LANES, Decoder, simd_level

MET_MAX_RATE = 0.2  # the MET family covers 0.01 - 0.2; above, standard codes are closer
MET_RATE_TOLERANCE = 0.1  # use a MET code only if its rate is within 10 % of the request
DEFAULT_MET_N = 200_000


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ldpc",
        help="reconciliation benchmark: MDR + LDPC decoding at a target efficiency beta",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("--rate", type=float, help="code rate R (picks the code; see --code)")
    p.add_argument("--beta", type=float, help="target efficiency beta in (0, 1] (mdr method)")
    p.add_argument(
        "--method", choices=("mdr", "slice"), default="mdr", help="reconciliation (default mdr)"
    )
    p.add_argument("--snr", type=float, help="channel SNR per real dimension (slice method)")
    p.add_argument("--slices", type=int, default=4, help="slices q (slice method, default 4)")
    p.add_argument(
        "--margins",
        default="1,0.02,0.03,0.05",
        help="per-slice margins in bits, 1 = disclose (slice method, default %(default)s)",
    )
    p.add_argument("--z", type=int, default=384, help="5G lifting size (slice method)")
    p.add_argument("--code", help="code name instead of --rate (a MET code or a standard code)")
    p.add_argument("--n", type=int, help=f"block length of MET codes (default {DEFAULT_MET_N})")
    p.add_argument(
        "--dim",
        type=int,
        default=8,
        choices=mdr.DIMENSIONS,
        help="MDR dimension d (default %(default)s)",
    )
    p.add_argument("--frames", type=int, default=16, help="frames to decode (default 16)")
    p.add_argument("--max-iter", type=int, default=200, help="decoder iterations (default 200)")
    p.add_argument("--threads", type=int, default=1, help="decoder threads (default 1)")
    p.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _met():
    """reconcile.met_codes, or None if the MET family is not installed."""
    try:
        from reconcile import met_codes
    except ImportError:  # pragma: no cover - the module ships with the package
        return None
    return met_codes


def choose_code(rate: float | None, name: str | None, n: int | None) -> tuple[LdpcCode, str]:
    """(code, family) for the request: family is "met" or "standard"."""
    met = _met()
    if name is not None:
        if met is not None and name in met.specs():
            return met.get_code(name, met.nearest_n(name, n or DEFAULT_MET_N)), "met"
        return standard_codes.standard_code(name), "standard"
    if rate is None:
        raise UsageError("give --rate or --code")
    if not 0 < rate < 1:
        raise UsageError(f"--rate must be in (0, 1), got {rate}")
    if met is not None and met.specs() and rate <= MET_MAX_RATE:
        spec = met.for_rate(rate)
        if abs(spec.rate - rate) <= MET_RATE_TOLERANCE * rate:
            return met.get_code(spec.name, met.nearest_n(spec.name, n or DEFAULT_MET_N)), "met"
    return standard_codes.closest_standard_code(rate), "standard"


def simulate(
    code: LdpcCode,
    beta: float,
    dim: int,
    frames: int,
    seed: int,
    max_iter: int,
    threads: int,
) -> dict[str, Any]:
    """Run the benchmark on `code`; returns the report fields (see the module docstring)."""
    rate = code.rate
    snr = 2.0 ** (2.0 * rate / beta) - 1.0
    sigma2 = 1.0 / snr
    rng = np.random.default_rng(seed)
    fixed = np.zeros(code.n, bool)
    fixed[code.punctured] = True
    fixed[code.shortened] = True
    carried = np.flatnonzero(~fixed)  # bits carried by quantum symbols, in symbol order
    if carried.size % dim:
        raise UsageError(f"{carried.size} transmitted bits are not a multiple of d={dim}")
    words = rng.integers(0, 2, (frames, code.n), dtype=np.uint8)
    words[:, code.shortened] = 0
    llr = np.zeros((frames, code.n), np.float32)
    for f in range(frames):
        x = rng.standard_normal(carried.size)
        y = x + math.sqrt(sigma2) * rng.standard_normal(carried.size)
        alpha, norms = mdr.bob_encode(y, words[f, carried], dim)
        llr[f, carried] = mdr.alice_llr(x, alpha, norms, dim, sigma2)
    syndrome = code.syndrome(words)
    dec = Decoder(code)
    start, cpu_start = time.perf_counter(), time.process_time()
    res = dec.decode(llr, syndrome, max_iter=max_iter, threads=threads)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    ok = np.all(res.bits == words, axis=1)
    passes = res.group_passes * LANES  # lane-passes run (lanes refill from the call's queue)
    work = code.edges * max(passes, 1)
    used = min(threads, -(-frames // LANES))  # a thread runs one group of LANES lanes
    return {
        "beta": rate / (0.5 * math.log2(1.0 + snr)),
        "snr": snr,
        "fer": float(1.0 - ok.mean()),
        "undetected_errors": int(np.count_nonzero(res.converged & ~ok)),
        "avg_iterations": float(res.iterations.mean()),
        "mbps": frames * code.n / wall / 1e6,
        "ns_per_edge_iteration": wall * used * 1e9 / work,
        "cpu_ns_per_edge_iteration": cpu * 1e9 / work,
        "decode_seconds": wall,
        "frames": frames,
        "dim": dim,
        "max_iter": max_iter,
        "threads": used,
        "simd": simd_level(),
        "code": {
            "name": code.name,
            "n": code.n,
            "k": code.k,
            "rate": rate,
            "edges": code.edges,
            "edges_scheduled": dec.scheduled_edges,
            "punctured": int(code.punctured.size),
            "shortened": int(code.shortened.size),
        },
    }


def simulate_slice(
    snr: float,
    q: int,
    margins: tuple[float, ...],
    z: int,
    frames: int,
    seed: int,
    max_iter: int,
    threads: int,
) -> dict[str, Any]:
    """Slice reconciliation at `snr`: beta, fer and decoder figures (see the module doc)."""
    from reconcile import slice_reconciliation as sr

    sigma2 = 1.0 / snr
    plan = sr.design(snr, q, z, margins)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((frames, plan.n_dims))
    y = x + math.sqrt(sigma2) * rng.standard_normal(x.shape)
    msg, words = sr.bob_encode(plan, y, sim_rng=rng)
    start = time.perf_counter()
    res = sr.alice_decode(plan, x, sigma2, msg, max_iter=max_iter, threads=threads)
    wall = time.perf_counter() - start
    ok = np.all([np.all(w == v, axis=1) for w, v in zip(words, res.words, strict=True)], axis=0)
    coded = [c for c in plan.codes if c is not None]
    return {
        "method": "slice",
        "beta": plan.beta(1.0, sigma2),
        "snr": snr,
        "fer": float(1.0 - ok.mean()),
        "undetected_errors": int(np.count_nonzero(res.ok & ~ok)),
        "avg_iterations": float(np.mean([v.mean() for v in res.iterations.values()] or [0])),
        "mbps": frames * sum(c.code.n for c in coded) / wall / 1e6,
        "decode_seconds": wall,
        "frames": frames,
        "threads": threads,
        "slices": [
            {"disclosed": True}
            if c is None
            else {"code": c.code.name, "n": c.code.n, "leak": c.leak, "edges": c.code.edges}
            for c in plan.codes
        ],
    }


def _run_slice(args: argparse.Namespace) -> int:
    if args.snr is None or not args.snr > 0:
        raise UsageError("--method slice needs --snr > 0")
    try:
        margins = tuple(float(v) for v in args.margins.split(","))
    except ValueError as exc:
        raise UsageError(f"--margins must be comma-separated numbers: {args.margins!r}") from exc
    if len(margins) != args.slices or not 1 <= args.slices <= 8:
        raise UsageError(f"--slices must be in 1..8 with one margin per slice, got {margins}")
    report = simulate_slice(
        args.snr, args.slices, margins, args.z, args.frames, args.seed, args.max_iter, args.threads
    )
    if args.json:
        print(json.dumps(report))
        return 0
    for key, value in report.items():
        print(f"{key}: {value:.6g}" if isinstance(value, float) else f"{key}: {value}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.frames < 1:
        raise UsageError("--frames must be >= 1")
    if args.max_iter < 1:
        raise UsageError("--max-iter must be >= 1")
    if not 1 <= args.threads <= 64:
        raise UsageError("--threads must be in 1..64")
    if args.method == "slice":
        return _run_slice(args)
    if args.beta is None:
        raise UsageError("--beta is required (mdr method)")
    if not 0 < args.beta <= 1:
        raise UsageError(f"--beta must be in (0, 1], got {args.beta}")
    if args.n is not None and args.n < 1:
        raise UsageError("--n must be >= 1")
    code, family = choose_code(args.rate, args.code, args.n)
    report = simulate(
        code, args.beta, args.dim, args.frames, args.seed, args.max_iter, args.threads
    )
    report["code"]["family"] = family
    if args.n is not None and family == "standard" and args.n != code.n:
        report["note"] = f"--n ignored: standard code {code.name} has n = {code.n}"
    if args.json:
        print(json.dumps(report))
        return 0
    c = report["code"]
    print(
        f"code: {c['name']} ({family}) n={c['n']} k={c['k']} rate={c['rate']:.5f} "
        f"edges={c['edges']} (scheduled {c['edges_scheduled']})"
    )
    for key in (
        "beta",
        "snr",
        "fer",
        "undetected_errors",
        "avg_iterations",
        "mbps",
        "ns_per_edge_iteration",
        "cpu_ns_per_edge_iteration",
        "frames",
        "dim",
        "threads",
        "simd",
    ):
        value = report[key]
        print(f"{key}: {value:.6g}" if isinstance(value, float) else f"{key}: {value}")
    if "note" in report:
        print(f"note: {report['note']}")
    return 0
