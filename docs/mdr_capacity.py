"""Monte-Carlo of the MDR virtual channel: I(c; L) per dimension against 1/2 log2(1 + SNR).

    .venv/bin/python docs/mdr_capacity.py --out docs/mdr_capacity.png > docs/mdr_capacity.txt

For each SNR and d, Gaussian data x ~ N(0, 1), y = x + z with Var(z) = 1/SNR, uniform bits,
Bob's MDR encoding and Alice's LLRs; I = 1 - E[h2(1/(1 + e^-L))] is the mutual
information of the binary virtual channel (the LLRs are exact posteriors, so this is I(c; x, msg)
per bit). The ratio to the Gaussian capacity is the best beta any binary code can reach on it.
"""

from __future__ import annotations

import argparse

import numpy as np

from reconcile import mdr
from reconcile.met_design import capacity_awgn


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--samples", type=int, default=2_000_000)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    rng = np.random.default_rng(1)
    snrs = np.array([0.01, 0.03, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0])
    ratios = {}
    print("SNR      C_awgn    " + "  ".join(f"I/C d={d}" for d in mdr.DIMENSIONS))
    for snr in snrs:
        row = []
        for d in mdr.DIMENSIONS:
            x = rng.normal(size=args.samples)
            y = x + rng.normal(scale=np.sqrt(1 / snr), size=x.size)
            bits = rng.integers(0, 2, x.size).astype(np.uint8)
            alpha, norms = mdr.bob_encode(y, bits, d)
            llr = mdr.alice_llr(x, alpha, norms, d, 1 / snr)
            row.append(mdr.llr_mutual_information(llr) / capacity_awgn(snr))
        ratios[snr] = row
        print(f"{snr:<8.3g} {capacity_awgn(snr):<9.5f} " + "  ".join(f"{r:9.4f}" for r in row))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, d in enumerate(mdr.DIMENSIONS):
        ax.semilogx(snrs, [ratios[s][i] for s in snrs], "o-", label=f"d = {d}")
    ax.set_xlabel("SNR (linear)")
    ax.set_ylabel("I(c; L) / (1/2 log2(1 + SNR))")
    ax.set_title("MDR virtual channel: fraction of the Gaussian capacity")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
