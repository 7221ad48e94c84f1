"""Binary LDPC codes as sparse parity-check matrices.

`LdpcCode` is the one representation shared by the code constructors (standard tables, the
project's multi-edge-type codes, rate adaptation) and the C decoder. H (m x n) is stored in
compressed-row form by checks: the edges of check c are `var_idx[check_ptr[c]:check_ptr[c+1]]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class LdpcCode:
    """A binary LDPC code H (m checks x n variables) in CSR-by-check form.

    `punctured` lists variable indices that are not transmitted (decoder LLR 0);
    `shortened` lists variable indices fixed to 0 and known to both ends (decoder LLR +inf).
    """

    name: str
    n: int
    m: int
    check_ptr: np.ndarray  # int64, shape (m + 1,)
    var_idx: np.ndarray  # int32, shape (edges,)
    punctured: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    shortened: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    def __post_init__(self) -> None:
        ptr = np.ascontiguousarray(self.check_ptr, dtype=np.int64)
        idx = np.ascontiguousarray(self.var_idx, dtype=np.int32)
        if ptr.shape != (self.m + 1,) or ptr[0] != 0 or ptr[-1] != idx.size:
            raise ValueError(f"LDPC code {self.name!r}: bad check_ptr for {self.m} checks")
        if np.any(np.diff(ptr) < 1):
            raise ValueError(f"LDPC code {self.name!r}: a check has no edge")
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise ValueError(f"LDPC code {self.name!r}: variable index outside 0..{self.n - 1}")
        object.__setattr__(self, "check_ptr", ptr)
        object.__setattr__(self, "var_idx", idx)
        for name in ("punctured", "shortened"):
            arr = np.ascontiguousarray(getattr(self, name), dtype=np.int32)
            object.__setattr__(self, name, arr)

    @property
    def edges(self) -> int:
        return int(self.var_idx.size)

    @property
    def k(self) -> int:
        """Information length assuming H has full rank (n - m)."""
        return self.n - self.m

    @property
    def design_rate(self) -> float:
        """Rate of the mother code, 1 - m/n (full-rank H assumed)."""
        return 1.0 - self.m / self.n

    @property
    def rate(self) -> float:
        """Effective rate after puncturing and shortening."""
        k = self.n - self.m - self.shortened.size
        return k / (self.n - self.punctured.size - self.shortened.size)

    def check_degrees(self) -> np.ndarray:
        return np.diff(self.check_ptr)

    def var_degrees(self) -> np.ndarray:
        return np.bincount(self.var_idx, minlength=self.n)

    def syndrome(self, bits: np.ndarray) -> np.ndarray:
        """H @ bits over GF(2); `bits` is uint8 of shape (n,) or (frames, n)."""
        b = np.asarray(bits, dtype=np.uint8)
        if b.shape[-1] != self.n:
            raise ValueError(f"expected {self.n} bits per frame, got {b.shape[-1]}")
        gathered = b[..., self.var_idx]
        return (np.add.reduceat(gathered, self.check_ptr[:-1], axis=-1, dtype=np.int64) & 1).astype(
            np.uint8
        )

    @classmethod
    def from_dense(cls, name: str, h: np.ndarray) -> LdpcCode:
        h = np.asarray(h, dtype=bool)
        rows, cols = np.nonzero(h)
        ptr = np.zeros(h.shape[0] + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=h.shape[0]), out=ptr[1:])
        return cls(name=name, n=h.shape[1], m=h.shape[0], check_ptr=ptr, var_idx=cols)

    def to_dense(self) -> np.ndarray:
        h = np.zeros((self.m, self.n), dtype=np.uint8)
        rows = np.repeat(np.arange(self.m), self.check_degrees())
        h[rows, self.var_idx] = 1
        return h

    def save(self, path: str | Path) -> None:
        """Store compactly as .npz (no pickle)."""
        np.savez_compressed(
            path,
            name=np.array(self.name),
            shape=np.array([self.m, self.n], np.int64),
            check_ptr=self.check_ptr,
            var_idx=self.var_idx,
            punctured=self.punctured,
            shortened=self.shortened,
        )

    @classmethod
    def load(cls, path: str | Path) -> LdpcCode:
        with np.load(path, allow_pickle=False) as z:
            m, n = (int(v) for v in z["shape"])
            return cls(
                name=str(z["name"]),
                n=n,
                m=m,
                check_ptr=z["check_ptr"],
                var_idx=z["var_idx"],
                punctured=z["punctured"],
                shortened=z["shortened"],
            )
