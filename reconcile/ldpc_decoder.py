"""Syndrome (coset) decoding of LDPC codes: a thin wrapper around the C decoder `reconcile._ldpc`.

The decoder (c_ext/ldpc_decoder.c) is layered sum-product BP in float32, 8 frames per SIMD
vector (a "group" of 8 lanes), one group per pthread. The frames of a call form a queue: a lane
whose frame stops takes the next pending frame, so a group runs full until the queue is empty;
then groups left with few busy lanes hand them to the others (one tail per call, not per thread).
It solves H x = s for the most likely x given per-bit LLRs (LLR = ln P(x=0)/P(x=1), so
LLR > 0 means bit 0).

`Decoder(code)` prepares the graph once (shortened variables dropped, degree-one variables
folded into their check, checks with a single remaining variable turned into constant
messages) and owns every buffer; `decode()` keeps one `Decoder` per code in a small cache
while the code object lives (a decoder does not keep its code alive: the link punctures a
new code per frame, and a decoder of a 248000-bit code holds ~10 MB of graph arrays).
Calls release the GIL and are safe from several Python threads at once.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reconcile._ldpc import ffi, lib
from reconcile.ldpc_code import LdpcCode

DEFAULT_MAX_ITER = 100
LANES = 8  # frames per SIMD vector (LDPC_LANES in the C header)
LLR_LIMIT = 1.0e4  # input LLRs are clipped to +-LLR_LIMIT (so +-inf means a known bit)
# LDPC_SIMD_* in the C header; "avx512" is the avx2fma kernel built for AVX-512VL
SIMD_PATHS = {"auto": 0, "portable": 1, "avx2": 2, "avx2fma": 3, "avx512": 4}


@dataclass(frozen=True)
class DecodeResult:
    """Outcome of decoding `frames` frames of an n-bit code.

    bits: uint8 (frames, n) decisions; for frames that converged, H bits = syndrome.
    converged: bool (frames,) whether the syndrome was matched within max_iter.
    iterations: int32 (frames,) layered passes run (0 if the channel decisions already matched).
    llr: float32 (frames, n) posterior LLRs if requested (NaN for folded degree-one
    variables, +inf for shortened ones), else None.
    group_passes: layered passes of 8-lane groups the call ran, summed over its threads (the
    CPU cost: a pass costs the same however many lanes hold a frame; with refill this is
    about iterations.sum() / 8 plus the last frames' tail).
    """

    bits: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    llr: np.ndarray | None = None
    group_passes: int = 0


class Decoder:
    """Decoder of one `LdpcCode`; build once, call `decode` many times (from any thread).
    It keeps the graph it needs, not the code object."""

    def __init__(self, code: LdpcCode) -> None:
        self.n, self.m, self.name = code.n, code.m, code.name
        n, m = code.n, code.m
        check_of_edge = np.repeat(np.arange(m, dtype=np.int32), code.check_degrees())
        pair = check_of_edge.astype(np.int64) * n + code.var_idx
        if np.unique(pair).size != pair.size:
            raise ValueError(f"LDPC code {code.name!r}: a variable appears twice in one check")

        shortened = np.zeros(n, bool)
        shortened[code.shortened] = True
        punctured = np.zeros(n, bool)
        punctured[code.punctured] = True
        if np.any(shortened & punctured):
            raise ValueError(f"LDPC code {code.name!r}: a variable is both punctured and shortened")
        keep = ~shortened[code.var_idx]
        deg = np.bincount(code.var_idx[keep], minlength=n)

        # Fold one degree-one variable per check (the first) into the check as a constant prior.
        cand = np.flatnonzero(keep & (deg[code.var_idx] == 1))
        first_checks, first_pos = np.unique(check_of_edge[cand], return_index=True)
        fold_edges = cand[first_pos]
        chk_fold = np.full(m, -1, np.int32)
        chk_fold[first_checks] = code.var_idx[fold_edges]
        folded = np.zeros(n, bool)
        folded[code.var_idx[fold_edges]] = True

        active = ~shortened & ~folded
        act_var = np.flatnonzero(active).astype(np.int32)
        act_index = np.full(n, -1, np.int32)
        act_index[act_var] = np.arange(act_var.size, dtype=np.int32)

        act_edge = active[code.var_idx]
        chk_deg = np.bincount(check_of_edge[act_edge], minlength=m).astype(np.int64)
        chk_ptr = np.zeros(m + 1, np.int64)
        np.cumsum(chk_deg, out=chk_ptr[1:])
        chk_var = act_index[code.var_idx[act_edge]]

        # A check whose folded variable is punctured only says what that unknown bit must be:
        # its messages are exactly 0, so it is left out of the schedule (its bit is still solved).
        dead = np.zeros(m, bool)
        dead[first_checks] = punctured[code.var_idx[fold_edges]]
        chk_deg_live = np.where(dead, 0, chk_deg)
        sched_check = np.flatnonzero(chk_deg_live >= 2).astype(np.int32)
        sched_ptr = np.zeros(sched_check.size + 1, np.int64)
        np.cumsum(chk_deg[sched_check], out=sched_ptr[1:])
        sched_edge = np.isin(check_of_edge[act_edge], sched_check, assume_unique=False)
        sched_var = chk_var[sched_edge]

        self._arrays = {
            "act_var": act_var,
            "chk_ptr": chk_ptr,
            "chk_var": np.ascontiguousarray(chk_var, np.int32),
            "chk_fold": chk_fold,
            "sched_check": sched_check,
            "sched_ptr": sched_ptr,
            "sched_var": np.ascontiguousarray(sched_var, np.int32),
            "const_check": np.flatnonzero(chk_deg_live == 1).astype(np.int32),
            "test_check": np.flatnonzero(chk_fold < 0).astype(np.int32),
        }
        self._punctured = np.flatnonzero(punctured)
        g = ffi.new("ldpc_graph *")
        g.n, g.m, g.n_act = n, m, act_var.size
        g.n_sched = sched_check.size
        g.max_deg = int(chk_deg[sched_check].max()) if sched_check.size else 0
        g.n_const = self._arrays["const_check"].size
        g.n_test = self._arrays["test_check"].size
        for name, arr in self._arrays.items():
            ctype = "int64_t *" if arr.dtype == np.int64 else "int32_t *"
            setattr(g, name, ffi.cast(ctype, ffi.from_buffer(arr)))
        self._graph = g
        self._work_floats = int(lib.ldpc_workspace_floats(g))

    @property
    def scheduled_edges(self) -> int:
        """Edges processed per layered iteration (after removing shortened and folded ones)."""
        return int(self._arrays["sched_ptr"][-1])

    @property
    def folded_variables(self) -> int:
        return int(np.count_nonzero(self._arrays["chk_fold"] >= 0))

    def decode(
        self,
        llr: np.ndarray,
        syndrome: np.ndarray,
        max_iter: int = DEFAULT_MAX_ITER,
        threads: int = 1,
        return_llr: bool = False,
        simd: str = "auto",
    ) -> DecodeResult:
        """Decode frames: llr float (frames, n), syndrome 0/1 (frames, m).

        LLRs at punctured positions are ignored (treated as 0); shortened bits are 0. Each of
        `threads` (1..64, at most ceil(frames / 8) are used) runs one group of 8 lanes (one
        SIMD vector) taking frames from the call's queue: a lane whose frame stops takes the
        next one, so many frames per call keep the lanes full (CPU per frame ~ its own passes,
        not its group's slowest member's). `max_iter` bounds the layered passes; a frame
        stops at the first pass after which its decisions match the syndrome. A frame's
        outputs do not depend on the other frames of the call, on `threads` or on timing.
        `simd` selects the kernel build ("auto" = fastest this CPU runs; results depend on
        the build only through rounding: "portable" and "avx2" agree bit for bit, and so do
        "avx2fma" and "avx512"). CPU: `group_passes` x 8 lane-passes of the scheduled
        edges; once the queue is empty the threads' groups hand their last lanes to one
        another, so a call's CPU depends little on `threads` (more threads cut the latency).
        """
        n, m = self.n, self.m
        llr_arr = np.asarray(llr)
        syn_arr = np.asarray(syndrome)
        if llr_arr.ndim != 2 or llr_arr.shape[1] != n:
            raise ValueError(f"llr must have shape (frames, {n}), got {np.shape(llr)}")
        frames = llr_arr.shape[0]
        if syn_arr.shape != (frames, m):
            raise ValueError(f"syndrome must have shape ({frames}, {m}), got {syn_arr.shape}")
        if not np.issubdtype(llr_arr.dtype, np.floating):
            raise ValueError(f"llr must be a floating-point array, got {llr_arr.dtype}")
        if not (np.issubdtype(syn_arr.dtype, np.integer) or syn_arr.dtype == np.bool_):
            raise ValueError(f"syndrome must be an integer 0/1 array, got {syn_arr.dtype}")
        if syn_arr.size and (syn_arr.min() < 0 or syn_arr.max() > 1):
            raise ValueError("syndrome entries must be 0 or 1")
        if isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer) or max_iter < 0:
            raise ValueError(f"max_iter must be a non-negative integer, got {max_iter!r}")
        if isinstance(threads, bool) or not isinstance(threads, int | np.integer):
            raise ValueError(f"threads must be an integer, got {threads!r}")
        if not 1 <= threads <= 64:
            raise ValueError(f"threads must be in 1..64, got {threads}")
        if simd not in SIMD_PATHS:
            raise ValueError(f"simd must be one of {sorted(SIMD_PATHS)}, got {simd!r}")
        if SIMD_PATHS[simd] > lib.ldpc_simd_level():
            raise ValueError(f"this CPU cannot run the {simd!r} decoder path")

        llr_in = np.clip(llr_arr, -LLR_LIMIT, LLR_LIMIT).astype(np.float32, order="C")
        if np.isnan(llr_in).any():
            raise ValueError("llr contains NaN")
        llr_in[:, self._punctured] = 0.0
        syn_in = np.ascontiguousarray(syn_arr, dtype=np.uint8)
        bits = np.zeros((frames, n), np.uint8)
        converged = np.zeros(frames, np.uint8)
        iterations = np.zeros(frames, np.int32)
        llr_out = None
        if return_llr:
            llr_out = np.full((frames, n), np.inf, np.float32)
        nthreads = max(1, min(int(threads), -(-frames // LANES)))
        work = np.empty(nthreads * self._work_floats, np.float32)
        passes = ffi.new("int64_t *")
        rc = lib.ldpc_decode(
            self._graph,
            ffi.cast("const float *", ffi.from_buffer(llr_in)),
            ffi.cast("const uint8_t *", ffi.from_buffer(syn_in)),
            frames,
            int(max_iter),
            nthreads,
            SIMD_PATHS[simd],
            ffi.cast("float *", ffi.from_buffer(work)),
            ffi.cast("uint8_t *", ffi.from_buffer(bits)),
            ffi.cast("uint8_t *", ffi.from_buffer(converged)),
            ffi.cast("int32_t *", ffi.from_buffer(iterations)),
            ffi.cast("float *", ffi.from_buffer(llr_out)) if llr_out is not None else ffi.NULL,
            passes,
        )
        if rc != 0:
            raise ValueError("LDPC decoder rejected its arguments")
        return DecodeResult(bits, converged.astype(bool), iterations, llr_out, int(passes[0]))


_cache_lock = threading.RLock()  # re-entrant: a weakref callback may run under it (gc)
_cache: dict[int, tuple[weakref.ref, Decoder]] = {}
_CACHE_SIZE = 8


def _forget(key: int, ref: weakref.ref) -> None:
    """Drop a dead code's decoder (weakref callback: the code object was freed)."""
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit[0] is ref:
            del _cache[key]


def decoder_for(code: LdpcCode) -> Decoder:
    """The cached `Decoder` of `code` (built on first use). At most `_CACHE_SIZE` codes are
    kept, and only while their code objects live: a decoder leaves the cache with its code."""
    with _cache_lock:
        hit = _cache.get(id(code))
        if hit is not None and hit[0]() is code:
            return hit[1]
    dec = Decoder(code)
    with _cache_lock:
        if len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        key = id(code)
        _cache[key] = (weakref.ref(code, lambda ref: _forget(key, ref)), dec)
    return dec


def decode(
    code: LdpcCode,
    llr: np.ndarray,
    syndrome: np.ndarray,
    max_iter: int = DEFAULT_MAX_ITER,
    threads: int = 1,
) -> DecodeResult:
    """Syndrome-decode frames of `code`: see `Decoder.decode`."""
    return decoder_for(code).decode(llr, syndrome, max_iter=max_iter, threads=threads)


def decode_punctured_mix(
    codes: Sequence[LdpcCode],
    llr: np.ndarray,
    syndrome: np.ndarray,
    max_iter: int = DEFAULT_MAX_ITER,
    threads: int = 1,
) -> DecodeResult:
    """Frames of one mother code under different nested puncturings (`rate_adapt`: each
    frame's punctured set extends the least punctured one's), codes[i] the code of row i,
    decoded in ONE call so that their lanes refill: by the decoder of the least punctured
    code, every frame's own punctured positions given LLR 0.

    A punctured degree-one variable that the decoder treats as active with LLR 0 makes its
    check send messages of phi(40) ~ 8.5e-18 instead of being skipped: numerically the same
    BP (on 32 codewords of the 25 km point, decoded by codes with 496-5064 fewer punctured
    bits: the same bits and iteration counts as with their own decoders, for 0.2-2.3 % more
    scheduled edges). Raises ValueError unless the codes share the graph and the shortened
    bits and their punctured sets are nested as described."""
    codes = list(codes)
    llr_arr = np.asarray(llr)
    if llr_arr.ndim != 2 or len(codes) != llr_arr.shape[0] or not codes:
        raise ValueError("need one code per row of llr (and at least one row)")
    base = min(codes, key=lambda c: c.punctured.size)
    for c in {id(c): c for c in codes}.values():
        same_graph = (c.n, c.m) == (base.n, base.m) and (
            (c.var_idx is base.var_idx and c.check_ptr is base.check_ptr)
            or (np.array_equal(c.var_idx, base.var_idx)
                and np.array_equal(c.check_ptr, base.check_ptr)))
        if not same_graph or not np.array_equal(np.sort(c.shortened), np.sort(base.shortened)):
            raise ValueError(f"code {c.name!r} is not {base.name!r} punctured differently")
        if not np.isin(base.punctured, c.punctured).all():
            raise ValueError(f"punctured bits of {base.name!r} are not all punctured in "
                             f"{c.name!r}: the puncturings are not nested")
    llr_in = np.array(llr_arr, dtype=np.float32)
    for i, c in enumerate(codes):
        llr_in[i, c.punctured] = 0.0
    return decoder_for(base).decode(llr_in, syndrome, max_iter=max_iter, threads=threads)


def simd_level() -> str:
    """The SIMD path `simd="auto"` uses on this CPU."""
    level = lib.ldpc_simd_level()
    return next(name for name, v in SIMD_PATHS.items() if v == level)


def phi(x: np.ndarray, simd: str = "auto") -> np.ndarray:
    """The decoder's float32 phi(x) = -ln tanh(x/2) (arguments clamped to [phi(40), 40])."""
    if simd not in SIMD_PATHS or SIMD_PATHS[simd] > lib.ldpc_simd_level():
        raise ValueError(f"unavailable SIMD path {simd!r}")
    xs = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(xs)
    lib.ldpc_phi(
        ffi.cast("const float *", ffi.from_buffer(xs)),
        ffi.cast("float *", ffi.from_buffer(out)),
        xs.size,
        SIMD_PATHS[simd],
    )
    return out
