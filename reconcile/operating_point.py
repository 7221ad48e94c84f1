"""Reconciliation operating point: code, length, efficiency and iteration cap for the link.

The choice trades efficiency beta against frame errors, decoding CPU and latency. It is made
from MEASURED points only (`reconcile/data/operating_points.json`, written by
`docs/operating_point_table.py` from the sweeps of `docs/operating_point_sweep.py`; the table
and the method are in docs/reconciliation.md, "Operating point"). Each measured row is a
punctured MET mother code at one SNR, one transmitted length n_tx (reals per codeword), one
beta and one iteration cap, with its frame errors over a seeded run and its decoding cost.

`choose(snr, reals_per_frame, ...)` returns the row that maximises secret bits per second of
processing, key_rate(beta, FER) / (other CPU + decoding CPU) per real (or, without a key-rate
model, beta (1 - FER) within the CPU budget), among rows that apply:

- same mother code, beta at most the measured one (+0.0005) and puncturing at the requested SNR
  not above the measured row's (+0.5 % of n; more puncturing only makes decoding harder,
  density evolution and the measurements agree);
- the frame's reals give codewords at least as long as the measured ones (longer codes of the
  same ensemble decode at least as well in the waterfall);
- decoding CPU within the budget, frame error rate's 95 % upper bound within `fer_max`.

The FER used is the one-sided 95 % Clopper-Pearson upper bound of the measured count, so a
point measured on few codewords is not preferred for luck. CPU: the C decoder runs one group of
8 lanes (one SIMD vector) per thread, and a pass costs the same however many lanes hold a
codeword; a lane whose codeword stops takes the next one of the call (lane refill), and at the
end the threads' groups hand their last lanes to one another, so a call of n codewords runs
about n * mean passes / 8 plus one tail (its last codewords' stragglers; a failing codeword
costs the full cap). The cost per real is
NS_PER_EDGE_PASS * (scheduled edges / n_tx) * (group passes * 8 / n), with the expected group
passes per codeword measured for n = 8 (E[max of 8]), 16, 32 and 64 codewords per group
(`MeasuredPoint.passes_per_codeword`).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from reconcile import met_codes, rate_adapt
from reconcile.met_design import capacity_awgn

DATA_FILE = "operating_points.json"
LANES = 8  # codewords per decoder group (reconcile.ldpc_decoder.LANES)
# Decoder CPU per scheduled edge per layered pass per codeword (lane), ns: the decoder of
# 2026-11-26 21:15 (avx512 path, cheaper phi, lane refill) at the 25 km operating point, this
# 2-core VM at load ~2.4 (docs/performance.md; 3.8 before, when the sweeps were run: the
# table's iteration counts still hold, the new decoder gives the same ones). Scales every
# row's cost alike.
NS_PER_EDGE_PASS = 2.5
# CPU of everything else per real of key data (DSP, model, MDR, hashing), ns. Only the ranking
# of points with different decoding costs depends on it. 1000 was the 25 km link's figure
# before session 3; measured there at its end (2026-11-26 22:04, 1.4-1.5 CPU-us per symbol,
# ~0.73 of it decoding) it is ~360 ns, with which the link's choice would move from 8 x 242000
# (beta 0.908) to 16 x 120000 (beta 0.901): 27 % less decoding, 11 % less key per symbol, +4 %
# key per CPU second. The link keeps 1000 (more key per symbol; its 10^6 symbols/s target is
# met): a product choice, docs/reconciliation.md "Operating point".
OTHER_NS_PER_REAL = 1000.0
MAX_FRAMES_PER_BATCH = 8
# Codewords per decoder group at which the refill passes were measured (MeasuredPoint.
# refill_passes); beyond the last, more codewords per call only thin out the tail.
REFILL_SIZES = (8, 16, 32, 64)
# A point may run at most this much above the measured beta (n moves in steps of base_n bits,
# i.e. beta in steps of rate * base_n / (n_tx C), 0.1-1.4 % for these lengths).
BETA_SLACK = 0.0005


@dataclass(frozen=True)
class MeasuredPoint:
    """One measured row: `errors` of `frames` codewords failed at this `max_iter`."""

    snr: float  # SNR per real dimension of the run
    mother: str  # MET code name (reconcile.met_codes)
    n_tx: int  # transmitted reals per codeword
    punctured_fraction: float  # punctured bits / mother n
    beta: float
    max_iter: int
    frames: int
    errors: int
    mean_iterations: float  # of the codewords that decoded
    group_passes: float  # expected layered passes of a full group of 8 (max over its lanes)
    edges_per_real: float  # decoder's scheduled edges / n_tx
    mean_passes: float  # mean passes per codeword (failures count the cap): refill's limit
    # expected group passes * 8 / n for n = REFILL_SIZES codewords per group (lane refill)
    refill_passes: tuple[float, ...]

    @property
    def fer(self) -> float:
        return self.errors / self.frames

    @property
    def fer_upper(self) -> float:
        """One-sided 95 % Clopper-Pearson upper bound of the FER."""
        return fer_upper_bound(self.errors, self.frames)

    @property
    def ns_per_real(self) -> float:
        """Decoding CPU per transmitted real with 8 codewords per group, ns."""
        return self.ns_per_real_at(LANES)

    def ns_per_real_at(self, words: float) -> float:
        """Decoding CPU per transmitted real with `words` codewords per group, ns."""
        return NS_PER_EDGE_PASS * self.edges_per_real * self.passes_per_codeword(words)

    def passes_per_codeword(self, words: float) -> float:
        """Expected passes of one 8-lane group per codeword it decodes (group passes * 8 /
        words) when it is given `words` codewords: up to 8, the group runs as long as its
        slowest member (E[max of 8], the unfilled lanes counted); from 8 to 64, interpolated
        in 1/words between the measured sizes; beyond, the tail of 64 thinned out."""
        if not words > 0:
            raise ValueError(f"words must be > 0, got {words}")
        sizes, vals = REFILL_SIZES, self.refill_passes
        if words <= sizes[0]:
            return self.group_passes * LANES / words
        if words >= sizes[-1]:
            return self.mean_passes + (vals[-1] - self.mean_passes) * sizes[-1] / words
        i = next(k for k in range(1, len(sizes)) if words <= sizes[k])
        t = (1 / words - 1 / sizes[i - 1]) / (1 / sizes[i] - 1 / sizes[i - 1])
        return vals[i - 1] + t * (vals[i] - vals[i - 1])


@dataclass(frozen=True)
class OperatingPoint:
    """What the link should run: `met_codes.get_code(mother, n)` with its first n - n_tx
    degree-one variables punctured (`adaptation()`), or per frame `adapt_to(estimated SNR)`."""

    mother: str
    n: int  # mother code length, bits
    n_tx: int  # reals per codeword (quantum-carried bits)
    punctured: int  # n - n_tx
    codewords_per_frame: int
    frames_per_batch: int  # decode this many frames' codewords in one call (lane refill)
    beta: float  # efficiency R' / C(snr) of the adapted code at the requested SNR
    max_iter: int
    fer: float  # measured
    fer_upper: float  # 95 % upper bound
    decode_ns_per_real: float  # CPU with frames_per_batch frames per call
    source: MeasuredPoint
    used_fraction: float = 1.0  # share of the frame's reals the codewords carry (planned SNR)

    def adaptation(self) -> rate_adapt.Adaptation:
        """The punctured code as chosen (built on first use, cached by met_codes)."""
        return rate_adapt.with_counts(met_codes.get_code(self.mother, self.n), self.punctured, 0)

    def adapt_to(self, snr: float, d: int = 8) -> rate_adapt.Adaptation:
        """Per frame: the same mother code (same n) punctured for efficiency `beta` at the
        frame's estimated SNR (`rate_adapt.for_snr`), so small SNR drifts keep beta and the
        code length; n_tx moves by about 2 % per 0.01 of SNR."""
        code = met_codes.get_code(self.mother, self.n)
        return rate_adapt.for_snr(code, snr, self.beta, d, max_fraction=0.6)


def expected_group_max(passes: np.ndarray, group: int = LANES) -> float:
    """E[max of `group` independent draws] from the empirical distribution of `passes`
    (the layered passes a group of codewords runs: its slowest member's)."""
    v = np.sort(np.asarray(passes, float))
    if v.ndim != 1 or v.size == 0:
        raise ValueError("passes must be a non-empty 1-d array")
    k = np.arange(1, v.size + 1) / v.size
    return float(np.dot(v, k**group - (k - 1.0 / v.size) ** group))


def refill_group_passes(passes: np.ndarray, words: int, trials: int = 4000,
                        seed: int = 0) -> float:
    """E[passes of one group of 8 lanes decoding `words` codewords] with lane refill, the
    codewords' passes drawn from the empirical distribution `passes`: each codeword goes to
    the lane that frees first (list scheduling, as the decoder does). Seeded Monte Carlo."""
    v = np.asarray(passes, float)
    if v.ndim != 1 or v.size == 0 or words < 1:
        raise ValueError("passes must be a non-empty 1-d array and words >= 1")
    draws = np.random.default_rng(seed).choice(v, (trials, words))
    free = np.zeros((trials, LANES))
    rows = np.arange(trials)
    for j in range(words):
        lane = np.argmin(free, axis=1)
        free[rows, lane] += draws[:, j]
    return float(free.max(axis=1).mean())


def fer_upper_bound(errors: int, frames: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper confidence bound of a binomial proportion."""
    if frames <= 0 or not 0 <= errors <= frames:
        raise ValueError(f"need 0 <= errors <= frames and frames > 0, got {errors}/{frames}")
    if errors == frames:
        return 1.0
    return float(stats.beta.ppf(confidence, errors + 1, frames - errors))


@functools.cache
def measured_points() -> tuple[MeasuredPoint, ...]:
    """The measured table shipped with the package."""
    raw = json.loads((Path(__file__).parent / "data" / DATA_FILE).read_text())
    return tuple(MeasuredPoint(**{**row, "refill_passes": tuple(row["refill_passes"])})
                 for row in raw["points"])


def adapted_code(mother: str, n_tx: int, rate: float, d: int = 8) -> rate_adapt.Adaptation:
    """Mother code `mother` at the admissible length whose puncturing gives effective rate
    closest to `rate` (bits per transmitted real) with exactly `n_tx` transmitted reals.

    k = n - m is fixed by n, so R' = k / n_tx: n is the multiple of base_n with k closest to
    rate * n_tx, and the n - n_tx surplus variables are punctured (degree-one ones, in the
    nested order of `rate_adapt.with_counts`). Raises ValueError if that needs n < n_tx (the
    mother's rate is above `rate`) or more punctured bits than degree-one variables.
    """
    spec = met_codes.spec(mother)
    if n_tx <= 0 or n_tx % d:
        raise ValueError(f"n_tx must be a positive multiple of d = {d}, got {n_tx}")
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate}")
    n = max(spec.base_n, round(rate * n_tx / spec.rate / spec.base_n) * spec.base_n)
    if n < n_tx:
        raise ValueError(
            f"rate {rate:.4f} is below mother {mother!r}'s rate {spec.rate}: puncturing cannot "
            f"reach it"
        )
    return rate_adapt.with_counts(met_codes.get_code(mother, n), n - n_tx, 0)


def frames_per_batch(codewords_per_frame: int, max_frames: int = MAX_FRAMES_PER_BATCH) -> int:
    """Frames per decoder call: with lane refill every extra codeword per call thins out the
    group's tail, so as many as the caller allows (max_frames, its latency and memory bound),
    but no more than reach REFILL_SIZES[-1] = 64 codewords (the tail is then ~5 % of the
    cost)."""
    if codewords_per_frame < 1 or max_frames < 1:
        raise ValueError("codewords_per_frame and max_frames must be >= 1")
    return min(max_frames, math.ceil(REFILL_SIZES[-1] / codewords_per_frame))


def candidates(snr: float, reals_per_frame: int, d: int = 8,
               max_frames_per_batch: int = MAX_FRAMES_PER_BATCH) -> list[OperatingPoint]:
    """Every measured row that applies at this SNR and frame size (see the module docstring).
    The cost assumes `frames_per_batch` frames' codewords per decoder call (at most
    max_frames_per_batch; a decoder that takes one frame per call passes 1), refilled as by one
    group of 8 lanes: with several decoder threads the groups hand their last lanes to one
    another, so their tails merge (2 threads on 16 codewords measured 43.6 passes per codeword,
    one thread 45.6)."""
    if max_frames_per_batch < 1:
        raise ValueError(f"max_frames_per_batch must be >= 1, got {max_frames_per_batch}")
    if not snr > 0:
        raise ValueError(f"snr must be > 0, got {snr}")
    if reals_per_frame < d:
        raise ValueError(f"reals_per_frame must be >= d = {d}, got {reals_per_frame}")
    out = []
    for row in measured_points():
        spec = met_codes.spec(row.mother)
        per_frame = reals_per_frame // row.n_tx
        if per_frame < 1:
            continue
        n_tx = reals_per_frame // per_frame // d * d  # >= row.n_tx up to d - 1 reals
        if n_tx < row.n_tx - d:
            continue
        # the longest admissible code whose beta at this SNR is not above the measured one
        cap_rate = (row.beta + BETA_SLACK) * capacity_awgn(snr)
        n = math.floor(cap_rate * n_tx / spec.rate / spec.base_n) * spec.base_n
        if n < n_tx:  # would need shortening, which these codes do not tolerate
            continue
        if (n - n_tx) / n > row.punctured_fraction + 0.005:
            continue
        fpb = frames_per_batch(per_frame, max_frames_per_batch)
        words = fpb * per_frame
        c = capacity_awgn(snr)
        # (a) every real of the frame carried; beta falls below the row's by the step of n.
        # (b) the next length at the row's beta: fewer reals per codeword, the rest unused.
        k_b = (n + spec.base_n) // spec.base_n * (spec.base_n - spec.ensemble.base_m)
        n_tx_b = math.ceil(k_b / (row.beta * c) / d) * d
        options = [(n, n_tx)]
        if row.n_tx - d <= n_tx_b <= n_tx and \
                (n + spec.base_n - n_tx_b) / (n + spec.base_n) <= row.punctured_fraction + 0.005:
            options.append((n + spec.base_n, n_tx_b))
        for n_o, n_tx_o in options:
            k = n_o // spec.base_n * (spec.base_n - spec.ensemble.base_m)
            out.append(OperatingPoint(
                mother=row.mother, n=n_o, n_tx=n_tx_o, punctured=n_o - n_tx_o,
                codewords_per_frame=per_frame, frames_per_batch=fpb,
                beta=k / n_tx_o / c, max_iter=row.max_iter, fer=row.fer,
                fer_upper=row.fer_upper, decode_ns_per_real=row.ns_per_real_at(words),
                source=row,
                used_fraction=per_frame * n_tx_o / reals_per_frame,
            ))
    return out


def choose(
    snr: float,
    reals_per_frame: int,
    cpu_ns_per_real: float = math.inf,
    *,
    key_rate: Callable[[float, float], float] | None = None,
    other_ns_per_real: float = OTHER_NS_PER_REAL,
    fer_max: float = 0.25,
    d: int = 8,
    max_frames_per_batch: int = MAX_FRAMES_PER_BATCH,
) -> OperatingPoint:
    """The operating point with the most secret bits per second of processing.

    snr: measured SNR per real dimension (heterodyne: per quadrature), linear.
    reals_per_frame: key reals one frame leaves for reconciliation (heterodyne: 2 per symbol).
    cpu_ns_per_real: decoding CPU budget per real, ns (inf: none).
    key_rate(beta, fer): secret bits per key symbol at that efficiency and frame error rate
    (e.g. the link's finite-size bound for its block); the choice maximises secret bits per
    CPU second, key_rate(beta, fer_upper) / (other_ns_per_real + decode_ns_per_real). Without
    it, the point with the most reconciled information beta (1 - fer_upper) within the budget
    (the secret rate rises steeply with beta, but how steeply depends on the channel).
    The key rate counts only the share of the frame the codewords carry (`used_fraction`).
    Points where key_rate <= 0 rank below every point with a key, among themselves by
    beta (1 - fer_upper) per CPU second.
    max_frames_per_batch: at most how many frames' codewords the caller decodes in one call
    (see `candidates`).
    Raises ValueError if no measured point applies (SNR outside the measured range, frames
    too short, or budget too small).
    """
    if not cpu_ns_per_real > 0:
        raise ValueError(f"cpu_ns_per_real must be > 0, got {cpu_ns_per_real}")
    pool = [c for c in candidates(snr, reals_per_frame, d, max_frames_per_batch)
            if c.decode_ns_per_real <= cpu_ns_per_real and c.fer_upper <= fer_max]
    if not pool:
        raise ValueError(
            f"no measured reconciliation point for SNR {snr:.3f} with {reals_per_frame} reals "
            f"per frame and {cpu_ns_per_real:g} ns of decoding per real"
        )

    def score(c: OperatingPoint) -> tuple[int, float, float]:
        cost = other_ns_per_real + c.decode_ns_per_real
        if key_rate is None:
            return 1, c.beta * (1.0 - c.fer_upper), -c.decode_ns_per_real
        bits = key_rate(c.beta, c.fer_upper) * c.used_fraction
        if bits > 0:
            return 1, bits / cost, -c.decode_ns_per_real
        # no key at any of these points (block too short): reconciled information per CPU
        return 0, c.beta * (1.0 - c.fer_upper) / cost, -c.decode_ns_per_real

    return max(pool, key=score)
