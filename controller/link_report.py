"""What `cvqkd link` measures and prints: stage timers, per-frame and per-block records, the
final summary (plain text or one JSON object). No key material ever enters a report."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

STAGES = ("setup", "calibrate", "emit_capture", "dsp", "estimation", "reconciliation",
          "verification", "privacy_amplification", "commit")


class StageTimer:
    """Wall time per stage, seconds (one end)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0


@dataclass
class FrameRecord:
    frame: int
    symbols: int
    ok: bool
    reason: str | None = None  # AbortReason value when not ok
    detail: str = ""
    xi: float | None = None  # this frame's estimate, SNU
    xi_max: float | None = None
    snr: float | None = None
    codewords: int = 0
    failed: int = 0
    code_rate: float | None = None  # effective rate, bits per carried real sample


@dataclass
class BlockRecord:
    block: int
    frames: list[int]
    n_total: int  # symbols
    ok: bool
    reason: str | None = None
    detail: str = ""
    transmittance: float | None = None
    transmittance_min: float | None = None
    xi: float | None = None
    xi_low: float | None = None  # symmetric interval at the PE confidence: xi -+ (xi_max - xi)
    xi_max: float | None = None
    snr: float | None = None
    v_el: float | None = None
    beta: float | None = None
    fer: float | None = None
    bound_bits_per_key_symbol: float | None = None
    pe_samples: int = 0  # real PE samples (2 per heterodyne symbol)
    v_a: float | None = None  # empirical modulation variance of the PE data, SNU
    n_decoded: int = 0  # key symbols in verified codewords
    leak_verify_bits: int = 0
    hash_input_bits: int = 0
    hash_output_bits: int = 0
    secret_bits: int = 0  # delivered to applications (both stores)
    auth_refill_bits: int = 0


@dataclass
class LinkReport:
    """The run's summary; `to_json` gives the --json object."""

    frames: list[FrameRecord] = field(default_factory=list)
    blocks: list[BlockRecord] = field(default_factory=list)
    session_abort: dict[str, str] | None = None
    seconds_alice: dict[str, float] = field(default_factory=dict)
    seconds_bob: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    store_alice: str = ""
    store_bob: str = ""
    keys_alice: int = 0
    keys_bob: int = 0
    symbol_rate_hz: float = 0.0

    def summary(self) -> dict[str, Any]:
        symbols = sum(f.symbols for f in self.frames)
        secret = sum(b.secret_bits for b in self.blocks)
        good = [b for b in self.blocks if b.xi is not None]
        last = good[-1] if good else None
        cw = sum(f.codewords for f in self.frames)
        failed = sum(f.failed for f in self.frames)
        rates = [f.code_rate for f in self.frames if f.code_rate is not None]
        stage = {s: round(self.seconds_alice.get(s, 0.0) + self.seconds_bob.get(s, 0.0), 4)
                 for s in STAGES}
        return {
            "frames": len(self.frames),
            "frames_ok": sum(f.ok for f in self.frames),
            "symbols": symbols,
            "blocks": len(self.blocks),
            "transmittance": last.transmittance if last else None,
            "transmittance_min": last.transmittance_min if last else None,
            "excess_noise_snu": last.xi if last else None,
            "excess_noise_interval_snu": [last.xi_low, last.xi_max] if last else None,
            "snr": last.snr if last else None,
            "electronic_noise_snu": last.v_el if last else None,
            "code_rate": (sum(rates) / len(rates)) if rates else None,
            "beta": last.beta if last else None,
            "fer": failed / cw if cw else None,
            "secret_bits": secret,
            "secret_bits_per_symbol": secret / symbols if symbols else 0.0,
            "secret_bits_per_s_processing": secret / self.wall_s if self.wall_s else 0.0,
            "symbols_per_s_processing": symbols / self.wall_s if self.wall_s else 0.0,
            "secret_bits_per_s_at_symbol_rate": (secret / symbols * self.symbol_rate_hz
                                                 if symbols else 0.0),
            "wall_s": round(self.wall_s, 3),
            "stage_seconds": stage,
            "stage_seconds_alice": {k: round(v, 4) for k, v in self.seconds_alice.items()},
            "stage_seconds_bob": {k: round(v, 4) for k, v in self.seconds_bob.items()},
            "session_abort": self.session_abort,
            "key_store_alice": self.store_alice,
            "key_store_bob": self.store_bob,
            "keys_in_store_alice": self.keys_alice,
            "keys_in_store_bob": self.keys_bob,
        }

    def to_json(self) -> dict[str, Any]:
        out = self.summary()
        out["frame_records"] = [asdict(f) for f in self.frames]
        out["block_records"] = [asdict(b) for b in self.blocks]
        return _finite(out)

    def text(self) -> str:
        s = self.summary()
        lines = [f"frames {s['frames']} ({s['frames_ok']} ok), symbols {s['symbols']}, "
                 f"blocks {s['blocks']}"]
        if s["excess_noise_snu"] is not None:
            lo, hi = s["excess_noise_interval_snu"]
            lines.append(f"transmittance {s['transmittance']:.4f} (min "
                         f"{s['transmittance_min']:.4f}), excess noise "
                         f"{s['excess_noise_snu']:.4f} SNU "
                         f"[{lo:.4f}, {hi:.4f}], SNR {s['snr']:.4f}, v_el "
                         f"{s['electronic_noise_snu']:.4f} SNU")
        if s["code_rate"] is not None:
            beta = "n/a" if s["beta"] is None else f"{s['beta']:.4f}"
            fer = "n/a" if s["fer"] is None else f"{s['fer']:.4f}"
            lines.append(f"code rate {s['code_rate']:.4f}, beta {beta}, FER {fer}")
        for b in self.blocks:
            if b.ok:
                lines.append(f"block {b.block}: {b.secret_bits} secret bits "
                             f"(+{b.auth_refill_bits} authentication refill) from {b.n_total} "
                             f"symbols; bound {b.bound_bits_per_key_symbol:.4f} bits/key symbol")
            else:
                lines.append(f"block {b.block}: {b.detail or b.reason}")
        lines.append(f"secret bits {s['secret_bits']}: {s['secret_bits_per_symbol']:.3g} "
                     f"bits/symbol, {s['secret_bits_per_s_processing']:.4g} bits/s of "
                     f"processing ({s['symbols_per_s_processing']:.4g} symbols/s, wall "
                     f"{s['wall_s']:.1f} s)")
        lines.append("time per stage (s, both ends): " + ", ".join(
            f"{k} {v:.2f}" for k, v in s["stage_seconds"].items()))
        if s["session_abort"]:
            lines.append(f"session aborted: {s['session_abort']['reason']}: "
                         f"{s['session_abort']['detail']}")
        stores = [f"{s[f'key_store_{e}']} ({s[f'keys_in_store_{e}']} keys)"
                  for e in ("alice", "bob") if s[f"key_store_{e}"]]  # one end: one store
        lines.append("key stores: " + ", ".join(stores))
        return "\n".join(lines)


def _finite(obj: Any) -> Any:
    """JSON has no inf/nan: replace them by None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
