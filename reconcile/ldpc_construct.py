"""Deterministic construction of MET LDPC parity-check matrices by quasi-cyclic lifting.

Two steps, both driven by one integer seed through a counter-based generator (SplitMix64,
Steele, Lea & Flood, OOPSLA 2014), written out here so that a code is reproducible bit for bit
on every platform and numpy version:

1. Base graph: for a MET ensemble with integer node counts per `base_n` variables
   (`met_design.MetEnsemble`), the variable sockets of each edge type are matched to a seeded
   random permutation of that type's check sockets (the configuration model), then parallel
   edges are removed by seeded swaps of check endpoints within an edge type.
2. Lifting: every base edge (c, v) becomes a Z x Z circulant permutation, edges
   (c Z + i, v Z + (i + s) mod Z), with a seeded random shift s in 0..Z-1. Girth conditioning:
   a 4-cycle c1-v1-c2-v2 of the base graph lifts to 4-cycles exactly when
   s(c1,v1) - s(c1,v2) + s(c2,v2) - s(c2,v1) = 0 (mod Z) (Fossorier, IEEE TIT 50, 1788 (2004));
   shifts are redrawn until no base 4-cycle satisfies it, so the lifted graph has girth >= 6.

Building a 10^6-variable, 3*10^6-edge code takes a few seconds (numpy sorts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reconcile.ldpc_code import LdpcCode
from reconcile.met_design import MetEnsemble

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def random_u64(seed: int, stream: int, count: int) -> np.ndarray:
    """`count` pseudo-random uint64 of stream `stream` under `seed` (SplitMix64, not secret)."""
    with np.errstate(over="ignore"):
        key = _mix(np.array([(seed * 0x100000001B3 + stream) % 2**64], dtype=np.uint64))[0]
        ctr = np.arange(1, count + 1, dtype=np.uint64) * _GOLDEN + key
        return _mix(ctr)


def _below(values: np.ndarray, bound: int) -> np.ndarray:
    """Map uint64 values to 0..bound-1 (bias < bound/2^64)."""
    return (values % np.uint64(bound)).astype(np.int64)


@dataclass(frozen=True)
class BaseGraph:
    """Edges of the base graph: check index, variable index and edge type per edge."""

    n: int
    m: int
    check: np.ndarray  # int64
    var: np.ndarray  # int64
    edge_type: np.ndarray  # int64


def base_graph(ens: MetEnsemble, seed: int, max_rounds: int = 1000) -> BaseGraph:
    """Configuration-model base graph of the ensemble without parallel edges.

    Variables with exactly two edges of a type are first laid out as a path through that
    type's checks (in seeded order; at most checks - 1 of them), as in the accumulator of
    IRA codes: a cycle through such variables alone would be a low-weight codeword (the
    core-weight-L cycle costs only L (1 + other degree) bits), and a path has none. The rest of
    the sockets are matched at random.
    """
    vdeg = np.array([v.degrees for v in ens.var_types], dtype=np.int64)
    cdeg = np.array([c.degrees for c in ens.check_types], dtype=np.int64)
    vtype = np.repeat(np.arange(len(ens.var_types)), [v.count for v in ens.var_types])
    ctype = np.repeat(np.arange(len(ens.check_types)), [c.count for c in ens.check_types])
    checks, vars_, types, fixed = [], [], [], []
    for t in range(ens.edge_types):
        vdeg_t, cap = vdeg[vtype, t].copy(), cdeg[ctype, t].copy()
        two = np.flatnonzero(vdeg_t == 2)
        cnodes = np.flatnonzero(cap > 0)
        chain = 0
        if two.size and cnodes.size > 1 and np.all(cap[cnodes] >= 2):
            chain = min(two.size, cnodes.size - 1)
            corder = cnodes[np.argsort(random_u64(seed, 1500 + t, cnodes.size), kind="stable")]
            cv = two[:chain]
            checks += [corder[:chain], corder[1 : chain + 1]]
            vars_ += [cv, cv]
            types.append(np.full(2 * chain, t))
            fixed.append(np.ones(2 * chain, bool))
            cap[corder[:chain]] -= 1
            cap[corder[1 : chain + 1]] -= 1
            vdeg_t[cv] = 0
        vs = np.repeat(np.arange(vtype.size), vdeg_t)
        cs = np.repeat(np.arange(ctype.size), cap)
        perm = np.argsort(random_u64(seed, 1000 + t, cs.size), kind="stable")
        checks.append(cs[perm])
        vars_.append(vs)
        types.append(np.full(vs.size, t))
        fixed.append(np.zeros(vs.size, bool))
    check, var, etype = (np.concatenate(a).astype(np.int64) for a in (checks, vars_, types))
    is_fixed = np.concatenate(fixed)
    n, m = vtype.size, ctype.size
    for rnd in range(max_rounds):
        key = check * n + var
        order = np.argsort(key, kind="stable")
        dup_sorted = np.flatnonzero(key[order][1:] == key[order][:-1]) + 1
        if dup_sorted.size == 0:
            return BaseGraph(n, m, check, var, etype)
        present = set(key.tolist())
        draws = random_u64(seed, 2000 + rnd, dup_sorted.size)
        for i, r in zip(dup_sorted.tolist(), draws.tolist(), strict=True):
            e = int(order[i]) if not is_fixed[order[i]] else int(order[i - 1])
            same = np.flatnonzero((etype == etype[e]) & ~is_fixed)
            f = int(same[r % same.size])
            a, b = check[e] * n + var[f], check[f] * n + var[e]
            if f == e or a in present or b in present:
                continue
            present.discard(int(check[e] * n + var[e]))
            present.discard(int(check[f] * n + var[f]))
            check[e], check[f] = check[f], check[e]
            present.update((int(check[e] * n + var[e]), int(check[f] * n + var[f])))
    raise ValueError(f"ensemble {ens.name!r}: could not remove parallel edges from the base graph")


def _base_four_cycles(g: BaseGraph) -> np.ndarray:
    """All 4-cycles of the base graph as edge-index quadruples (e_c1v1, e_c1v2, e_c2v2, e_c2v1)."""
    deg = np.bincount(g.var, minlength=g.n)
    keep = np.flatnonzero(deg[g.var] > 1)  # degree-one variables lie on no cycle
    order = keep[np.lexsort((g.var[keep], g.check[keep]))]
    ptr = np.searchsorted(g.check[order], np.arange(g.m + 1))
    rows = []
    for c in range(g.m):
        es = order[ptr[c] : ptr[c + 1]]
        if es.size < 2:
            continue
        i, j = np.triu_indices(es.size, 1)
        rows.append(np.stack([es[i], es[j]], axis=1))
    if not rows:
        return np.zeros((0, 4), np.int64)
    pairs = np.concatenate(rows)  # (edge to v1, edge to v2) within one check, v1 < v2
    key = g.var[pairs[:, 0]] * g.n + g.var[pairs[:, 1]]
    srt = np.argsort(key, kind="stable")
    pairs, key = pairs[srt], key[srt]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    sizes = np.diff(np.r_[starts, key.size])
    out = []
    for s, k in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist(), strict=True):
        grp = pairs[s : s + k]
        i, j = np.triu_indices(k, 1)
        out.append(np.stack([grp[i, 0], grp[i, 1], grp[j, 1], grp[j, 0]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 4), np.int64)


def _degree_two_edges(g: BaseGraph) -> np.ndarray:
    """(edge a, edge b) per base variable with exactly two edges of one type, for the types
    where those variables form cycles in the base graph (else the lift is a forest)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    out = []
    for t in np.unique(g.edge_type):
        et = np.flatnonzero(g.edge_type == t)
        cnt = np.bincount(g.var[et], minlength=g.n)
        es = et[cnt[g.var[et]] == 2]
        if es.size == 0:
            continue
        es = es[np.argsort(g.var[es], kind="stable")].reshape(-1, 2)
        nodes, inv = np.unique(g.check[es], return_inverse=True)
        inv = inv.reshape(-1, 2)
        adj = sp.coo_matrix((np.ones(len(es)), (inv[:, 0], inv[:, 1])), (nodes.size,) * 2)
        ncomp = connected_components(adj, directed=False)[0]
        if len(es) > nodes.size - ncomp:  # more edges than a forest: there are cycles
            out.append(es)
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


