"""The receiver's linear signal path with fixed parameters, applied chunk by chunk: pilot
phase-reference smoother and subtraction, carrier shift, matched filter at fractional sample
positions (docs/dsp.md, "Receiver", steps 5 and 7)."""

from __future__ import annotations

import numpy as np

from dsp import kernels
from dsp.clock import ClockTrack


def check_iq(iq: np.ndarray, name: str) -> None:
    """Raise ValueError unless `iq` is int16 I/Q samples of shape (n, 2)."""
    if iq.dtype != np.int16 or iq.ndim != 2 or iq.shape[1] != 2:
        raise ValueError(f"{name}: expected int16 I/Q samples of shape (n, 2), got "
                         f"{iq.dtype} {iq.shape}")


class Chain:
    """Signal path of one frame.

    iq: int16 (n, 2) samples; f1: phase-pilot frequency (cycles per Bob sample); a_coef: pilot
    smoother coefficient; margin: samples added on each side of a chunk so that the smoother
    (and the matched filter) see no edge; track: Alice's clock; carrier_hz_alice: pilot-to-data
    carrier offset (cycles per Alice sample); table: matched-filter polyphase table
    (`dsp.filters.rrc_polyphase`)."""

    def __init__(self, iq: np.ndarray, f1: float, a_coef: float, margin: int,
                 track: ClockTrack, carrier_hz_alice: float, table: np.ndarray) -> None:
        self.iq, self.f1, self.a = iq, f1, a_coef
        self.margin, self.track, self.table = margin, track, table
        self.cw = 2 * np.pi * carrier_hz_alice  # carrier offset, rad per Alice sample
        self.half = (table.shape[1] - 1) // 2

    def on(self, iq: np.ndarray) -> Chain:
        """The same path applied to other samples (a calibration record)."""
        return Chain(iq, self.f1, self.a, self.margin, self.track, self.cw / (2 * np.pi),
                     self.table)

    def corrected(self, lo: int, hi: int, rotate: bool = True
                  ) -> tuple[np.ndarray, int, np.ndarray]:
        """Pilot-corrected samples for [lo, hi) (clipped to the capture), with margins; their
        first sample index; the pilot estimate."""
        n = self.iq.shape[0]
        s0, s1 = max(0, lo - self.margin), min(n, hi + self.margin)
        knot_ph = self.cw * self.track.knot_a
        v = np.empty(s1 - s0, dtype=np.complex128)
        pil = np.empty_like(v)
        kernels.pilot_correct(self.iq[s0:s1], s0, self.f1, self.a, self.track.knot_n, knot_ph,
                              rotate, v, pil)
        return v, s0, pil

    def sample(self, pos: np.ndarray, v: np.ndarray, s0: int) -> np.ndarray:
        """Matched-filter outputs at the (global, fractional) sample positions `pos` of the
        corrected samples v (first index s0)."""
        out = np.empty(pos.size, dtype=np.complex128)
        kernels.mf_sample(v, s0, pos, self.table, out)
        return out
