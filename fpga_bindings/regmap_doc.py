"""Markdown tables of the overlay contract, generated from overlay.toml for docs/overlay.md.

`python -m fpga_bindings.regmap_doc docs/overlay.md` rewrites the generated part of the document
(between the BEGIN/END markers); tests/test_overlay_docs.py fails when the two disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fpga_bindings.regmap import Field, IpBlock, OverlayMap, default_map

BEGIN = "<!-- BEGIN GENERATED FROM fpga_bindings/overlay.toml: do not edit by hand -->"
END = "<!-- END GENERATED -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _reset(f: Field) -> str:
    if f.signed or f.units or f.width < 8:
        return str(f.reset)
    return f"{f.reset:#x}"


def _meaning(f: Field) -> str:
    parts = []
    if f.units:
        parts.append(f.units)
    if f.signed:
        parts.append("signed")
    if f.values:
        parts.append(", ".join(f"{k}={v}" for k, v in f.values.items()))
    if f.max is not None:
        parts.append(f"max {f.max}")
    return "; ".join(parts)


def block_table(blk: IpBlock) -> str:
    lines = [f"### `{blk.name}`", "",
             f"VLNV `{blk.vlnv}`, base `{blk.base:#010x}`, range `{blk.range:#x}`, "
             f"clock `{blk.clock}`. {blk.description}", ""]
    if blk.parameters:
        params = ", ".join(f"`{k}={v}`" for k, v in blk.parameters.items())
        lines += [f"Configuration: {params}.", ""]
    if not blk.registers:
        lines += ["Register space owned by the vendor driver (see fpga_bindings/rfdc.py).", ""]
        return "\n".join(lines)
    lines += ["| Offset | Register | Field | Bits | Access | Reset | Units / values "
              "| Description |", "|---|---|---|---|---|---|---|---|"]
    for reg in sorted(blk.registers.values(), key=lambda r: r.offset):
        first = True
        for f in sorted(reg.fields.values(), key=lambda f: f.lsb):
            bits = f"{f.msb}:{f.lsb}" if f.width > 1 else str(f.lsb)
            desc = f.description or (reg.description if len(reg.fields) == 1 else "")
            lines.append(
                f"| {f'`{reg.offset:#05x}`' if first else ''} | {reg.name if first else ''} "
                f"| {f.name} | {bits} | {f.access} | {_reset(f)} | {_cell(_meaning(f))} "
                f"| {_cell(desc)} |")
            first = False
    notes = [f"- **{r.name}**: {r.description}" for r in
             sorted(blk.registers.values(), key=lambda r: r.offset)
             if r.description and len(r.fields) > 1]
    return "\n".join([*lines, "", *notes, ""] if notes else [*lines, ""])


def render(m: OverlayMap) -> str:
    """The generated part of docs/overlay.md."""
    out = [BEGIN, "", f"Contract `{m.name}` version {'.'.join(map(str, m.version))}, "
           f"magic `{m.magic:#010x}`. Bus: {m.bus}.", "", "### Address map", "",
           "| Block | VLNV | Base | Range |", "|---|---|---|---|"]
    for b in sorted(m.ip.values(), key=lambda b: b.base):
        out.append(f"| `{b.name}` | `{b.vlnv}` | `{b.base:#010x}` | `{b.range:#x}` |")
    out += ["", "### Clocks", "", "| Clock | Frequency | Description |", "|---|---|---|"]
    for c in m.clocks:
        out.append(f"| `{c['name']}` | {c['freq_hz'] / 1e6:g} MHz | {_cell(c['description'])} |")
    out += ["", "### AXI4-Stream connections", "",
            "| Stream | From | To | TDATA bits | Format |", "|---|---|---|---|---|"]
    for s in m.streams:
        out.append(f"| `{s['name']}` | `{s['from']}` | `{s['to']}` | {s['tdata_bits']} "
                   f"| {_cell(s['format'])} |")
    out += ["", "### Interrupts", "", "| IRQ | Name | Source | Description |",
            "|---|---|---|---|"]
    for i in sorted(m.interrupts, key=lambda i: i["irq"]):
        out.append(f"| {i['irq']} | `{i['name']}` | `{i['source']}` | {_cell(i['description'])} |")
    out.append("")
    for b in sorted(m.ip.values(), key=lambda b: b.base):
        out.append(block_table(b))
    out.append(END)
    return "\n".join(out)


def splice(document: str, generated: str) -> str:
    """Replace the marked section of `document` with `generated`."""
    if BEGIN not in document or END not in document:
        raise ValueError("document has no generated-section markers")
    head, _, rest = document.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return head + generated + tail


def generated_section(document: str) -> str:
    if BEGIN not in document or END not in document:
        raise ValueError("document has no generated-section markers")
    return BEGIN + document.partition(BEGIN)[2].partition(END)[0] + END


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/overlay.md")
    path.write_text(splice(path.read_text(), render(default_map())))
