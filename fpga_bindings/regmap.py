"""The overlay register map: loads and validates `overlay.toml`, gives named-field access.

`overlay.toml` is the single source of the overlay contract (docs/overlay.md describes it). The
drivers use `RegisterIO` (named fields over a pynq MMIO), the model uses the same `IpBlock`
descriptions for its register semantics. Nothing else in the project spells an offset or a bit.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

OVERLAY_TOML = Path(__file__).with_name("overlay.toml")
ACCESS_TYPES = ("RW", "RO", "W1C", "WO")
_VLNV = re.compile(r"^[\w.\-]+:[\w.\-]+:[\w.\-]+:\d+(\.\d+)*$")


class RegisterMapError(ValueError):
    """overlay.toml is inconsistent (or a name used by a driver does not exist in it)."""


@dataclass(frozen=True)
class Field:
    """A bit field of a 32-bit register."""

    name: str
    lsb: int
    width: int
    access: str
    reset: int = 0
    signed: bool = False
    units: str = ""
    values: dict[str, int] = field(default_factory=dict)
    max: int | None = None
    description: str = ""

    @property
    def mask(self) -> int:
        """Mask of the field in the register word."""
        return ((1 << self.width) - 1) << self.lsb

    @property
    def msb(self) -> int:
        return self.lsb + self.width - 1

    def encode(self, value: int | str) -> int:
        """Field value (int, or a name from `values`) -> bits in position; range-checked."""
        if isinstance(value, str):
            if value not in self.values:
                raise RegisterMapError(f"field {self.name}: no value named {value!r}")
            value = self.values[value]
        value = int(value)
        lo, hi = (-(1 << (self.width - 1)), (1 << (self.width - 1)) - 1) if self.signed else (
            0, (1 << self.width) - 1)
        if not lo <= value <= hi:
            raise RegisterMapError(f"field {self.name}: {value} outside [{lo}, {hi}]")
        return (value & ((1 << self.width) - 1)) << self.lsb

    def decode(self, word: int) -> int:
        """Register word -> field value (sign-extended if signed)."""
        raw = (word >> self.lsb) & ((1 << self.width) - 1)
        if self.signed and raw >> (self.width - 1):
            raw -= 1 << self.width
        return raw

    def name_of(self, value: int) -> str:
        """Name of an enumerated value."""
        for name, v in self.values.items():
            if v == value:
                return name
        raise RegisterMapError(f"field {self.name}: value {value} has no name")


@dataclass(frozen=True)
class Register:
    name: str
    offset: int
    fields: dict[str, Field]
    description: str = ""

    @property
    def reset(self) -> int:
        """Register word after reset."""
        return sum(f.encode(f.reset) for f in self.fields.values())

    def mask(self, *access: str) -> int:
        """Mask of the fields with one of the given access types."""
        return sum(f.mask for f in self.fields.values() if f.access in access)

    def field(self, name: str) -> Field:
        try:
            return self.fields[name]
        except KeyError:
            raise RegisterMapError(f"register {self.name} has no field {name!r}") from None


@dataclass(frozen=True)
class IpBlock:
    name: str
    vlnv: str
    base: int
    range: int
    clock: str
    registers: dict[str, Register]
    description: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    external: bool = False  # register space owned by a vendor driver (RF data converter)

    def register(self, name: str) -> Register:
        try:
            return self.registers[name]
        except KeyError:
            raise RegisterMapError(f"{self.name} has no register {name!r}") from None

    def at_offset(self, offset: int) -> Register | None:
        for reg in self.registers.values():
            if reg.offset == offset:
                return reg
        return None


@dataclass(frozen=True)
class OverlayMap:
    name: str
    version: tuple[int, int, int]
    magic: int
    ip: dict[str, IpBlock]
    clocks: list[dict[str, Any]]
    streams: list[dict[str, Any]]
    interrupts: list[dict[str, Any]]
    bus: str = ""

    def block(self, name: str) -> IpBlock:
        try:
            return self.ip[name]
        except KeyError:
            raise RegisterMapError(f"overlay has no IP block {name!r}") from None

    def ip_dict(self, device: Any = None) -> dict[str, dict[str, Any]]:
        """pynq-style IP dictionary (as `pynq.Overlay` builds from a .hwh) of the mapped blocks.

        `registers` is in pynq's form, so `ip.register_map` works (pynq has no W1C access type:
        such fields show as read-write; the drivers' `RegisterIO` handles them safely).
        Interrupts are left empty: the model has no interrupt controller and the drivers poll.
        """
        out: dict[str, dict[str, Any]] = {}
        for blk in self.ip.values():
            if blk.external:
                continue
            out[blk.name] = {
                "fullpath": blk.name, "type": blk.vlnv, "phys_addr": blk.base,
                "addr_range": blk.range, "parameters": dict(blk.parameters),
                "registers": _pynq_registers(blk), "interrupts": {}, "gpio": {},
                "state": None, "mem_id": None,
                "device": device,
            }
        return out


_PYNQ_ACCESS = {"RW": "read-write", "RO": "read-only", "W1C": "read-write", "WO": "write-only"}


def _pynq_registers(blk: IpBlock) -> dict[str, dict[str, Any]]:
    """A block's registers in the form of pynq's ip_dict (from a .hwh)."""
    out = {}
    for reg in blk.registers.values():
        kinds = {_PYNQ_ACCESS[f.access] for f in reg.fields.values()}
        out[reg.name] = {
            "address_offset": reg.offset, "size": 32, "description": reg.description,
            "access": kinds.pop() if len(kinds) == 1 else "read-write",
            "fields": {f.name: {"bit_offset": f.lsb, "bit_width": f.width,
                                "access": _PYNQ_ACCESS[f.access],
                                "description": f.description} for f in reg.fields.values()},
        }
    return out


def _field(raw: dict[str, Any], where: str) -> Field:
    known = {"name", "lsb", "width", "access", "reset", "signed", "units", "values", "max",
             "description"}
    if extra := set(raw) - known:
        raise RegisterMapError(f"{where}: unknown keys {sorted(extra)}")
    try:
        f = Field(name=raw["name"], lsb=int(raw["lsb"]), width=int(raw["width"]),
                  access=raw["access"], reset=int(raw.get("reset", 0)),
                  signed=bool(raw.get("signed", False)), units=raw.get("units", ""),
                  values=dict(raw.get("values", {})), max=raw.get("max"),
                  description=raw.get("description", ""))
    except KeyError as e:
        raise RegisterMapError(f"{where}: missing {e.args[0]!r}") from None
    where = f"{where}.{f.name}"
    if f.access not in ACCESS_TYPES:
        raise RegisterMapError(f"{where}: access {f.access!r} not in {ACCESS_TYPES}")
    if f.width < 1 or f.lsb < 0 or f.msb > 31:
        raise RegisterMapError(f"{where}: bits [{f.msb}:{f.lsb}] outside a 32-bit register")
    for value in (f.reset, *f.values.values(), *([f.max] if f.max is not None else [])):
        f.encode(value)  # raises if out of range
    if f.max is not None and f.access != "RW":
        raise RegisterMapError(f"{where}: `max` only applies to RW fields")
    return f


def _register(raw: dict[str, Any], where: str, addr_range: int) -> Register:
    where = f"{where}.{raw.get('name', '?')}"
    fields: dict[str, Field] = {}
    used = 0
    for fr in raw.get("fields", []):
        f = _field(fr, where)
        if f.name in fields:
            raise RegisterMapError(f"{where}: duplicate field {f.name}")
        if used & f.mask:
            raise RegisterMapError(f"{where}.{f.name}: overlaps another field")
        used |= f.mask
        fields[f.name] = f
    if not fields:
        raise RegisterMapError(f"{where}: no fields")
    offset = int(raw["offset"])
    if offset % 4 or not 0 <= offset < addr_range:
        raise RegisterMapError(f"{where}: offset {offset:#x} unaligned or outside the block")
    return Register(name=raw["name"], offset=offset, fields=fields,
                    description=raw.get("description", ""))


def parse(doc: dict[str, Any]) -> OverlayMap:
    """Validate a parsed overlay.toml and build the map."""
    ov = doc.get("overlay", {})
    try:
        version = tuple(int(p) for p in ov["version"].split("."))
        if len(version) != 3:
            raise ValueError
    except (KeyError, ValueError, AttributeError):
        raise RegisterMapError("[overlay] version must be 'major.minor.patch'") from None
    templates = doc.get("templates", {})
    blocks: dict[str, IpBlock] = {}
    for name, raw in doc.get("ip", {}).items():
        where = f"ip.{name}"
        for key in ("vlnv", "base", "range", "clock"):
            if key not in raw:
                raise RegisterMapError(f"{where}: missing {key!r}")
        if not _VLNV.match(raw["vlnv"]):
            raise RegisterMapError(f"{where}: VLNV {raw['vlnv']!r} is not vendor:library:name:ver")
        base, rng = int(raw["base"]), int(raw["range"])
        if rng <= 0 or rng & (rng - 1) or base % rng:
            raise RegisterMapError(f"{where}: range must be a power of two dividing the base")
        regs_raw = list(raw.get("registers", []))
        if "template" in raw:
            if raw["template"] not in templates:
                raise RegisterMapError(f"{where}: unknown template {raw['template']!r}")
            regs_raw += templates[raw["template"]].get("registers", [])
        regs: dict[str, Register] = {}
        for rr in regs_raw:
            reg = _register(rr, where, rng)
            if reg.name in regs or any(r.offset == reg.offset for r in regs.values()):
                raise RegisterMapError(f"{where}: duplicate register {reg.name} / offset")
            regs[reg.name] = reg
        external = bool(raw.get("external", False))
        if not regs and not external:
            raise RegisterMapError(f"{where}: no registers")
        blocks[name] = IpBlock(name=name, vlnv=raw["vlnv"], base=base, range=rng,
                               clock=raw["clock"], registers=regs,
                               description=raw.get("description", ""),
                               parameters={k: str(v) for k, v in
                                           raw.get("parameters", {}).items()},
                               external=external)
    spans = sorted((b.base, b.base + b.range, b.name) for b in blocks.values())
    for (_, end, a), (start, _, b) in itertools.pairwise(spans):
        if start < end:
            raise RegisterMapError(f"address ranges of {a} and {b} overlap")
    clocks = list(doc.get("clocks", []))
    clock_names = {c["name"] for c in clocks}
    for b in blocks.values():
        if b.clock not in clock_names:
            raise RegisterMapError(f"ip.{b.name}: unknown clock {b.clock!r}")
    streams, interrupts = list(doc.get("streams", [])), list(doc.get("interrupts", []))
    for s in streams:
        for end in (s["from"], s["to"]):
            if end.partition("/")[0] not in blocks:
                raise RegisterMapError(f"stream {s['name']}: unknown block in {end!r}")
    for irq in interrupts:
        if irq["source"].partition("/")[0] not in blocks:
            raise RegisterMapError(f"interrupt {irq['name']}: unknown block")
    if len({i["irq"] for i in interrupts}) != len(interrupts):
        raise RegisterMapError("two interrupts share an irq line")
    return OverlayMap(name=ov.get("name", ""), version=version,  # type: ignore[arg-type]
                      magic=int(ov["magic"]), ip=blocks, clocks=clocks, streams=streams,
                      interrupts=interrupts, bus=ov.get("bus", ""))


def load(path: Path | str = OVERLAY_TOML) -> OverlayMap:
    """Load and validate an overlay description (default: the project's overlay.toml)."""
    with open(path, "rb") as fh:
        try:
            doc = tomllib.load(fh)
        except tomllib.TOMLDecodeError as e:
            raise RegisterMapError(f"{path}: {e}") from None
    return parse(doc)


@cache
def default_map() -> OverlayMap:
    """The project's overlay map, loaded once."""
    return load()


class _Mmio(Protocol):
    def read(self, offset: int = 0, length: int = 4) -> int: ...
    def write(self, offset: int, data: int) -> None: ...


class RegisterIO:
    """Named-field access to one IP block through a pynq MMIO.

    `get("STATUS", "DONE")`, `fields("STATUS")`, `set("CTRL", MODE="DDC", TRIG_SOURCE=1)`
    (read-modify-write of RW fields, W1C bits written as 0 so nothing is cleared by accident),
    `pulse("COMMAND", "ARM")`, `clear("ERRORS", "OVERFLOW")` (write 1 to clear).
    """

    def __init__(self, mmio: _Mmio, block: IpBlock):
        self.mmio = mmio
        self.block = block

    def read(self, reg: str) -> int:
        return self.mmio.read(self.block.register(reg).offset)

    def get(self, reg: str, fld: str = "VALUE") -> int:
        r = self.block.register(reg)
        return r.field(fld).decode(self.mmio.read(r.offset))

    def fields(self, reg: str) -> dict[str, int]:
        r = self.block.register(reg)
        word = self.mmio.read(r.offset)
        return {f.name: f.decode(word) for f in r.fields.values()}

    def set(self, reg: str, **values: int | str) -> None:
        r = self.block.register(reg)
        for name in values:
            if r.field(name).access != "RW":
                raise RegisterMapError(f"{self.block.name}.{reg}.{name} is not RW")
        word = self.mmio.read(r.offset) & r.mask("RW")
        for name, value in values.items():
            f = r.field(name)
            word = (word & ~f.mask) | f.encode(value)
        self.mmio.write(r.offset, word)

    def pulse(self, reg: str, *names: str) -> None:
        r = self.block.register(reg)
        word = 0
        for name in names:
            f = r.field(name)
            if f.access != "WO" or f.width != 1:
                raise RegisterMapError(f"{self.block.name}.{reg}.{name} is not a command bit")
            word |= f.mask
        self.mmio.write(r.offset, word | (self.mmio.read(r.offset) & r.mask("RW")))

    def clear(self, reg: str, *names: str) -> None:
        """Clear the named W1C fields (all W1C fields of the register if none are named)."""
        r = self.block.register(reg)
        fs = [r.field(n) for n in names] if names else [
            f for f in r.fields.values() if f.access == "W1C"]
        for f in fs:
            if f.access != "W1C":
                raise RegisterMapError(f"{self.block.name}.{reg}.{f.name} is not W1C")
        word = self.mmio.read(r.offset) & r.mask("RW")
        self.mmio.write(r.offset, word | sum(f.mask for f in fs))
