"""`cvqkd keyrate`: secret key rate of one GG02 link (asymptotic, LGG finite-size, composable).

Also holds the physics flags and JSON helpers that `cvqkd plan` shares.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import numpy as np

from reconcile import finite_size, keyrate

# Defaults: a heterodyne receiver with a calibrated (trusted) detector, typical of RFSoC links.
DEFAULTS = {
    "detection": "heterodyne",
    "detector": "trusted",
    "va": 4.0,
    "xi": 0.02,
    "eta": 0.7,
    "vel": 0.1,
    "beta": 0.95,
    "loss_db_per_km": 0.2,
}


def add_physics_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags describing the link (shared by `keyrate` and `plan`)."""
    d = DEFAULTS
    parser.add_argument("--detection", choices=keyrate.DETECTIONS, default=d["detection"],
                        help="Bob's measurement (default %(default)s)")
    parser.add_argument("--detector", choices=keyrate.DETECTORS, default=d["detector"],
                        help="trusted: eta, v_el out of Eve's reach; untrusted: credited to Eve "
                             "(default %(default)s)")
    parser.add_argument("--va", type=float, default=d["va"], metavar="V",
                        help="modulation variance V_A per quadrature, SNU (default %(default)s)")
    parser.add_argument("--optimize-va", action="store_true",
                        help="use the V_A that maximises the asymptotic rate instead of --va")
    parser.add_argument("--loss-db-per-km", type=float, default=d["loss_db_per_km"],
                        metavar="A", help="fibre attenuation, dB/km (default %(default)s)")
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("--xi", type=float, default=d["xi"], metavar="XI",
                       help="excess noise referred to the channel INPUT, SNU (default "
                            "%(default)s)")
    noise.add_argument("--xi-output", type=float, metavar="XI_OUT",
                       help="instead of --xi: excess noise referred to the channel OUTPUT (at "
                            "Bob's input, before the detector), SNU; xi = XI_OUT / T at each "
                            "distance (noise that does not scale with the fibre)")
    parser.add_argument("--eta", type=float, default=d["eta"], metavar="E",
                        help="detector efficiency (default %(default)s)")
    parser.add_argument("--vel", type=float, default=d["vel"], metavar="VEL",
                        help="electronic noise per homodyne detector, SNU (default %(default)s)")
    parser.add_argument("--beta", type=float, default=d["beta"], metavar="B",
                        help="reconciliation efficiency (default %(default)s)")
    fin = parser.add_argument_group("finite size (given --n-total)")
    fin.add_argument("--n-total", type=float, metavar="N",
                     help="block length N in symbols (enables K_finite and K_composable)")
    fin.add_argument("--pe-fraction", type=float, default=finite_size.DEFAULT_PE_FRACTION,
                     metavar="F", help="share of symbols disclosed for parameter estimation "
                                       "(default %(default)s)")
    fin.add_argument("--epsilon", type=float, default=finite_size.DEFAULT_EPSILON,
                     metavar="EPS", help="each security parameter eps_PE, eps_PA, eps_s, eps_h "
                                         "(default %(default)g)")
    fin.add_argument("--fer", type=float, default=0.0,
                     help="frame error rate of reconciliation (default %(default)s)")
    fin.add_argument("--digitization-bits", type=int,
                     default=finite_size.DEFAULT_DIGITIZATION_BITS, metavar="P",
                     help="bits per quadrature of the digitised key (composable rate; default "
                          "%(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def link_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of the reconcile.keyrate functions from parsed flags."""
    return {"eta": args.eta, "v_el": args.vel, "detection": args.detection,
            "detector": args.detector}


def input_xi(args: argparse.Namespace, transmittance: np.ndarray) -> np.ndarray:
    """Input-referred excess noise (SNU): --xi, or --xi-output / T."""
    if args.xi_output is None:
        return keyrate.check_range("xi", args.xi, 0.0, low_open=False)
    xi_out = keyrate.check_range("xi_output", args.xi_output, 0.0, low_open=False)
    return xi_out / keyrate.check_range("transmittance", transmittance, 0.0, 1.0)


def noise_label(args: argparse.Namespace) -> str:
    if args.xi_output is None:
        return f"xi = {args.xi:g} SNU (input)"
    return f"xi_out = {args.xi_output:g} SNU (channel output; xi = xi_out / T)"


def compute(args: argparse.Namespace, transmittance: np.ndarray) -> dict[str, np.ndarray]:
    """Every rate for the given transmittance(s) and the link flags; arrays keyed by name."""
    kw = link_kwargs(args)
    xi = input_xi(args, transmittance)
    if args.optimize_va:
        v_a, asym = keyrate.optimal_modulation(transmittance, xi, args.beta, **kw)
    else:
        v_a = np.broadcast_to(keyrate.check_range("va", args.va, 0.0), np.shape(transmittance))
        asym = keyrate.asymptotic_rate(v_a, transmittance, xi, args.beta, **kw)
    out = {"transmittance": np.asarray(transmittance, dtype=float), "v_a": v_a,
           "xi": np.broadcast_to(xi, np.shape(transmittance)),
           "I_AB": asym.i_ab, "chi_BE": asym.chi_be, "K": asym.k, "K_unclipped": asym.k_raw,
           "plob": keyrate.plob_bound(transmittance)}
    if args.n_total is not None:
        fin = finite_size.finite_size_rate(
            v_a, transmittance, xi, args.beta, n_total=args.n_total,
            pe_fraction=args.pe_fraction, epsilon=args.epsilon, fer=args.fer,
            digitization_bits=args.digitization_bits, **kw)
        out.update({"T_min": fin.t_min, "xi_max": fin.xi_max, "chi_BE_worst": fin.chi_be_worst,
                    "n_key": fin.n_key, "m_pe": fin.m_pe,
                    "K_finite": fin.k_finite, "K_finite_unclipped": fin.k_finite_raw,
                    "K_composable": fin.k_composable,
                    "K_composable_unclipped": fin.k_composable_raw})
    return out


def json_number(x: Any) -> float | None:
    """A float for JSON: +-inf (PLOB at T = 1, uncertified xi_max) becomes null."""
    f = float(x)
    return f if math.isfinite(f) else None


def _run(args: argparse.Namespace) -> int:
    if args.transmittance is not None:
        t = keyrate.check_range("transmittance", args.transmittance, 0.0, 1.0)
    else:
        t = keyrate.fibre_transmittance(args.distance_km, args.loss_db_per_km)
    res = {k: float(v) for k, v in compute(args, t).items()}
    params: dict[str, Any] = {
        "detection": args.detection, "detector": args.detector,
        "distance_km": args.distance_km,
        "loss_db_per_km": args.loss_db_per_km if args.distance_km is not None else None,
        "xi_output": args.xi_output, "xi": args.xi if args.xi_output is None else None,
        "eta": args.eta, "v_el": args.vel, "beta": args.beta,
        "va_optimized": bool(args.optimize_va),
    }
    if args.n_total is not None:
        params.update({"n_total": args.n_total, "pe_fraction": args.pe_fraction,
                       "epsilon": args.epsilon, "fer": args.fer,
                       "digitization_bits": args.digitization_bits})
    if args.json:
        obj = {**params, **{k: json_number(v) for k, v in res.items()}}
        print(json.dumps(obj, allow_nan=False))
        return 0
    print(format_table({**params, "noise": noise_label(args)}, res))
    return 0


_ROWS = (  # key, label, unit
    ("transmittance", "channel transmittance T", ""),
    ("v_a", "modulation variance V_A", "SNU"),
    ("xi", "excess noise xi (input)", "SNU"),
    ("I_AB", "mutual information I_AB", "bit/symbol"),
    ("chi_BE", "Holevo bound chi_BE", "bit/symbol"),
    ("K", "asymptotic key rate K", "bit/symbol"),
    ("plob", "PLOB bound -log2(1-T)", "bit/symbol"),
    ("T_min", "worst-case T_min", ""),
    ("xi_max", "worst-case xi_max", "SNU"),
    ("K_finite", "finite-size K (LGG 2010)", "bit/symbol"),
    ("K_composable", "composable K (Pirandola 2021)", "bit/symbol"),
)


def format_table(params: dict[str, Any], res: dict[str, float]) -> str:
    head = (f"{params['detection']} detection, {params['detector']} detector, "
            f"{params['noise']}, eta = {params['eta']:g}, "
            f"v_el = {params['v_el']:g} SNU, beta = {params['beta']:g}")
    lines = [head]
    for key, label, unit in _ROWS:
        if key in res:
            lines.append(f"  {label:<32} {res[key]:>12.6g} {unit}")
    if res["K_unclipped"] <= 0:
        lines.append("  no secret key: beta I_AB <= chi_BE at these parameters")
    return "\n".join(lines)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "keyrate", help="secret key rate of a GG02 link (asymptotic, finite-size, composable)",
        description="Secret key rate of Gaussian-modulated coherent-state QKD with reverse "
                    "reconciliation, in bits per symbol. See docs/security-model.md.")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--transmittance", type=float, metavar="T",
                       help="channel transmittance in (0, 1]")
    where.add_argument("--distance-km", type=float, metavar="L", help="fibre length, km")
    add_physics_arguments(p)
    p.set_defaults(func=_run)
