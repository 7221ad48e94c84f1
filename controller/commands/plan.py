"""`cvqkd plan`: secret key rate versus fibre length, beside the PLOB bound (table, JSON, PNG).

The operator's tool for choosing between a metro and a long-haul link: for each distance of
START:STOP:STEP km it reports T, V_A, the asymptotic K, K in bit/s (with --symbol-rate), the
finite-size rates (with --n-total) and PLOB, and where each rate reaches zero.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from controller.cli import UsageError
from controller.commands.keyrate import add_physics_arguments, compute, json_number, noise_label
from reconcile import keyrate

MAX_POINTS = 10_000
_BISECTION_STEPS = 60  # distance interval shrinks by 2^-60: far below any printed digit
# The reach search stops at this transmittance: below it K is smaller than the ~1e-15 bit
# absolute accuracy of the entropies (docs/security-model.md, "Numerics").
MIN_SEARCH_T = 1e-10


def parse_range(text: str) -> np.ndarray:
    """'START:STOP:STEP' (km) -> distances START, START+STEP, ..., STOP (STOP included when it
    falls on the grid)."""
    parts = text.split(":")
    if len(parts) != 3:
        raise UsageError(f"--distance-km must be START:STOP:STEP, got {text!r}")
    try:
        start, stop, step = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"--distance-km must be three numbers START:STOP:STEP, got {text!r}")\
            from None
    if not all(np.isfinite((start, stop, step))):
        raise UsageError("--distance-km values must be finite")
    if start < 0 or stop < start or step <= 0:
        raise UsageError(f"--distance-km needs 0 <= START <= STOP and STEP > 0, got {text!r}")
    count = int(np.floor((stop - start) / step * (1 + 1e-12))) + 1
    if count > MAX_POINTS:
        raise UsageError(f"--distance-km gives {count} points; at most {MAX_POINTS}")
    return start + step * np.arange(count)


def _rates(args: argparse.Namespace, dist: np.ndarray) -> dict[str, np.ndarray]:
    return compute(args, keyrate.fibre_transmittance(dist, args.loss_db_per_km))


def max_distance(
    args: argparse.Namespace, dist: np.ndarray, k_raw: np.ndarray, key: str,
) -> float | None:
    """Distance (km) where the rate `key` (unclipped) crosses zero, refined by bisection between
    the points around its first sign change; None if it is positive nowhere on the grid. When it
    is still positive at STOP the search continues beyond the grid (doubling the distance) down
    to T = MIN_SEARCH_T; +inf if the rate is still positive there."""
    positive = k_raw > 0
    if not positive[0]:
        return None
    if positive.all():
        lo = float(dist[-1])
        d_max = -10.0 * np.log10(MIN_SEARCH_T) / max(args.loss_db_per_km, 1e-12)
        hi = min(max(2.0 * lo, lo + 10.0), d_max)
        while lo < d_max and _rates(args, np.array([hi]))[key][0] > 0:
            lo, hi = hi, min(2.0 * hi, d_max)
        if lo >= d_max:
            return float("inf")
    else:
        i = int(np.argmin(positive))  # first non-positive point
        lo, hi = float(dist[i - 1]), float(dist[i])
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if _rates(args, np.array([mid]))[key][0] > 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-9 * max(hi, 1.0):
            break
    return lo


def compute_plan(args: argparse.Namespace) -> dict[str, Any]:
    """The plan as plain data: distances, every rate, and the maximum distances."""
    if args.symbol_rate is not None:
        keyrate.check_range("symbol_rate", args.symbol_rate, 0.0)
    dist = parse_range(args.distance_km)
    res = _rates(args, dist)
    reach = {"K": max_distance(args, dist, res["K_unclipped"], "K_unclipped")}
    if args.n_total is not None:
        for key in ("K_finite", "K_composable"):
            reach[key] = max_distance(args, dist, res[f"{key}_unclipped"], f"{key}_unclipped")
    return {"distance_km": dist, "rates": res, "max_distance_km": reach}


def _columns(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(rates key, header, format) of the table and JSON rows."""
    cols = [("transmittance", "T", ".4e"), ("v_a", "V_A", ".3g"), ("K", "K [b/sym]", ".4e")]
    if args.symbol_rate is not None:
        cols.append(("rate_bps", "K [b/s]", ".4e"))
    if args.n_total is not None:
        cols += [("K_finite", "K_fin [b/sym]", ".4e"), ("K_composable", "K_comp [b/sym]", ".4e")]
        if args.symbol_rate is not None:
            cols += [("K_finite_bps", "K_fin [b/s]", ".4e"),
                     ("K_composable_bps", "K_comp [b/s]", ".4e")]
    cols.append(("plob", "PLOB [b/sym]", ".4e"))
    return cols


