"""Link configuration: TOML with validation and defaults for a 25 km heterodyne link.

Every setting has a unit in its name or comment. Unknown sections or keys, wrong types and
out-of-range values are rejected with a message that names the offending `section.key`.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

from fpga_bindings.boards import get_profile
from fpga_bindings.streams import max_complex_sps


class ConfigError(ValueError):
    """Invalid link configuration; the message names the section and key."""


def _range(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           choices: tuple[str, ...] | None = None) -> dict[str, Any]:
    return {"metadata": {"lo": lo, "hi": hi, "lo_open": lo_open, "choices": choices}}


@dataclass(frozen=True)
class ChannelPhysics:
    """The simulated optical link (used with --sim; on a board these are measured, not set)."""

    distance_km: float = field(default=25.0, **_range(0.0, 500.0))
    loss_db_per_km: float = field(default=0.2, **_range(0.0, 10.0))
    xi: float = field(default=0.02, **_range(0.0, 10.0))  # excess noise, SNU, channel input
    eta: float = field(default=0.7, **_range(0.0, 1.0, lo_open=True))  # detector efficiency
    v_el: float = field(default=0.1, **_range(0.0, 10.0))  # electronic noise, SNU
    linewidth_hz: float = field(default=10e3, **_range(0.0, 1e9))  # combined laser linewidth
    lo_offset_hz: float = field(default=50e6, **_range(-250e6, 250e6))
    lo_drift_hz_per_s: float = field(default=0.0, **_range(-1e12, 1e12))
    clock_ppm: float = field(default=5.0, **_range(-200.0, 200.0))
    seed: int = field(default=1, **_range(0))

    @property
    def transmittance(self) -> float:
        return 10.0 ** (-self.loss_db_per_km * self.distance_km / 10.0)


@dataclass(frozen=True)
class Modulation:
    detection: str = field(default="heterodyne", **_range(choices=("homodyne", "heterodyne")))
    detector: str = field(default="trusted", **_range(choices=("trusted", "untrusted")))
    v_a: float = field(default=4.0, **_range(0.0, 1e3, lo_open=True))  # SNU per quadrature
    symbol_rate_hz: float = field(default=100e6, **_range(1e3, 1e10))
    board: str = field(default="rfsoc4x2", **_range(choices=("rfsoc4x2", "zcu208", "zcu111")))
    # DAC interpolation = ADC decimation: player and capture rate = converter rate / factor
    # (8: 500 MS/s on the boards' 4 GS/s converters; 4: 1 GS/s, needs overlay contract >= 1.2)
    converter_factor: int = field(default=8, **_range(1, 40))
    # frame layout (docs/dsp.md): "centre" = dsp.transmitter.TxConfig's defaults; "edge" = data
    # at one edge of the pass band, strong pilot at the other (dsp.layout.edge_layout)
    layout: str = field(default="centre", **_range(choices=("centre", "edge")))
    planned_linewidth_hz: float = field(default=10e3, **_range(0.0, 1e9, lo_open=True))  # edge

    def __post_init__(self) -> None:
        prof = get_profile(self.board)
        f = self.converter_factor
        if f not in prof.decimations or f not in prof.interpolations:
            raise ConfigError(f"modulation.converter_factor = {f} is not a decimation and "
                              f"interpolation factor of the {self.board}: "
                              f"{sorted(set(prof.decimations) & set(prof.interpolations))}")
        player_sps = self.player_sps
        limit = min(max_complex_sps("waveform"), max_complex_sps("capture"))
        if player_sps > limit:
            raise ConfigError(f"modulation.converter_factor = {f}: {player_sps:g} S/s exceeds "
                              f"the overlay streams' {limit:g} S/s (fpga_bindings/overlay.toml)")
        sps = player_sps / self.symbol_rate_hz
        if sps < 2 or abs(sps - round(sps)) > 1e-9 * sps:
            raise ConfigError(f"modulation.converter_factor = {f}: the player rate "
                              f"{player_sps:g} S/s is not an integer multiple (>= 2) of "
                              f"modulation.symbol_rate_hz = {self.symbol_rate_hz:g}")
        if self.layout == "edge":
            from dsp.layout import edge_layout

            try:
                edge_layout(player_sps, self.planned_linewidth_hz,
                            symbol_rate_hz=self.symbol_rate_hz, v_a=self.v_a)
            except ValueError as exc:
                raise ConfigError(f"modulation.layout = 'edge' at converter_factor {f}: "
                                  f"{exc}") from None

    @property
    def player_sps(self) -> float:
        """DAC player rate (= capture rate), complex samples/s."""
        return get_profile(self.board).default_dac_sps / self.converter_factor


@dataclass(frozen=True)
class Protocol:
    frame_symbols: int = field(default=1 << 20, **_range(1024, 1 << 28))
    # PA block: 3e7 symbols, where the 25 km defaults' finite-size (LGG) bound is clearly
    # positive (~0.02-0.027 bits/symbol at beta 0.90, xi 0.02-0.03; <= 0.007 at 10^7)
    block_symbols: int = field(default=30_000_000, **_range(1024, 1 << 34))
    pe_fraction: float = field(default=0.1, **_range(0.0, 1.0, lo_open=True))
    # "auto": code, length, beta and iteration cap from the measured operating points
    # (reconcile.operating_point, the most secret bits per CPU second for the planned channel
    # and block); "fixed", or an SNR outside the measured range: the MET rate-0.2 mother code
    # of length code_n at beta_target with decoder_iterations (below)
    reconciliation: str = field(default="auto", **_range(choices=("auto", "fixed")))
    # 0.88: what the MET rate-0.2 code family decodes reliably at 25 km (n = 64000, 100
    # iterations; measured in docs/protocol.md); 0.95 would fail nearly every codeword
    beta_target: float = field(default=0.88, **_range(0.5, 1.0))
    mdr_dimension: int = field(default=8, **_range(1, 8))
    xi_abort: float = field(default=0.1, **_range(0.0, 10.0))  # abort if xi_max above, SNU
    calibrate_every_frames: int = field(default=16, **_range(1))
    eps_pe: float = field(default=1e-10, **_range(0.0, 1.0, lo_open=True))
    eps_pa: float = field(default=1e-10, **_range(0.0, 1.0, lo_open=True))
    eps_cor: float = field(default=1e-12, **_range(0.0, 1.0, lo_open=True))
    peer_timeout_s: float = field(default=30.0, **_range(0.1, 3600.0))
    code_n: int = field(default=64_000, **_range(1000, 1 << 24))  # MET mother code length, bits
    decoder_iterations: int = field(default=100, **_range(1, 10_000))
    security_bound: str = field(default="lgg", **_range(choices=("lgg", "composable", "min")))
    key_bytes: int = field(default=32, **_range(1, 1 << 16))  # size of each stored key
    clip_fraction_abort: float = field(default=1e-4, **_range(0.0, 1.0))  # ADC clipped share

    def __post_init__(self) -> None:
        if self.mdr_dimension not in (1, 2, 4, 8):
            raise ConfigError("protocol.mdr_dimension must be 1, 2, 4 or 8")
        if self.block_symbols < self.frame_symbols:
            raise ConfigError("protocol.block_symbols must be >= protocol.frame_symbols")


@dataclass(frozen=True)
class Transmitter:
    """Alice's optical front end: measured once per transmitter at commissioning (docs/protocol.md
    "Two boards", step 2), used by Alice alone (not in the config digest)."""

    # quadrature amplitude at the channel input, SNU (per player-sample mode), that DAC code
    # 2^15 gives with the VOA at 0 dB; the VOA is set per frame from it so the waveform has
    # modulation.v_a. The model's modulator uses the same value.
    dac_full_scale_snu: float = field(default=256.0, **_range(0.0, 1e6, lo_open=True))


@dataclass(frozen=True)
class Endpoints:
    listen: str = "127.0.0.1:0"  # host:port of the transmitter's classical channel
    psk_file: str = "psk.bin"  # pre-shared authentication key file (created by setup)
    store_alice: str = "alice-keys.sqlite"
    store_bob: str = "bob-keys.sqlite"
    link_id: str = "link-1"


@dataclass(frozen=True)
class LinkConfig:
    physics: ChannelPhysics = field(default_factory=ChannelPhysics)
    modulation: Modulation = field(default_factory=Modulation)
    protocol: Protocol = field(default_factory=Protocol)
    transmitter: Transmitter = field(default_factory=Transmitter)
    endpoints: Endpoints = field(default_factory=Endpoints)


def _check_value(section: str, f: Any, typ: type, value: Any) -> Any:
    where = f"{section}.{f.name}"
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or isinstance(value, bool) != (typ is bool):
        raise ConfigError(f"{where} must be of type {typ.__name__}, got {type(value).__name__}")
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{where} must be one of {', '.join(meta['choices'])}, got {value!r}")
    if typ in (int, float):
        if typ is float and not math.isfinite(value):
            raise ConfigError(f"{where} must be finite")
        lo, hi = meta.get("lo"), meta.get("hi")
        if lo is not None and (value < lo or (meta.get("lo_open") and value == lo)):
            bound = f"> {lo}" if meta.get("lo_open") else f">= {lo}"
            raise ConfigError(f"{where} = {value} is out of range: it must be {bound}")
        if hi is not None and value > hi:
            raise ConfigError(f"{where} = {value} is out of range: it must be <= {hi}")
    return value


def _build_section(section: str, cls: type, table: Any) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"[{section}] must be a table")
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"unknown key {section}.{unknown[0]} (known: {', '.join(known)})")
    values = {k: _check_value(section, known[k], hints[k], v) for k, v in table.items()}
    return replace(cls(), **values)


def config_from_dict(data: dict[str, Any]) -> LinkConfig:
    """Validate a parsed TOML document; missing sections and keys take their defaults."""
    hints = get_type_hints(LinkConfig)
    unknown = sorted(set(data) - set(hints))
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}] (known: {', '.join(hints)})")
    return LinkConfig(**{name: _build_section(name, hints[name], table)
                         for name, table in data.items()})


def load_config(path: str | Path | None) -> LinkConfig:
    """Load and validate a TOML link configuration; None gives the defaults."""
    if path is None:
        return LinkConfig()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return config_from_dict(data)
