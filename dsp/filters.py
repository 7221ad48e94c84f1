"""Root-raised-cosine pulses: continuous-time formula, sampled taps, and a polyphase table.

Time is in symbol periods. The RRC impulse response (Proakis, Digital Communications, 5th ed.,
eq. 9.2-41 family; removable singularities at t = 0 and |t| = 1/(4 beta) handled explicitly):

    p(t) = [sin(pi t (1 - b)) + 4 b t cos(pi t (1 + b))] / [pi t (1 - (4 b t)^2)]

RRC * RRC is the raised-cosine Nyquist pulse, so a unit-energy RRC at the transmitter and the
same filter matched at the receiver give the symbol back with no inter-symbol interference
(apart from truncation of the tails, below 1e-6 in power for spans of +-8 symbols at b = 0.2).
"""

from __future__ import annotations

import numpy as np


def rrc(t: np.ndarray, beta: float) -> np.ndarray:
    """Unnormalised RRC pulse at times `t` (symbol periods), roll-off `beta` in (0, 1]."""
    if not 0.0 < beta <= 1.0:
        raise ValueError("RRC roll-off must be in (0, 1]")
    t = np.asarray(t, dtype=np.float64)
    out = np.empty_like(t)
    at0 = np.abs(t) < 1e-12
    sing = np.abs(np.abs(4.0 * beta * t) - 1.0) < 1e-9
    reg = ~(at0 | sing)
    tr = t[reg]
    num = np.sin(np.pi * tr * (1 - beta)) + 4 * beta * tr * np.cos(np.pi * tr * (1 + beta))
    out[reg] = num / (np.pi * tr * (1 - (4 * beta * tr) ** 2))
    out[at0] = 1 - beta + 4 * beta / np.pi
    out[sing] = (beta / np.sqrt(2)) * (
        (1 + 2 / np.pi) * np.sin(np.pi / (4 * beta)) + (1 - 2 / np.pi) * np.cos(np.pi / (4 * beta))
    )
    return out


def rrc_taps(sps: int, beta: float, half_span: int) -> np.ndarray:
    """RRC taps at `sps` samples per symbol over +-`half_span` symbols, unit energy (sum h^2 = 1).

    With unit energy, a symbol a shaped by these taps and matched-filtered by the same taps comes
    back as a; white noise of variance s2 per sample (per quadrature) comes out with variance s2.
    """
    if sps < 1 or half_span < 1:
        raise ValueError("sps and half_span must be >= 1")
    t = np.arange(-half_span * sps, half_span * sps + 1) / sps
    h = rrc(t, beta)
    return h / np.sqrt(np.sum(h * h))


def rrc_polyphase(sps_nominal: float, beta: float, half_span: int, phases: int) -> np.ndarray:
    """Matched-filter table for fractional-delay sampling, shape (phases + 1, n_taps).

    Row j, column m holds p((m - half + j / phases) / sps) * scale, half = ceil(half_span *
    sps), i.e. the pulse at sample offsets with a fractional shift j/phases of a sample; the last
    row duplicates the shift of one whole sample so that linear interpolation between rows needs
    no wrap. `scale` normalises to unit energy at `sps_nominal` samples per symbol.
    """
    half = int(np.ceil(half_span * sps_nominal))
    m = np.arange(-half, half + 1, dtype=np.float64)
    frac = np.arange(phases + 1, dtype=np.float64) / phases
    t = (m[None, :] - frac[:, None]) / sps_nominal
    table = rrc(t.ravel(), beta).reshape(t.shape)
    table[np.abs(t) > half_span] = 0.0
    scale = 1.0 / np.sqrt(np.sum(table[0] ** 2))
    return table * scale
