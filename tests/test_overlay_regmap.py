"""overlay.toml loads, validates, and regmap's field encoding is exact."""

from __future__ import annotations

import copy
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fpga_bindings import regmap
from fpga_bindings.regmap import Field, RegisterMapError


@pytest.fixture(scope="module")
def doc() -> dict:
    with open(regmap.OVERLAY_TOML, "rb") as fh:
        return tomllib.load(fh)


def test_contract_loads_with_required_blocks():
    m = regmap.default_map()
    assert set(m.ip) >= {"board_info", "frontend", "dac_player", "adc_capture", "dma_dac",
                         "dma_adc", "rfdc"}
    assert m.block("dma_adc").vlnv == "xilinx.com:ip:axi_dma:7.1"
    info = m.block("board_info")
    v = info.register("VERSION")
    assert (v.field("MAJOR").reset, v.field("MINOR").reset, v.field("PATCH").reset) == m.version
    assert info.register("MAGIC").reset == m.magic == int.from_bytes(b"CVQD", "big")
    assert {c["name"] for c in m.clocks} >= {b.clock for b in m.ip.values()}
    assert len(m.interrupts) == len({i["irq"] for i in m.interrupts})


def test_dma_template_matches_pg021_offsets():
    regs = regmap.default_map().block("dma_adc").registers
    want = {"MM2S_DMACR": 0x00, "MM2S_DMASR": 0x04, "MM2S_SA": 0x18, "MM2S_SA_MSB": 0x1C,
            "MM2S_LENGTH": 0x28, "S2MM_DMACR": 0x30, "S2MM_DMASR": 0x34, "S2MM_DA": 0x48,
            "S2MM_DA_MSB": 0x4C, "S2MM_LENGTH": 0x58}
    assert {n: r.offset for n, r in regs.items()} == want
    # PG021 reset values: DMACR 0x00010002 (IRQThreshold 1, reserved bit 1), DMASR halted
    assert regs["S2MM_DMACR"].reset == 0x0001_0002
    assert regs["S2MM_DMASR"].reset == 0x0001_0001


def test_ip_dict_is_pynq_shaped():
    d = regmap.default_map().ip_dict(device="dev")
    assert "rfdc" not in d  # vendor block, not modelled
    e = d["adc_capture"]
    assert e["phys_addr"] == 0xA003_0000 and e["addr_range"] == 0x1000
    assert e["type"].startswith("cvqkd.org:cvqkd:adc_capture:") and e["device"] == "dev"
    assert d["dma_adc"]["parameters"]["c_include_s2mm"] == "1"


def _bad(doc: dict, mutate) -> None:
    d = copy.deepcopy(doc)
    mutate(d)
    with pytest.raises(RegisterMapError):
        regmap.parse(d)


def test_validation_rejects_broken_maps(doc):
    regs = lambda d: d["ip"]["adc_capture"]["registers"]  # noqa: E731
    _bad(doc, lambda d: regs(d)[0]["fields"].append(
        {"name": "X", "lsb": 0, "width": 1, "access": "RW"}))                 # overlap
    _bad(doc, lambda d: regs(d)[0].update(offset=0x2))                        # unaligned
    _bad(doc, lambda d: regs(d)[1].update(offset=regs(d)[0]["offset"]))       # duplicate offset
    _bad(doc, lambda d: regs(d)[0]["fields"][0].update(access="RWX"))         # access type
    _bad(doc, lambda d: regs(d)[0]["fields"][0].update(reset=2))              # reset > width
    _bad(doc, lambda d: regs(d)[0]["fields"][0].update(lsb=31, width=2))      # beyond bit 31
    _bad(doc, lambda d: d["ip"]["frontend"].update(base=0xA000_0000))         # overlapping blocks
    _bad(doc, lambda d: d["ip"]["frontend"].update(vlnv="frontend"))          # not a VLNV
    _bad(doc, lambda d: d["ip"]["dma_adc"].update(template="nope"))           # unknown template
    _bad(doc, lambda d: d["ip"]["frontend"].update(clock="nope"))             # unknown clock
    _bad(doc, lambda d: d["streams"][0].update(to="nope/S_AXIS"))             # unknown stream end
    _bad(doc, lambda d: d["overlay"].update(version="1.0"))                   # version format
    regmap.parse(copy.deepcopy(doc))  # the untouched document is valid


@given(lsb=st.integers(0, 24), width=st.integers(1, 8), signed=st.booleans(), data=st.data())
def test_field_encode_decode_roundtrip(lsb, width, signed, data):
    f = Field(name="F", lsb=lsb, width=width, access="RW", signed=signed)
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    v = data.draw(st.integers(lo, hi))
    word = f.encode(v)
    assert word & ~f.mask == 0
    assert f.decode(word | ~f.mask & 0xFFFFFFFF) == v  # neighbouring bits do not leak in
    with pytest.raises(RegisterMapError):
        f.encode(hi + 1)


def test_enumerated_values_by_name():
    sw = regmap.default_map().block("frontend").register("CTRL").field("SWITCH")
    assert sw.encode("LO_OFF") == 2 << sw.lsb and sw.name_of(1) == "BLOCKED"
    with pytest.raises(RegisterMapError):
        sw.encode("OPEN")
