"""The project's low-rate multi-edge-type LDPC code family (rates 0.02 - 0.2).

The package stores only compact descriptions in `reconcile/data/met_codes.json`: per code, the
MET ensemble with integer node counts per base graph, the constructor seed, the Gaussian-
approximation threshold and a SHA-256 fingerprint of one built matrix. Matrices are built on
demand by `reconcile.ldpc_construct` (quasi-cyclic lifting, about a second for 10^6 variables)
and kept in an in-memory cache. Block lengths must be multiples of the code's `base_n`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from reconcile import ldpc_construct
from reconcile.ldpc_code import LdpcCode
from reconcile.met_design import MetEnsemble, threshold

DATA_FILE = "met_codes.json"


@dataclass(frozen=True)
class MetCodeSpec:
    """One member of the family: ensemble, constructor seed and documented threshold."""

    name: str
    ensemble: MetEnsemble
    seed: int
    threshold_snr: float  # GA density-evolution threshold, linear SNR
    threshold_beta: float  # rate / (0.5 log2(1 + threshold_snr))
    fingerprint_n: int
    fingerprint_sha256: str

    @property
    def rate(self) -> float:
        return self.ensemble.rate

    @property
    def base_n(self) -> int:
        return self.ensemble.base_n


def fingerprint(code: LdpcCode) -> str:
    """SHA-256 over the shape and the CSR arrays (little-endian int64/int32) of a code."""
    h = hashlib.sha256()
    h.update(f"{code.m}x{code.n}".encode())
    h.update(code.check_ptr.astype("<i8").tobytes())
    h.update(code.var_idx.astype("<i4").tobytes())
    return h.hexdigest()


@functools.cache
def specs() -> dict[str, MetCodeSpec]:
    """All codes described in the package data, by name."""
    raw = json.loads((Path(__file__).parent / "data" / DATA_FILE).read_text())
    out = {}
    for entry in raw["codes"]:
        ens = MetEnsemble.from_dict(entry["ensemble"])
        out[entry["name"]] = MetCodeSpec(
            name=entry["name"],
            ensemble=ens,
            seed=int(entry["seed"]),
            threshold_snr=float(entry["threshold"]["snr"]),
            threshold_beta=float(entry["threshold"]["beta"]),
            fingerprint_n=int(entry["fingerprint"]["n"]),
            fingerprint_sha256=str(entry["fingerprint"]["sha256"]),
        )
    return out


def spec(name: str) -> MetCodeSpec:
    try:
        return specs()[name]
    except KeyError:
        raise ValueError(
            f"unknown MET code {name!r}; available: {', '.join(sorted(specs()))}"
        ) from None


def nearest_n(name: str, n: int) -> int:
    """The admissible block length (multiple of base_n) closest to n."""
    b = spec(name).base_n
    return max(b, round(n / b) * b)


@functools.lru_cache(maxsize=4)
def get_code(name: str, n: int) -> LdpcCode:
    """Build (or fetch from the cache) code `name` with exactly n variables."""
    s = spec(name)
    if n % s.base_n:
        raise ValueError(
            f"code {name!r}: n must be a multiple of {s.base_n} (nearest: {nearest_n(name, n)})"
        )
    return ldpc_construct.build(s.ensemble, n, s.seed, name=f"{name}_n{n}")


def describe(name: str, ens: MetEnsemble, seed: int, fingerprint_n: int) -> dict:
    """The JSON entry of a code (computes its GA threshold and a fingerprint); used to write
    reconcile/data/met_codes.json and by the tests to check it."""
    th = threshold(ens)
    code = ldpc_construct.build(ens, fingerprint_n, seed)
    return {
        "name": name,
        "seed": seed,
        "ensemble": ens.to_dict(),
        "threshold": {"snr": th.snr, "beta": th.beta, "de_iterations": th.iterations},
        "fingerprint": {"n": fingerprint_n, "sha256": fingerprint(code)},
    }


def for_rate(rate: float) -> MetCodeSpec:
    """The family member whose design rate is closest to `rate`."""
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate}")
    return min(specs().values(), key=lambda s: abs(s.rate - rate))