def _with_bps(args: argparse.Namespace, res: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = dict(res)
    if args.symbol_rate is not None:
        out["rate_bps"] = res["K"] * args.symbol_rate
        if args.n_total is not None:
            out["K_finite_bps"] = res["K_finite"] * args.symbol_rate
            out["K_composable_bps"] = res["K_composable"] * args.symbol_rate
    return out


def _reach_text(name: str, reach: float | None, stop: float) -> str:
    if reach is None:
        return f"{name}: no key at any distance of the range"
    if np.isinf(reach):
        return f"{name}: > 0 down to T = {MIN_SEARCH_T:g} (reach not resolved)"
    where = "beyond the table" if reach > stop else "within the table"
    return f"{name} reaches zero at {reach:.2f} km ({where})"


def format_plan(args: argparse.Namespace, plan: dict[str, Any]) -> str:
    res = _with_bps(args, plan["rates"])
    cols = _columns(args)
    va = "optimised" if args.optimize_va else f"{args.va:g} SNU"
    lines = [f"{args.detection} detection, {args.detector} detector, V_A {va}, "
             f"{noise_label(args)}, eta = {args.eta:g}, v_el = {args.vel:g} SNU, "
             f"beta = {args.beta:g}, fibre {args.loss_db_per_km:g} dB/km"]
    if args.n_total is not None:
        lines.append(f"finite size: N = {args.n_total:.3g} symbols, PE fraction "
                     f"{args.pe_fraction:g}, epsilon {args.epsilon:g}, FER {args.fer:g}")
    widths = [max(len(h), 11) for _, h, _ in cols]
    lines.append(f"{'L [km]':>8}  " + "  ".join(f"{h:>{w}}" for (_, h, _), w in zip(cols, widths,
                                                                                  strict=True)))
    for i, d in enumerate(plan["distance_km"]):
        cells = [f"{res[k][i]:{fmt}}" for k, _, fmt in cols]
        lines.append(f"{d:>8.2f}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths,
                                                                              strict=True)))
    stop = float(plan["distance_km"][-1])
    for key, label in (("K", "asymptotic K"), ("K_finite", "finite-size K"),
                       ("K_composable", "composable K")):
        if key in plan["max_distance_km"]:
            lines.append(_reach_text(label, plan["max_distance_km"][key], stop))
    return "\n".join(lines)


def plan_json(args: argparse.Namespace, plan: dict[str, Any]) -> str:
    res = _with_bps(args, plan["rates"])
    keys = ["distance_km"] + [k for k, _, _ in _columns(args)] + ["xi", "I_AB", "chi_BE"]
    if args.n_total is not None:
        keys += ["T_min", "xi_max"]
    table = {**res, "distance_km": plan["distance_km"]}
    rows = [{k: json_number(table[k][i]) for k in keys} for i in range(len(plan["distance_km"]))]
    reach = {k: (None if v is None else ("beyond_range" if np.isinf(v) else v))
             for k, v in plan["max_distance_km"].items()}
    obj = {
        "parameters": {"detection": args.detection, "detector": args.detector,
                       "va": None if args.optimize_va else args.va,
                       "va_optimized": bool(args.optimize_va),
                       "xi": args.xi if args.xi_output is None else None,
                       "xi_output": args.xi_output, "eta": args.eta,
                       "v_el": args.vel, "beta": args.beta,
                       "loss_db_per_km": args.loss_db_per_km, "symbol_rate": args.symbol_rate,
                       "n_total": args.n_total, "pe_fraction": args.pe_fraction,
                       "epsilon": args.epsilon, "fer": args.fer},
        "rows": rows,
        "max_distance_km": reach,
    }
    return json.dumps(obj, allow_nan=False)


def write_plot(args: argparse.Namespace, plan: dict[str, Any], path: str) -> None:
    """Log-scale plot of the rates and PLOB versus distance (PNG, matplotlib Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dist, res = plan["distance_km"], plan["rates"]
    scale = args.symbol_rate if args.symbol_rate is not None else 1.0
    unit = "bit/s" if args.symbol_rate is not None else "bit/symbol"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = [("K", "asymptotic K", "-"), ("K_finite", "finite-size K (LGG)", "--"),
              ("K_composable", "composable K", "-."), ("plob", "PLOB bound", ":")]
    for key, label, style in series:
        if key in res:
            y = np.where(np.isfinite(res[key]) & (res[key] > 0), res[key] * scale, np.nan)
            ax.plot(dist, y, style, label=label)
    reach = plan["max_distance_km"]["K"]
    if reach is not None and reach <= dist[-1]:  # a marker beyond the table would rescale
        ax.axvline(reach, color="grey", lw=0.8)
        ax.annotate(f"{reach:.1f} km", (reach, 0.02), xycoords=("data", "axes fraction"))
    ax.set_yscale("log")
    ax.set_xlabel("fibre length [km]")
    ax.set_ylabel(f"secret key rate [{unit}]")
    ax.set_title(f"GG02, {args.detection}, {args.detector} detector, {noise_label(args)}",
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path, format="png", dpi=120)
    except OSError as exc:
        raise UsageError(f"cannot write plot {path!r}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)


def _run(args: argparse.Namespace) -> int:
    plan = compute_plan(args)
    if args.plot:
        write_plot(args, plan, args.plot)
    print(plan_json(args, plan) if args.json else format_plan(args, plan))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plan", help="key rate versus fibre length, with the PLOB bound (table, JSON, PNG)",
        description="Secret key rate of a GG02 link versus distance beside the repeaterless "
                    "PLOB bound. See docs/security-model.md.")
    p.add_argument("--distance-km", required=True, metavar="START:STOP:STEP",
                   help="fibre lengths in km, e.g. 0:150:10 (STOP included)")
    p.add_argument("--symbol-rate", type=float, metavar="HZ",
                   help="symbols per second: adds key rates in bit/s")
    p.add_argument("--plot", metavar="FILE.png", help="write a log-scale PNG plot")
    add_physics_arguments(p)
    p.set_defaults(func=_run)
