"""docs/overlay.md's register tables match overlay.toml."""

from __future__ import annotations

from pathlib import Path

from fpga_bindings import regmap_doc
from fpga_bindings.regmap import default_map

DOC = Path(__file__).resolve().parents[1] / "docs" / "overlay.md"


def test_generated_tables_match_toml():
    want = regmap_doc.render(default_map())
    got = regmap_doc.generated_section(DOC.read_text())
    assert got == want, "run: python -m fpga_bindings.regmap_doc docs/overlay.md"


def test_every_register_and_field_is_documented():
    text = DOC.read_text()
    for blk in default_map().ip.values():
        assert f"### `{blk.name}`" in text
        for reg in blk.registers.values():
            assert f"| {reg.name} |" in text
            for f in reg.fields.values():
                assert f"| {f.name} |" in text
