"""Measure FER against beta for the MET code family and plot it (docs/reconciliation.md).

Simulates the full reverse-reconciliation chain on Gaussian data: x ~ N(0, 1), y = x + z with
Var(z) = 1/SNR at the SNR that gives efficiency beta for the code's rate, d = 8 MDR, Bob's
syndrome, Alice's syndrome decoding with the C decoder. A frame is an error unless the decoder
converged to exactly Bob's word.

    .venv/bin/python docs/fer_curves.py run --code met_r0.10 --n 200000 \
        --betas 0.88,0.9,0.92,0.93,0.94 --frames 16 --out docs/fer/met_r0.10_n200000.json
    .venv/bin/python docs/fer_curves.py plot docs/fer/*.json --out docs/fer_curves.png
    .venv/bin/python docs/fer_curves.py adapt --code met_r0.10 --n 200000 --beta 0.88 \
        --snrs 0.13,0.15,0.17,0.19 --out docs/fer/adapt_met_r0.10.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from reconcile import mdr, met_codes, rate_adapt
from reconcile.ldpc_decoder import Decoder
from reconcile.met_design import snr_for_beta


def run(args: argparse.Namespace) -> None:
    code = met_codes.get_code(args.code, args.n)
    dec = Decoder(code)
    rng = np.random.default_rng(args.seed)
    points = []
    for beta in (float(b) for b in args.betas.split(",")):
        snr = snr_for_beta(code.rate, beta)
        errors = undetected = iters = 0
        elapsed = 0.0
        for start in range(0, args.frames, args.batch):
            f = min(args.batch, args.frames - start)
            words = rng.integers(0, 2, (f, code.n), dtype=np.uint8)
            llr = np.empty((f, code.n), np.float32)
            for i in range(f):
                x = rng.normal(size=code.n)
                y = x + rng.normal(scale=np.sqrt(1.0 / snr), size=code.n)
                alpha, norms = mdr.bob_encode(y, words[i], args.dim)
                llr[i] = mdr.alice_llr(x, alpha, norms, args.dim, 1.0 / snr)
            t0 = time.perf_counter()
            res = dec.decode(llr, code.syndrome(words), max_iter=args.max_iter,
                             threads=args.threads)
            elapsed += time.perf_counter() - t0
            ok = res.converged & np.all(res.bits == words, axis=1)
            errors += int(f - ok.sum())
            undetected += int(np.sum(res.converged & ~ok))
            iters += int(res.iterations.sum())
        point = {"beta": beta, "snr": snr, "frames": args.frames, "errors": errors,
                 "fer": errors / args.frames, "undetected": undetected,
                 "avg_iterations": iters / args.frames,
                 "decode_seconds": elapsed}
        print(json.dumps(point), flush=True)
        points.append(point)
    spec = met_codes.spec(args.code)
    out = {"code": args.code, "n": code.n, "rate": code.rate, "edges": code.edges,
           "dim": args.dim, "max_iter": args.max_iter, "threshold_beta": spec.threshold_beta,
           "load_average": os.getloadavg(), "points": points}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


def adapt(args: argparse.Namespace) -> None:
    """FER of the mother code (or, with --code family, of `rate_adapt.select`) adapted to each
    SNR for efficiency --beta."""
    mother = None if args.code == "family" else met_codes.get_code(args.code, args.n)
    rng = np.random.default_rng(args.seed)
    points = []
    for snr in (float(v) for v in args.snrs.split(",")):
        if mother is None:  # the family: puncture the next lower-rate member
            a = rate_adapt.select(snr, args.beta, args.n, d=args.dim)
        else:
            a = rate_adapt.for_snr(mother, snr, args.beta, d=args.dim, max_fraction=0.5)
        code, f = a.code, args.frames
        words = np.empty((f, code.n), np.uint8)
        llr = np.empty((f, code.n), np.float32)
        for i in range(f):
            words[i] = rate_adapt.bob_word(a, rng.integers(0, 2, code.n - a.shortened))
            x = rng.normal(size=a.transmitted.size)
            y = x + rng.normal(scale=np.sqrt(1.0 / snr), size=x.size)
            alpha, norms = mdr.bob_encode(y, words[i, a.transmitted], args.dim)
            llr[i] = rate_adapt.alice_llr(a, mdr.alice_llr(x, alpha, norms, args.dim, 1 / snr))
        res = Decoder(code).decode(llr, code.syndrome(words), max_iter=args.max_iter,
                                   threads=args.threads)
        ok = res.converged & np.all(res.bits == words, axis=1)
        point = {"snr": snr, "code": a.code.name, "rate": a.rate, "punctured": a.punctured,
                 "shortened": a.shortened, "beta": a.beta(snr), "frames": f,
                 "errors": int(f - ok.sum()), "avg_iterations": float(res.iterations.mean())}
        print(json.dumps(point), flush=True)
        points.append(point)
    out = {"code": args.code, "n": args.n, "target_beta": args.beta,
           "load_average": os.getloadavg(), "points": points}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


def plot(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for path in sorted(p for p in args.files if not Path(p).name.startswith("adapt")):
        d = json.loads(Path(path).read_text())
        pts = sorted(d["points"], key=lambda p: p["beta"])
        b = np.array([p["beta"] for p in pts])
        fer = np.array([max(p["fer"], 0.5 / p["frames"]) for p in pts])
        zero = np.array([p["errors"] == 0 for p in pts])
        line, = ax.semilogy(b, fer, "-", label=f"{d['code']} n={d['n']} (R={d['rate']:.3f})")
        c = line.get_color()
        ax.semilogy(b[~zero], fer[~zero], "o", color=c)
        ax.semilogy(b[zero], fer[zero], "o", mfc="none", color=c)
        ax.axvline(d["threshold_beta"], color=c, ls=":", lw=1)
    ax.set_xlabel("reconciliation efficiency beta")
    ax.set_ylabel("frame error rate")
    ax.set_title("MET codes, d = 8 MDR, sum-product (dotted: GA threshold;\n"
                 "hollow: no error in the frames run, drawn at 1/(2 frames))", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--code", required=True)
    r.add_argument("--n", type=int, required=True)
    r.add_argument("--betas", required=True)
    r.add_argument("--frames", type=int, default=16)
    r.add_argument("--batch", type=int, default=16)
    r.add_argument("--dim", type=int, default=8)
    r.add_argument("--max-iter", type=int, default=500)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--out", required=True)
    r.set_defaults(func=run)
    a = sub.add_parser("adapt")
    a.add_argument("--code", required=True)
    a.add_argument("--n", type=int, required=True)
    a.add_argument("--beta", type=float, required=True)
    a.add_argument("--snrs", required=True)
    a.add_argument("--frames", type=int, default=16)
    a.add_argument("--dim", type=int, default=8)
    a.add_argument("--max-iter", type=int, default=500)
    a.add_argument("--threads", type=int, default=2)
    a.add_argument("--seed", type=int, default=1)
    a.add_argument("--out", required=True)
    a.set_defaults(func=adapt)
    q = sub.add_parser("plot")
    q.add_argument("files", nargs="+")
    q.add_argument("--out", required=True)
    q.set_defaults(func=plot)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