def _short_degree_two_cycles(
    g: BaseGraph, pairs: np.ndarray, shifts: np.ndarray, z: int, min_len: int
) -> np.ndarray:
    """Rows of `pairs` whose lifted variable lies on a cycle of fewer than `min_len` such
    variables (the lifted degree-two subgraph is QC, so lift 0 of each stands for all)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import shortest_path

    nodes, inv = np.unique(g.check[pairs], return_inverse=True)
    inv = inv.reshape(-1, 2)
    j = np.arange(z)
    a = (inv[:, 0:1] * z + (j[None, :] - shifts[pairs[:, 0:1]]) % z).ravel()
    b = (inv[:, 1:2] * z + (j[None, :] - shifts[pairs[:, 1:2]]) % z).ravel()
    size = nodes.size * z
    bad = []
    for k in range(len(pairs)):
        keep = np.ones(a.size, bool)
        keep[k * z] = False  # drop lift 0 of variable k, then measure the way round
        adj = sp.csr_matrix((np.ones(keep.sum()), (a[keep], b[keep])), (size, size))
        dist = shortest_path(adj, directed=False, unweighted=True, indices=int(a[k * z]))
        if dist[b[k * z]] + 1 < min_len:
            bad.append(k)
    return np.array(bad, dtype=np.int64)


def lifting_shifts(
    g: BaseGraph, z: int, seed: int, max_rounds: int = 200, deg2_girth: int = 12
) -> np.ndarray:
    """Circulant shift per base edge such that no base 4-cycle survives the lifting and, where
    variables with two edges of a type form cycles, those cycles have at least `deg2_girth`
    variables if reachable (tried downwards in steps of 2, then dropped): a cycle of L such
    variables is a codeword of weight L (1 + their other degree)."""
    shifts = _below(random_u64(seed, 3000, g.check.size), z)
    cycles = _base_four_cycles(g)
    pairs = _degree_two_edges(g)
    target = deg2_girth if pairs.size else 0
    for rnd in range(max_rounds):
        s = shifts[cycles]
        bad = np.flatnonzero((s[:, 0] - s[:, 1] + s[:, 2] - s[:, 3]) % z == 0)
        if bad.size:
            # redraw one edge per offending cycle, a different one of the four each round
            edges = np.unique(cycles[bad, rnd % 4])
            shifts[edges] = _below(random_u64(seed, 4000 + rnd, edges.size), z)
            continue
        short = _short_degree_two_cycles(g, pairs, shifts, z, target) if target > 4 else []
        if len(short) == 0:
            return shifts
        if rnd % 10 == 9:
            target -= 2  # not reached in 10 rounds: ask for a little less
        edges = pairs[short, rnd % 2]
        shifts[edges] = _below(random_u64(seed, 6000 + rnd, edges.size), z)
    raise ValueError(f"lifting size {z} too small to remove all 4-cycles; use a larger n")


def lift(g: BaseGraph, z: int, shifts: np.ndarray, name: str) -> LdpcCode:
    """The lifted code: base edge (c, v) with shift s -> edges (c z + i, v z + (i + s) mod z)."""
    i = np.arange(z, dtype=np.int64)
    chk = (g.check[:, None] * z + i[None, :]).ravel()
    var = (g.var[:, None] * z + (i[None, :] + shifts[:, None]) % z).ravel()
    order = np.lexsort((var, chk))
    counts = np.bincount(chk, minlength=g.m * z)
    ptr = np.zeros(g.m * z + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    return LdpcCode(name=name, n=g.n * z, m=g.m * z, check_ptr=ptr, var_idx=var[order])


def build(ens: MetEnsemble, n: int, seed: int, name: str | None = None) -> LdpcCode:
    """Parity-check matrix of `ens` with n variables (a multiple of ens.base_n), from `seed`."""
    if n <= 0 or n % ens.base_n:
        raise ValueError(f"block length {n} must be a positive multiple of {ens.base_n}")
    z = n // ens.base_n
    g = base_graph(ens, seed)
    code = lift(g, z, lifting_shifts(g, z, seed), name or f"{ens.name}_n{n}")
    punct_types = [i for i, v in enumerate(ens.var_types) if v.punctured]
    if punct_types:
        vtype = np.repeat(np.arange(len(ens.var_types)), [v.count for v in ens.var_types])
        base_p = np.flatnonzero(np.isin(vtype, punct_types))
        punct = (base_p[:, None] * z + np.arange(z)[None, :]).ravel()
        code = LdpcCode(code.name, code.n, code.m, code.check_ptr, code.var_idx, punctured=punct)
    return code


def count_four_cycles(code: LdpcCode) -> int:
    """Number of variable pairs sharing two or more checks (0 means girth >= 6). Small codes."""
    import scipy.sparse as sp

    rows = np.repeat(np.arange(code.m), code.check_degrees())
    h = sp.csr_matrix((np.ones(code.edges, np.int32), (rows, code.var_idx)), (code.m, code.n))
    overlap = (h.T @ h).tocoo()
    off = overlap.row < overlap.col
    return int(np.count_nonzero(overlap.data[off] > 1))
