"""Register semantics of one modelled IP block, from its overlay.toml description.

Bus side (`bus_read`/`bus_write`, what the CPU sees): reset values, RW fields stored (clamped to
`max`), RO fields ignore writes, W1C fields cleared by writing 1, WO command bits read 0 and are
handed to `on_command`, reserved bits read 0, offsets without a register raise `BusError`.
Hardware side (`hw_set`/`hw_get`): the model's logic drives RO and W1C fields directly.
"""

from __future__ import annotations

from fpga_bindings.regmap import IpBlock, Register


class BusError(RuntimeError):
    """An AXI access the hardware would answer with SLVERR/DECERR (unmapped address)."""


class RegisterBlock:
    """The register file of one IP block. Subclasses add behaviour through the hooks."""

    def __init__(self, block: IpBlock):
        self.block = block
        self._by_offset: dict[int, Register] = {r.offset: r for r in block.registers.values()}
        self._words: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        """Every register to its reset value."""
        self._words = {name: reg.reset for name, reg in self.block.registers.items()}

    # ---- bus side -----------------------------------------------------------------------
    def _reg_at(self, offset: int, op: str) -> Register:
        reg = self._by_offset.get(offset)
        if reg is None:
            raise BusError(f"bus error: {op} of {self.block.name} + {offset:#x} "
                           f"(address {self.block.base + offset:#x}): no register there")
        return reg

    def bus_read(self, offset: int) -> int:
        reg = self._reg_at(offset, "read")
        self.before_read(reg.name)
        return self._words[reg.name] & ~reg.mask("WO") & 0xFFFFFFFF

    def bus_write(self, offset: int, value: int) -> None:
        reg = self._reg_at(offset, "write")
        value &= 0xFFFFFFFF
        old = self._words[reg.name]
        new = old & ~(reg.mask("RW") | reg.mask("W1C")) & 0xFFFFFFFF
        for f in reg.fields.values():
            if f.access == "RW":
                v = f.decode(value)
                if f.max is not None and v > f.max:
                    v = f.max
                new |= f.encode(v)
            elif f.access == "W1C":
                new |= old & f.mask & ~value
        self._words[reg.name] = new
        commands = {f.name for f in reg.fields.values() if f.access == "WO" and value & f.mask}
        self.after_write(reg.name, old, new)
        if commands:
            self.on_command(reg.name, commands)

    # ---- hardware side ------------------------------------------------------------------
    def hw_get(self, reg: str, fld: str = "VALUE") -> int:
        r = self.block.register(reg)
        return r.field(fld).decode(self._words[reg])

    def hw_set(self, reg: str, **values: int) -> None:
        """Drive fields from the hardware side (any access type; values range-checked)."""
        r = self.block.register(reg)
        word = self._words[reg]
        for name, value in values.items():
            f = r.field(name)
            word = (word & ~f.mask) | f.encode(value)
        self._words[reg] = word

    def hw_latch(self, reg: str, **values: bool) -> None:
        """Set sticky W1C flags whose condition is true (never clears them)."""
        self.hw_set(reg, **{k: 1 for k, v in values.items() if v})

    # ---- hooks --------------------------------------------------------------------------
    def before_read(self, reg: str) -> None:
        """Refresh hardware-driven fields before the CPU reads `reg`."""

    def after_write(self, reg: str, old: int, new: int) -> None:
        """React to a stored-value change of `reg` (RW or W1C fields)."""

    def on_command(self, reg: str, commands: set[str]) -> None:
        """Execute WO command pulses written to `reg`."""
