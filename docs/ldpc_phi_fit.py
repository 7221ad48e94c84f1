"""Coefficients of the LDPC decoder's phi polynomials (c_ext/ldpc_kernel.h, vphi_n).

Minimax fits by linear programming (minimise the largest weighted error on a dense grid):
q(r) ~ expm1(r)/r on |r| <= ln2/2, degree 3, leading coefficient 1, relative error; and
2 atanh(s)/s as a polynomial in z = s^2 on [0, 1/9], degree 2, relative error. Prints the
coefficients (float32) and the minimax errors (2.1e-5 and 7.2e-6).

    .venv/bin/python docs/ldpc_phi_fit.py
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import linprog


def minimax(f: Callable[[np.ndarray], np.ndarray], xs: np.ndarray, deg: int,
            fixed0: float | None = None) -> tuple[np.ndarray, float]:
    """Coefficients (lowest first) minimising max |f - poly| / |f| on xs, and that maximum."""
    v = np.vander(xs, deg + 1, increasing=True)
    y = f(xs)
    w = 1.0 / np.abs(y)
    if fixed0 is not None:
        y, v = y - fixed0, v[:, 1:]
    n = v.shape[1]
    a = np.vstack([np.hstack([w[:, None] * v, -np.ones((xs.size, 1))]),
                   np.hstack([-w[:, None] * v, -np.ones((xs.size, 1))])])
    cost = np.zeros(n + 1)
    cost[-1] = 1.0
    res = linprog(cost, A_ub=a, b_ub=np.concatenate([w * y, -w * y]),
                  bounds=[(None, None)] * (n + 1), method="highs")
    coef = res.x[:n] if fixed0 is None else np.concatenate([[fixed0], res.x[:n]])
    return coef, float(res.x[-1])


def main() -> None:
    r = np.linspace(-np.log(2) / 2, np.log(2) / 2, 4001)
    c, e = minimax(lambda t: np.expm1(t) / np.where(t == 0, 1.0, t) + (t == 0), r, 3, fixed0=1.0)
    print("expm1(r)/r:", [f"{np.float32(x)!r}" for x in c], f"relative error {e:.3g}")
    z = np.linspace(1e-12, 1 / 9, 4001)
    c, e = minimax(lambda t: 2 * np.arctanh(np.sqrt(t)) / np.sqrt(t), z, 2)
    print("2 atanh(s)/s in s^2:", [f"{np.float32(x)!r}" for x in c], f"relative error {e:.3g}")


if __name__ == "__main__":
    main()
