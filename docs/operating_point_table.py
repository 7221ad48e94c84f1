"""Summarise operating-point sweeps into reconcile/data/operating_points.json (and a table).

Reads the per-codeword iteration counts of `docs/operating_point_sweep.py` runs
(docs/fer/op_*.json), pools runs of the same code and beta, and evaluates every iteration cap
up to the runs': a codeword succeeds at cap c if it decoded to Bob's word within c passes. For
each (code, beta, cap):

- errors at the cap, mean passes of the codewords that decoded;
- the expected passes of a group of 8 codewords, E[max of 8 draws] of min(passes, cap) (failures
  count c) from the empirical distribution, which with the decoder's scheduled edges per real
  gives the CPU per real (reconcile.operating_point.MeasuredPoint.ns_per_real);
- for lane refill (a group given more than 8 codewords): the mean passes per codeword and the
  expected group passes * 8 / n for n = 8, 16, 32, 64 codewords per group (seeded Monte Carlo
  of the decoder's list scheduling, `operating_point.refill_group_passes`).

    .venv/bin/python docs/operating_point_table.py docs/fer/op_*.json \
        --caps 50,75,100,150,200,300 --out reconcile/data/operating_points.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from reconcile.operating_point import (
    NS_PER_EDGE_PASS,
    REFILL_SIZES,
    expected_group_max,
    refill_group_passes,
)


def rows_of(runs: list[dict], caps: list[int]) -> list[dict]:
    """Rows per (SNR, mother, n_tx, beta, cap); runs of the same code and beta are pooled."""
    pooled: dict[tuple, dict] = {}
    for run in runs:
        for p in run["points"]:
            key = (run["snr"], run["mother"], p["n_tx"], p["n"], round(p["beta"], 5))
            entry = pooled.setdefault(key, {"point": p, "iterations": [],
                                            "max_iter": run["max_iter"]})
            entry["iterations"] += p["iterations"]
            entry["max_iter"] = min(entry["max_iter"], run["max_iter"])
    out = []
    for (snr, mother, n_tx, n, beta), entry in sorted(pooled.items()):
        p, iters = entry["point"], np.array(entry["iterations"])
        ok_any = iters >= 0
        for cap in (c for c in caps if c <= entry["max_iter"]):
            ok = ok_any & (iters <= cap)
            passes = np.where(ok, iters, cap)
            out.append({
                "snr": snr, "mother": mother, "n_tx": n_tx,
                "punctured_fraction": round((n - n_tx) / n, 5),
                "beta": beta, "max_iter": cap, "frames": int(iters.size),
                "errors": int(iters.size - ok.sum()),
                "mean_iterations": round(float(iters[ok].mean()), 2) if ok.any() else float(cap),
                "group_passes": round(expected_group_max(passes), 2),
                "edges_per_real": round(p["scheduled_edges"] / n_tx, 5),
                "mean_passes": round(float(passes.mean()), 2),
                "refill_passes": [round(expected_group_max(passes), 2)] + [
                    round(refill_group_passes(passes, w) * 8 / w, 2) for w in REFILL_SIZES[1:]],
            })
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--caps", default="50,75,100,150,200,300,500")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    caps = [int(c) for c in args.caps.split(",")]
    rows = rows_of([json.loads(Path(f).read_text()) for f in sorted(args.files)], caps)
    doc = {
        "comment": "Measured reconciliation operating points (docs/operating_point_table.py from "
                   "docs/fer/op_*.json; method in docs/reconciliation.md, 'Operating point').",
        "sources": sorted(Path(f).name for f in args.files),
        "points": rows,
    }
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print("| SNR | mother | n_tx | punct. | beta | cap | errors/frames | mean it. | group passes "
          "| ns/real |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ns = NS_PER_EDGE_PASS * r["edges_per_real"] * r["group_passes"]
        print(f"| {r['snr']} | {r['mother']} | {r['n_tx']} | {r['punctured_fraction']:.3f} | "
              f"{r['beta']:.3f} | {r['max_iter']} | {r['errors']}/{r['frames']} | "
              f"{r['mean_iterations']:.0f} | {r['group_passes']:.0f} | {ns:.0f} |")


if __name__ == "__main__":
    main()
