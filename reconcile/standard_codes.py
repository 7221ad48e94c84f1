"""Standard LDPC codes built from their published tables (package data, see
reconcile/data/ldpc/PROVENANCE.md).

- DVB-S2 / DVB-S2X (ETSI EN 302 307-1 section 5.3.2 and annexes B, C; EN 302 307-2): irregular
  repeat-accumulate codes. Information bit i = 360 g + j of group g joins check
  (x + j q) mod (N - K) for every address x on line g of the table, q = (N - K)/360; the parity
  part is the dual diagonal (check r holds parity bits r and r - 1). Variables are ordered
  information bits first, then parity bits.
- 5G NR (3GPP TS 38.212 section 5.3.2): quasi-cyclic codes lifted from base graph BG1 (46 x 68,
  22 information columns) or BG2 (42 x 52, 10 information columns) with lifting size Z: base
  entry V at (i, j) is the Z x Z identity cyclically shifted by V mod Z (row i Z + r joins
  column j Z + (r + V) mod Z). Using the first `rows` base rows gives rates from
  kb / (kb + 2) down to 1/3 (BG1) or 1/5 (BG2); the first 2 Z columns are punctured.

Names: `dvbs2_<frame>_r<a>_<b>...` (the table file names) and `5gnr_bg<1|2>_z<Z>[_rows<r>]`.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from reconcile.ldpc_code import LdpcCode

DATA_DIR = Path(__file__).resolve().parent / "data" / "ldpc"
DVB_GROUP = 360
# 5G NR base graphs: (checks, variables, information columns)
NR_BASE = {1: (46, 68, 22), 2: (42, 52, 10)}
NR_MIN_ROWS = 4  # the core (kernel) rows every 5G code keeps
NR_LIFT_BASES = (2, 3, 5, 7, 9, 11, 13, 15)  # a in Z = a 2^j; set index iLS = position of a
_NR_NAME = re.compile(r"^5gnr_bg([12])_z(\d+)(?:_rows(\d+))?$")


def _from_pairs(name: str, n: int, m: int, checks: np.ndarray, vars_: np.ndarray, **kw) -> LdpcCode:
    order = np.lexsort((vars_, checks))
    ptr = np.zeros(m + 1, np.int64)
    np.cumsum(np.bincount(checks, minlength=m), out=ptr[1:])
    code = LdpcCode(name=name, n=n, m=m, check_ptr=ptr, var_idx=vars_[order].astype(np.int32), **kw)
    for arr in (code.check_ptr, code.var_idx, code.punctured, code.shortened):
        arr.flags.writeable = False  # codes are cached and shared
    return code


def dvbs2_names() -> list[str]:
    """The DVB-S2/S2X codes in the package data."""
    return sorted(p.stem for p in (DATA_DIR / "dvbs2").glob("*.txt"))


@functools.lru_cache(maxsize=16)
def dvbs2_code(name: str) -> LdpcCode:
    """The DVB-S2/S2X code `name` (a file stem of data/ldpc/dvbs2)."""
    path = DATA_DIR / "dvbs2" / f"{name}.txt"
    if name not in dvbs2_names():
        raise ValueError(f"unknown DVB-S2 code {name!r}; available: {', '.join(dvbs2_names())}")
    lines = path.read_text().splitlines()
    head = re.search(r"N=(\d+) K=(\d+)", lines[0])
    if head is None:
        raise ValueError(f"{path.name}: first line must state N= and K=")
    n, k = int(head.group(1)), int(head.group(2))
    m = n - k
    q = m // DVB_GROUP
    groups = [np.array(line.split(), np.int64) for line in lines if line and line[0] != "#"]
    if len(groups) * DVB_GROUP != k or m % DVB_GROUP:
        raise ValueError(f"{path.name}: {len(groups)} groups of {DVB_GROUP} do not make K={k}")
    j = np.arange(DVB_GROUP, dtype=np.int64)
    checks, vars_ = [], []
    for g, addr in enumerate(groups):
        if addr.size == 0 or addr.min() < 0 or addr.max() >= m:
            raise ValueError(f"{path.name}: group {g} has an address outside 0..{m - 1}")
        checks.append(((addr[:, None] + j[None, :] * q) % m).ravel())
        vars_.append(np.broadcast_to(g * DVB_GROUP + j, (addr.size, DVB_GROUP)).ravel())
    r = np.arange(m, dtype=np.int64)
    checks += [r, r[1:]]  # dual diagonal: parity bit r in checks r and r + 1
    vars_ += [k + r, k + r[:-1]]
    return _from_pairs(name, n, m, np.concatenate(checks), np.concatenate(vars_))


def _lift_set(z: int) -> int:
    for ils, a in enumerate(NR_LIFT_BASES):
        zz = a
        while zz <= 384:
            if zz == z:
                return ils
            zz *= 2
    raise ValueError(f"{z} is not a 5G NR lifting size (a * 2^j, a in {NR_LIFT_BASES}, <= 384)")


@functools.lru_cache(maxsize=4)
def _base_graph(bg: int) -> np.ndarray:
    """Rows (row, column, V for iLS 0..7) of base graph `bg` from the CSV table."""
    entries = []
    row = -1
    for line in (DATA_DIR / "5gnr" / f"5G_bg{bg}.csv").read_text().splitlines()[2:]:
        fields = line.split(";")
        if len(fields) < 10:
            continue
        if fields[0].strip():
            row = int(fields[0])
        entries.append([row, int(fields[1]), *(int(v) for v in fields[2:10])])
    table = np.array(entries, np.int64)
    m_b, n_b, _ = NR_BASE[bg]
    if table[:, 0].max() != m_b - 1 or table[:, 1].max() != n_b - 1:
        raise ValueError(f"5G base graph {bg}: table is not {m_b} x {n_b}")
    return table


@functools.lru_cache(maxsize=16)
def nr5g_code(bg: int, z: int, rows: int | None = None) -> LdpcCode:
    """5G NR code from base graph `bg` (1 or 2), lifting size `z`, first `rows` base rows."""
    if bg not in NR_BASE:
        raise ValueError(f"5G base graph must be 1 or 2, got {bg}")
    m_b, _, kb = NR_BASE[bg]
    rows = m_b if rows is None else rows
    if not NR_MIN_ROWS <= rows <= m_b:
        raise ValueError(f"BG{bg} rows must be in {NR_MIN_ROWS}..{m_b}, got {rows}")
    ils = _lift_set(z)
    table = _base_graph(bg)
    table = table[table[:, 0] < rows]
    n_cols = kb + rows
    if table[:, 1].max() >= n_cols:
        raise ValueError(f"BG{bg}: the first {rows} rows use columns beyond {n_cols}")
    shift = table[:, 2 + ils] % z
    r = np.arange(z, dtype=np.int64)
    checks = (table[:, 0, None] * z + r[None, :]).ravel()
    vars_ = (table[:, 1, None] * z + (r[None, :] + shift[:, None]) % z).ravel()
    name = f"5gnr_bg{bg}_z{z}" + ("" if rows == m_b else f"_rows{rows}")
    return _from_pairs(
        name, n_cols * z, rows * z, checks, vars_, punctured=np.arange(2 * z, dtype=np.int32)
    )


def standard_code(name: str) -> LdpcCode:
    """A standard code by name: a DVB-S2 table stem or `5gnr_bg<b>_z<Z>[_rows<r>]`."""
    match = _NR_NAME.match(name)
    if match:
        bg, z, rows = match.groups()
        return nr5g_code(int(bg), int(z), None if rows is None else int(rows))
    return dvbs2_code(name)


def standard_names() -> list[str]:
    """Names of the DVB-S2/S2X codes and of the full-length 5G NR codes (Z = 384)."""
    return [*dvbs2_names(), "5gnr_bg1_z384", "5gnr_bg2_z384"]


def closest_standard_code(rate: float) -> LdpcCode:
    """The standard code whose effective rate is closest to `rate`.

    Candidates: every DVB-S2/S2X table and the 5G NR BG2 codes with Z = 384 and any number of
    rows (rates 10/12 ... 1/5), so rates between 0.2 and 0.83 are all covered. Ties go to the
    5G code (through d = 8 MDR it decoded at a higher beta than the DVB codes of the same rate
    at 1/5 and 1/2: docs/performance.md), then to the longer code.
    """
    if not 0.0 < rate < 1.0:
        raise ValueError(f"code rate must be in (0, 1), got {rate}")
    candidates = [(abs(_dvb_rate(name) - rate), 1, -_dvb_n(name), name) for name in dvbs2_names()]
    m_b, _, kb = NR_BASE[2]
    for rows in range(NR_MIN_ROWS, m_b + 1):
        n_tx = (kb + rows - 2) * 384  # transmitted bits: the first 2 Z are punctured
        name = "5gnr_bg2_z384" + ("" if rows == m_b else f"_rows{rows}")
        candidates.append((abs(kb * 384 / n_tx - rate), 0, -n_tx, name))
    return standard_code(min(candidates)[3])


def _dvb_header(name: str) -> tuple[int, int]:
    head = (DATA_DIR / "dvbs2" / f"{name}.txt").read_text().split("\n", 1)[0]
    match = re.search(r"N=(\d+) K=(\d+)", head)
    if match is None:
        raise ValueError(f"{name}: first line must state N= and K=")
    return int(match.group(1)), int(match.group(2))


def _dvb_rate(name: str) -> float:
    n, k = _dvb_header(name)
    return k / n


def _dvb_n(name: str) -> int:
    return _dvb_header(name)[0]
