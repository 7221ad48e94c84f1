"""Multi-edge-type (MET) LDPC ensembles and their density evolution (Gaussian approximation).

Ensembles follow Richardson & Urbanke, "Multi-edge type LDPC codes" (2004) and "Modern Coding
Theory" ch. 7: variable-node types with a receive type (r1: seen through the channel, r0:
punctured) and a number of edges of each edge type, check-node types with a number of edges of
each edge type, and node fractions relative to the number n of variable nodes.

Density evolution on the binary-input AWGN channel (signal +-1, noise variance 1/SNR, channel
LLR mean 2 SNR) uses the Gaussian approximation of Chung, Richardson & Urbanke, IEEE TIT 47, 657
(2001), extended to several edge types: every message is a consistent Gaussian N(m, 2m), a
check node multiplies the inputs' E[tanh(L/2)] (exact for independent inputs), a variable node
adds means, and mixtures over node types are averaged in the tanh domain on the way into the
checks and in the mean on the way into the variables. The approximation is good at the low
SNRs of CV-QKD (weak messages, where E[tanh(L/2)] ~ m/2 is linear) and errs by a few tenths
of a dB at high rates; docs/reconciliation.md compares its thresholds with decoder FER curves.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import integrate, interpolate


@dataclass(frozen=True)
class VarType:
    """`count` variable nodes (per base graph of `base_n` nodes) with `degrees[t]` edges of
    edge type t; `punctured` nodes are not sent over the channel (receive type r0)."""

    count: int
    degrees: tuple[int, ...]
    punctured: bool = False


@dataclass(frozen=True)
class CheckType:
    count: int
    degrees: tuple[int, ...]


@dataclass(frozen=True)
class MetEnsemble:
    """A MET ensemble with integer node counts for a base of `base_n` variable nodes.

    Fractions are count/base_n; any block length that is a multiple of base_n realises the
    ensemble exactly (ldpc_construct lifts a base graph of this size).
    """

    name: str
    var_types: tuple[VarType, ...]
    check_types: tuple[CheckType, ...]
    source: str = ""

    def __post_init__(self) -> None:
        t = {len(v.degrees) for v in self.var_types} | {len(c.degrees) for c in self.check_types}
        if len(t) != 1:
            raise ValueError(f"ensemble {self.name!r}: inconsistent number of edge types")
        if any(v.count < 0 for v in self.var_types) or any(c.count < 0 for c in self.check_types):
            raise ValueError(f"ensemble {self.name!r}: negative node count")
        ev, ec = self.edges_per_type_var(), self.edges_per_type_check()
        if not np.array_equal(ev, ec):
            raise ValueError(
                f"ensemble {self.name!r}: edge counts differ per type (variables {ev.tolist()},"
                f" checks {ec.tolist()})"
            )

    @property
    def edge_types(self) -> int:
        return len(self.var_types[0].degrees)

    @property
    def base_n(self) -> int:
        return sum(v.count for v in self.var_types)

    @property
    def base_m(self) -> int:
        return sum(c.count for c in self.check_types)

    @property
    def rate(self) -> float:
        """Design rate (n - m)/(n - punctured), assuming full-rank H."""
        sent = sum(v.count for v in self.var_types if not v.punctured)
        return (self.base_n - self.base_m) / sent

    def edges_per_type_var(self) -> np.ndarray:
        return np.array([v.count for v in self.var_types]) @ np.array(
            [v.degrees for v in self.var_types]
        )

    def edges_per_type_check(self) -> np.ndarray:
        return np.array([c.count for c in self.check_types]) @ np.array(
            [c.degrees for c in self.check_types]
        )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "variables": [
                {"count": v.count, "degrees": list(v.degrees), "punctured": v.punctured}
                for v in self.var_types
            ],
            "checks": [{"count": c.count, "degrees": list(c.degrees)} for c in self.check_types],
        }

    @classmethod
    def from_dict(cls, d: dict) -> MetEnsemble:
        try:
            return cls(
                name=str(d["name"]),
                source=str(d.get("source", "")),
                var_types=tuple(
                    VarType(int(v["count"]), tuple(int(x) for x in v["degrees"]),
                            bool(v.get("punctured", False)))
                    for v in d["variables"]
                ),
                check_types=tuple(
                    CheckType(int(c["count"]), tuple(int(x) for x in c["degrees"]))
                    for c in d["checks"]
                ),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed MET ensemble description: {exc}") from None

    def describe(self) -> str:
        """Node-perspective polynomials nu(r, x), mu(x) as in the MET literature."""
        def mono(deg: tuple[int, ...]) -> str:
            return " ".join(f"x{t + 1}^{k}" if k > 1 else f"x{t + 1}"
                            for t, k in enumerate(deg) if k)

        n = self.base_n
        nu = " + ".join(f"{v.count / n:.6g} r{0 if v.punctured else 1} {mono(v.degrees)}"
                        for v in self.var_types)
        mu = " + ".join(f"{c.count / n:.6g} {mono(c.degrees)}" for c in self.check_types)
        return f"nu = {nu}\nmu = {mu}"


def load_ensemble(path: str | Path) -> MetEnsemble:
    return MetEnsemble.from_dict(json.loads(Path(path).read_text()))


# --- the Gaussian-approximation function T(m) = E[tanh(L/2)], L ~ N(m, 2m) -----------------

_M_SMALL = 1e-3  # below: series m/2 - m^2/4 + 5 m^3/24 (error O(m^4))
_M_LARGE = 120.0  # above: phi(m) = 1 - T ~ sqrt(pi/m) exp(-m/4) (1 - 10/(7m)) (Chung 2001)
_SQRT_PI_2 = math.sqrt(math.pi / 2.0)  # sqrt(2 pi)/2: the pdf's constant with the 2 of 2 expit


def _phi_asym(m: np.ndarray) -> np.ndarray:
    return np.sqrt(np.pi / m) * np.exp(-m / 4.0) * (1.0 - 10.0 / (7.0 * m))


@functools.cache
def _table() -> tuple[np.ndarray, np.ndarray]:
    """(log m, log(-log T(m))) on a grid, monotone decreasing in the second column."""
    grid = np.geomspace(_M_SMALL, _M_LARGE, 240)
    logt = np.empty_like(grid)
    for i, m in enumerate(grid):
        sd = math.sqrt(2.0 * m)
        # phi(m) = E[1 - tanh(L/2)] = E[2 expit(-L)]: positive integrand, no cancellation
        phi, _ = integrate.quad(
            lambda u, m=m, sd=sd: math.exp(-0.5 * ((u - m) / sd) ** 2)
            / (sd * _SQRT_PI_2 * (1.0 + math.exp(min(u, 700.0)))),
            m - 40.0 * sd, m + 12.0 * sd, points=[0.0], epsabs=0.0, epsrel=1e-12, limit=400,
        )
        logt[i] = math.log1p(-phi)
    fine = np.geomspace(_M_SMALL, _M_LARGE, 20000)
    spline = interpolate.CubicSpline(np.log(grid), np.log(-logt))
    return np.log(fine), spline(np.log(fine))


def log_tanh_mean(m: np.ndarray) -> np.ndarray:
    """log E[tanh(L/2)] for consistent Gaussian L of mean m >= 0 (-inf at m = 0)."""
    m = np.asarray(m, dtype=np.float64)
    lm, g = _table()
    out = np.empty_like(m)
    small, large = m < _M_SMALL, m > _M_LARGE
    mid = ~(small | large)
    with np.errstate(divide="ignore"):
        ms = m[small]
        out[small] = np.log(ms / 2.0 - ms**2 / 4.0 + 5.0 * ms**3 / 24.0)
    out[mid] = -np.exp(np.interp(np.log(m[mid]), lm, g))
    out[large] = np.log1p(-_phi_asym(m[large]))
    return out


def mean_from_log_tanh(logt: np.ndarray) -> np.ndarray:
    """Inverse of `log_tanh_mean`: the mean m of the consistent Gaussian with that E[tanh]."""
    logt = np.minimum(np.asarray(logt, dtype=np.float64), 0.0)
    lm, g = _table()
    out = np.empty_like(logt)
    with np.errstate(divide="ignore"):
        gq = np.log(-logt)  # +inf for logt = 0
    small = gq > g[0]
    large = gq < g[-1]
    mid = ~(small | large)
    # g decreases with m: interpolate on the reversed table
    out[mid] = np.exp(np.interp(gq[mid], g[::-1], lm[::-1]))
    t = np.exp(logt[small])  # invert m/2 - m^2/4 + 5m^3/24 = t by two Newton steps from 2t
    ms = 2.0 * t
    for _ in range(3):
        f = ms / 2.0 - ms**2 / 4.0 + 5.0 * ms**3 / 24.0 - t
        ms -= f / (0.5 - ms / 2.0 + 5.0 * ms**2 / 8.0)
    out[small] = ms
    phi = -np.expm1(logt[large])  # phi = sqrt(pi/m) e^{-m/4} (1 - 10/(7m)): fixed point in m
    with np.errstate(divide="ignore", invalid="ignore"):
        ml = np.full(phi.shape, _M_LARGE)
        for _ in range(8):
            ml = -4.0 * np.log(phi / (np.sqrt(np.pi / ml) * (1.0 - 10.0 / (7.0 * ml))))
    out[large] = np.where(phi > 0, ml, np.inf)
    return out


# --- density evolution -------------------------------------------------------------------------

@dataclass(frozen=True)
class DeResult:
    converged: bool
    iterations: int
    posterior_mean: np.ndarray  # per variable type, final a-posteriori LLR mean


def density_evolution(
    ens: MetEnsemble, snr: float, max_iter: int = 3000, target_mean: float = 150.0
) -> DeResult:
    """Gaussian-approximation DE at channel SNR (linear). Converged when every variable type's
    a-posteriori LLR mean exceeds `target_mean` (bit error ~ Q(sqrt(m/2)) < 1e-17)."""
    dv = np.array([v.degrees for v in ens.var_types], dtype=np.float64)  # V x T
    dc = np.array([c.degrees for c in ens.check_types], dtype=np.float64)  # C x T
    fv = np.array([v.count for v in ens.var_types], dtype=np.float64)
    fc = np.array([c.count for c in ens.check_types], dtype=np.float64)
    ch = np.array([0.0 if v.punctured else 2.0 * snr for v in ens.var_types])
    e = fv @ dv
    wv = (fv[:, None] * dv) / e  # share of type-t edges on variable type v
    wc = (fc[:, None] * dc) / e
    has_v, has_c = dv > 0, dc > 0
    mu = np.zeros(dv.shape[1])  # check -> variable means per edge type
    post = ch.copy()
    for it in range(1, max_iter + 1):
        m_vt = ch[:, None] + (dv @ mu)[:, None] - mu[None, :]  # V x T, out of var v on type t
        phi_vt = -np.expm1(log_tanh_mean(np.where(has_v, m_vt, 1.0)))
        phi_mix = np.sum(np.where(has_v, wv * phi_vt, 0.0), axis=0)
        logt_mix = np.log1p(-np.minimum(phi_mix, 1.0))  # log E[tanh] into the checks, per type
        logt_ct = (dc @ logt_mix)[:, None] - logt_mix[None, :]
        m_ct = mean_from_log_tanh(np.where(has_c, logt_ct, 0.0))
        mu_new = np.sum(np.where(has_c, wc * np.minimum(m_ct, 1e6), 0.0), axis=0)
        post = ch + dv @ mu_new
        if np.all(post > target_mean):
            return DeResult(True, it, post)
        if np.all(np.abs(mu_new - mu) <= 1e-12 * np.maximum(mu_new, 1e-300)):
            return DeResult(False, it, post)  # stuck at a fixed point
        mu = mu_new
    return DeResult(False, max_iter, post)


def capacity_awgn(snr: float) -> float:
    """Gaussian channel capacity 1/2 log2(1 + SNR) in bits per real dimension."""
    return 0.5 * math.log2(1.0 + snr)


def snr_for_beta(rate: float, beta: float) -> float:
    """SNR at which a rate-R code works at efficiency beta: 2^(2R/beta) - 1."""
    return 2.0 ** (2.0 * rate / beta) - 1.0


@dataclass(frozen=True)
class Threshold:
    snr: float  # linear
    beta: float  # R / C(snr)
    iterations: int  # DE iterations to converge just above the threshold


def threshold(ens: MetEnsemble, max_iter: int = 3000, steps: int = 16) -> Threshold:
    """Smallest SNR at which GA density evolution converges (bisection on beta in [0.5, 1))."""
    rate = ens.rate
    lo, hi = 0.5, 0.9999  # beta: lo converges (checked), hi is assumed not to
    res = density_evolution(ens, snr_for_beta(rate, lo), max_iter)
    if not res.converged:
        raise ValueError(f"ensemble {ens.name!r} does not converge even at beta 0.5")
    its = res.iterations
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        res = density_evolution(ens, snr_for_beta(rate, mid), max_iter)
        if res.converged:
            lo, its = mid, res.iterations
        else:
            hi = mid
    snr = snr_for_beta(rate, lo)
    return Threshold(snr=snr, beta=rate / capacity_awgn(snr), iterations=its)


def raptor_like(
    name: str, rate: float, base_n: int, core: int, core_deg3: int, ldgm_edges: int, extra: int
) -> MetEnsemble:
    """The project's family of low-rate MET ensembles (the shape of Mani et al.'s rate-0.02 one).

    Edge type 1: a high-rate precode on the `core` high-degree variables (type-1 degree 2, or 3
    for `core_deg3` of them) with checks of concentrated degree. Edge type 2: an LDGM part of
    `ldgm_edges` edges from the core variables to checks of concentrated degree, each of which
    also holds one degree-one variable (edge type 3). The type-2 edges are spread as evenly as
    possible over the core, the type-1-degree-3 variables getting `extra` more each.
    All counts are per base of `base_n` variable nodes; rate * base_n must be an integer.
    """
    k = round(rate * base_n)
    if abs(k - rate * base_n) > 1e-9:
        raise ValueError("rate * base_n must be an integer")
    n1 = base_n - core  # degree-one variables = LDGM checks
    m1 = core - k  # precode checks
    if not (0 < core_deg3 <= core and 0 < m1 and ldgm_edges >= n1 > 0):
        raise ValueError("inconsistent raptor-like parameters")
    na, nb = core - core_deg3, core_deg3
    e1 = 2 * na + 3 * nb
    dp, q = divmod(e1, m1)  # q precode checks of degree dp + 1
    dl, ql = divmod(ldgm_edges, n1)  # ql LDGM checks of type-2 degree dl + 1
    base, r = divmod(ldgm_edges - nb * extra, core)  # r core variables get one more edge
    if base < 1:
        raise ValueError("too few LDGM edges for the core")
    ra = min(r, na)
    rb = r - ra
    var = [
        VarType(na - ra, (2, base, 0)),
        VarType(ra, (2, base + 1, 0)),
        VarType(nb - rb, (3, base + extra, 0)),
        VarType(rb, (3, base + extra + 1, 0)),
        VarType(n1, (0, 0, 1)),
    ]
    chk = [
        CheckType(m1 - q, (dp, 0, 0)),
        CheckType(q, (dp + 1, 0, 0)),
        CheckType(n1 - ql, (0, dl, 1)),
        CheckType(ql, (0, dl + 1, 1)),
    ]
    return MetEnsemble(
        name=name,
        var_types=tuple(v for v in var if v.count),
        check_types=tuple(c for c in chk if c.count),
        source="designed with GA density evolution (reconcile.met_design.raptor_like)",
    )
