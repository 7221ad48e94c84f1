"""Carried calibration variances against the direct pass (docs/dsp.md, "Calibration").

Usage: .venv/bin/python docs/dsp_calibration_study.py CAPTURE_DIR [CAPTURE_DIR ...]

Each directory is a `cvqkd sim capture`. The receiver runs on every capture to get its chain;
the first capture's records then go through each of these chains and through variants of the
first one (pilot frequency moved by 0.002-0.02 cycles per sample, smoother coefficient
0.95-0.99): the value `Calibration` returns (carried from the first chain unless the guard
asks for a direct pass) against the direct pass of that chain over the reference positions,
and the direct pass over the chain's own positions (what the receiver did every frame before).
Guards disabled (tolerance and pilot shift infinite) so that every row shows the carried value.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np

from dsp.calibration import Calibration, Grid, direct_variance
from dsp.receiver import receive


class _Spy(Calibration):
    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.seen = []

    def variances(self, chain, step):
        self.seen.append((chain, step))
        return super().variances(chain, step)


def _chain_of(d: Path):
    meta = json.loads((d / "meta.json").read_text())
    alice = np.load(d / "alice_symbols.npy")
    idx = np.arange(3, alice.size, 10)
    spy = _Spy(np.load(d / "shot_noise.npy"), np.load(d / "electronic_noise.npy"))
    receive(np.load(d / "adc.npy"), meta["waveform"], meta["rates"]["capture_sps"], idx,
            alice[idx], eta=meta["link"]["eta"], nco_hz=meta["ddc"]["nco_hz"],
            if_hz=meta["link"].get("if_hz", 0.0), calibration=spy)
    return spy.seen[0]


def main(dirs: list[Path]) -> None:
    chains = [(d.name, *_chain_of(d)) for d in dirs]
    ref_chain, ref_step = chains[0][1], chains[0][2]
    for df in (0.002, 0.005, 0.01, 0.02):
        ch = copy.copy(ref_chain)
        ch.f1 = ref_chain.f1 + df
        chains.append((f"f1 + {df}", ch, ref_step))
    for a in (0.95, 0.98, 0.99):
        ch = copy.copy(ref_chain)
        ch.a = a
        chains.append((f"a = {a}", ch, ref_step))
    recs = [np.load(dirs[0] / "shot_noise.npy"), np.load(dirs[0] / "electronic_noise.npy")]
    cal = Calibration(*recs, tolerance=np.inf, max_pilot_shift=np.inf)
    cal.variances(ref_chain, ref_step)
    grids = [Grid.for_chain(ref_chain, r.shape[0], ref_step) for r in recs]
    print("chain | change of N0 | carried/direct - 1: N0, v_el | own positions/direct - 1: N0")
    for name, ch, step in chains:
        (ns, ne), _ = cal.variances(ch, step)
        ds, de = (direct_variance(r, ch, g) for r, g in zip(recs, grids, strict=True))
        os_, oe = (direct_variance(r, ch, Grid.for_chain(ch, r.shape[0], step)) for r in recs)
        n0, d0, o0 = ns - ne, ds - de, os_ - oe
        base = cal._ref.variances[0] - cal._ref.variances[1]
        print(f"{name} | {d0 / base - 1:+.1e} | {n0 / d0 - 1:+.1e}, "
              f"{(ne / n0) / (de / d0) - 1:+.1e} | {o0 / d0 - 1:+.1e}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main([Path(p) for p in sys.argv[1:]])
