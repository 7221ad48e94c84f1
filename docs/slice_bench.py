"""Slice reconciliation at one SNR: efficiency beta and FER with the C decoder (simulated data).

    .venv/bin/python docs/slice_bench.py --snr 3 --q 4 --margins 1,0.02,0.03,0.05 --frames 64

x ~ N(0, 1), y = x + z with Var z = 1/SNR (seeded: test data, not key material); the plan comes
from reconcile.slice_reconciliation.design (margin 1 discloses a slice). A frame is an error
unless every slice word Alice decodes equals Bob's. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from reconcile import slice_reconciliation as sr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--snr", type=float, required=True)
    p.add_argument("--q", type=int, required=True)
    p.add_argument("--margins", required=True, help="q comma-separated margins (bits)")
    p.add_argument("--z", type=int, default=384, help="5G lifting size (frame = 24 z samples)")
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--max-iter", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    margins = tuple(float(v) for v in a.margins.split(","))
    sigma2 = 1.0 / a.snr
    plan = sr.design(a.snr, a.q, a.z, margins)
    rng = np.random.default_rng(a.seed)
    x = rng.standard_normal((a.frames, plan.n_dims))
    y = x + math.sqrt(sigma2) * rng.standard_normal(x.shape)
    msg, words = sr.bob_encode(plan, y, sim_rng=rng)
    start = time.perf_counter()
    res = sr.alice_decode(plan, x, sigma2, msg, max_iter=a.max_iter, threads=a.threads)
    wall = time.perf_counter() - start
    ok = np.all([np.all(w == v, axis=1) for w, v in zip(words, res.words, strict=True)], axis=0)
    caps = sr.slice_capacities(sigma2, plan.boundaries)
    print(json.dumps({
        "snr": a.snr,
        "q": a.q,
        "margins": margins,
        "n_dims": plan.n_dims,
        "capacities": [round(float(c), 4) for c in caps],
        "slices": [
            "disclosed" if c is None else {"code": c.code.name, "leak": round(c.leak, 4)}
            for c in plan.codes
        ],
        "beta": plan.beta(1.0, sigma2),
        "beta_bound_quantiser": float(caps.sum() / (0.5 * math.log2(1 + a.snr))),
        "frame_errors": int(np.count_nonzero(~ok)),
        "undetected": int(np.count_nonzero(res.ok & ~ok)),
        "frames": a.frames,
        "avg_iterations": {str(i): float(v.mean()) for i, v in res.iterations.items()},
        "decode_seconds": wall,
    }))


if __name__ == "__main__":
    main()
