"""Measure reconciliation operating points: beta vs FER vs iterations vs CPU per symbol.

For one SNR (per real dimension) and one punctured MET mother code, simulates the link's
reverse reconciliation (x ~ N(0, 1), y = x + z, Var z = 1/SNR, d = 8 MDR, Bob's word with
random bits at the punctured positions, Alice's syndrome decoding with the C decoder) at several
efficiencies beta and records, per codeword, the layered iteration at which it decoded to
Bob's word (-1: never within --max-iter, or to a wrong word). The decoder is deterministic and
a frame's result does not depend on its group-mates, so one run at --max-iter answers every
smaller iteration cap: a codeword that decodes at iteration i succeeds for any cap >= i.

CPU: process CPU time of each decode call (all decoder threads) and, for the cost model of
`reconcile.operating_point`, the groups of 8 frames the decoder runs together (a group runs
until its slowest lane stops, so a failing frame costs the whole group `max_iter` passes).

    nice -n 10 .venv/bin/python docs/operating_point_sweep.py --snr 0.4 --code met_r0.20 \
        --n-tx 235904 --betas 0.90,0.92,0.93,0.94 --frames 64 --seed 1 \
        --out docs/fer/op_snr0.40_ntx235904.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from reconcile import mdr, met_codes, rate_adapt
from reconcile.ldpc_decoder import LANES, Decoder
from reconcile.met_design import capacity_awgn
from reconcile.operating_point import adapted_code


def run_point(args: argparse.Namespace, beta: float, rng: np.random.Generator) -> dict:
    a = adapted_code(args.code, args.n_tx, beta * capacity_awgn(args.snr), d=args.dim)
    code = a.code
    dec = Decoder(code)
    iters: list[int] = []
    cpu = wall = 0.0
    group_passes = undetected = 0
    for start in range(0, args.frames, LANES):
        f = min(LANES, args.frames - start)
        words = np.empty((f, code.n), np.uint8)
        llr = np.empty((f, code.n), np.float32)
        for i in range(f):
            words[i] = rate_adapt.bob_word(a, rng.integers(0, 2, code.n - a.shortened))
            x = rng.normal(size=a.transmitted.size)
            y = x + rng.normal(scale=np.sqrt(1.0 / args.snr), size=x.size)
            alpha, norms = mdr.bob_encode(y, words[i, a.transmitted], args.dim)
            llr[i] = rate_adapt.alice_llr(
                a, mdr.alice_llr(x, alpha, norms, args.dim, 1.0 / args.snr))
        syn = code.syndrome(words)
        c0, w0 = time.process_time(), time.perf_counter()
        res = dec.decode(llr, syn, max_iter=args.max_iter, threads=args.threads)
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
        ok = res.converged & np.all(res.bits == words, axis=1)
        iters += [int(it) if good else -1 for it, good in zip(res.iterations, ok, strict=True)]
        group_passes += res.group_passes
        undetected += int(np.sum(res.converged & ~ok))
    errors = sum(1 for i in iters if i < 0)
    point = {
        "beta_requested": beta, "beta": a.beta(args.snr), "rate": a.rate, "n": code.n,
        "n_tx": int(a.transmitted.size), "punctured": a.punctured, "code": code.name,
        "scheduled_edges": dec.scheduled_edges, "frames": args.frames, "errors": errors,
        "undetected": undetected,
        "iterations": iters, "group_passes": group_passes, "cpu_seconds": cpu,
        "wall_seconds": wall,
        "cpu_ns_per_edge_pass": cpu * 1e9 / (dec.scheduled_edges * LANES * group_passes),
        "load_average": os.getloadavg(),
    }
    summary = {k: v for k, v in point.items() if k != "iterations"}
    ok_iters = [i for i in iters if i >= 0]
    summary["mean_iter_ok"] = float(np.mean(ok_iters)) if ok_iters else None
    print(json.dumps(summary), flush=True)
    return point


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--snr", type=float, required=True, help="SNR per real dimension (linear)")
    p.add_argument("--code", default="met_r0.20", help="MET mother code name")
    p.add_argument("--n-tx", type=int, required=True, help="transmitted reals per codeword")
    p.add_argument("--betas", required=True, help="comma-separated efficiencies")
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--max-iter", type=int, default=500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dim", type=int, default=8)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)
    spec = met_codes.spec(args.code)
    out = {"snr": args.snr, "mother": args.code, "mother_rate": spec.rate, "n_tx": args.n_tx,
           "dim": args.dim, "max_iter": args.max_iter, "threads": args.threads,
           "seed": args.seed, "points": []}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    for beta in args.betas.split(","):  # the file is rewritten after every point
        out["points"].append(run_point(args, float(beta), rng))
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
