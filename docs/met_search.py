"""Grid search of raptor-like MET ensembles by GA threshold (how the family was designed).

    .venv/bin/python docs/met_search.py --rate 0.1 --core 1.2,1.25,1.3 --ldgm 2.8,3.0 \
        --extra 8,12 --forest

Prints one line per ensemble: the GA threshold beta (1500 iterations, 9 bisection steps, as in
the search recorded in docs/reconciliation.md) and the parameters. `--core` is core/k (k =
rate * base_n), `--ldgm` the mean LDGM check degree, `--deg3` the fraction of the core with
precode degree 3; `--forest` instead gives precode degree 3 to all but precode checks - 1 core
variables, so the degree-2 ones can be laid out without cycles (the project's choice).
The winners were re-evaluated with `met_design.threshold` defaults (3000 iterations, 16 steps)
for reconcile/data/met_codes.json (`met_codes.describe`).
"""

from __future__ import annotations

import argparse
import itertools

from reconcile import met_design


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rate", type=float, required=True)
    p.add_argument("--base-n", type=int, default=1000)
    p.add_argument("--core", type=floats, required=True)
    p.add_argument("--ldgm", type=floats, required=True)
    p.add_argument("--extra", type=floats, required=True)
    p.add_argument("--deg3", type=floats, default=[0.45])
    p.add_argument("--forest", action="store_true")
    args = p.parse_args()
    k = round(args.rate * args.base_n)
    for cf, g, ex, f3 in itertools.product(args.core, args.ldgm, args.extra, args.deg3):
        core = round(cf * k)
        n1 = args.base_n - core
        deg3 = k + 1 if args.forest else round(f3 * core)
        try:
            ens = met_design.raptor_like(
                "search", args.rate, args.base_n, core, deg3, round(g * n1), int(ex)
            )
            th = met_design.threshold(ens, max_iter=1500, steps=9)
        except ValueError as exc:
            print(f"core/k={cf} ldgm={g} extra={ex}: {exc}")
            continue
        print(f"{th.beta:.4f}  core/k={cf} deg3={deg3}/{core} ldgm={g} extra={int(ex)}",
              flush=True)


if __name__ == "__main__":
    main()
