"""Link configuration loading and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import ConfigError, LinkConfig, config_from_dict, load_config


def test_defaults_are_a_25km_heterodyne_link() -> None:
    cfg = load_config(None)
    assert cfg == LinkConfig()
    assert cfg.physics.distance_km == 25.0 and cfg.modulation.detection == "heterodyne"
    assert cfg.physics.transmittance == pytest.approx(10 ** (-0.5), rel=1e-12)


def test_toml_overrides_and_int_to_float(tmp_path: Path) -> None:
    p = tmp_path / "link.toml"
    p.write_text('[physics]\ndistance_km = 50\nxi = 0.01\n[modulation]\ndetection = "homodyne"\n')
    cfg = load_config(p)
    assert cfg.physics.distance_km == 50.0 and isinstance(cfg.physics.distance_km, float)
    assert cfg.physics.xi == 0.01 and cfg.modulation.detection == "homodyne"
    assert cfg.protocol == LinkConfig().protocol  # untouched sections keep defaults


@pytest.mark.parametrize(
    ("doc", "msg"),
    [
        ({"physics": {"eta": 0.0}}, r"physics\.eta = 0\.0 is out of range: it must be > 0"),
        ({"physics": {"eta": 1.5}}, r"physics\.eta = 1\.5 is out of range: it must be <= 1"),
        ({"physics": {"bogus": 1}}, r"unknown key physics\.bogus"),
        ({"nope": {}}, r"unknown section \[nope\]"),
        ({"physics": 3}, r"\[physics\] must be a table"),
        ({"modulation": {"detection": "x"}}, r"modulation\.detection must be one of"),
        ({"protocol": {"frame_symbols": 1.5}}, r"protocol\.frame_symbols must be of type int"),
        ({"protocol": {"mdr_dimension": 3}}, r"mdr_dimension must be 1, 2, 4 or 8"),
        ({"physics": {"eta": True}}, r"physics\.eta must be of type float, got bool"),
        ({"physics": {"xi": float("nan")}}, r"physics\.xi must be finite"),
    ],
)
def test_invalid_values_name_the_key(doc: dict, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        config_from_dict(doc)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[physics\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


@pytest.mark.parametrize(
    ("doc", "msg"),
    [
        ({"protocol": {"security_bound": "asymptotic"}}, r"protocol\.security_bound must be one"),
        ({"protocol": {"code_n": 10}}, r"protocol\.code_n = 10 is out of range"),
        ({"protocol": {"decoder_iterations": 0}}, r"protocol\.decoder_iterations = 0 is out"),
        ({"protocol": {"key_bytes": 0}}, r"protocol\.key_bytes = 0 is out of range"),
        ({"protocol": {"clip_fraction_abort": 2.0}}, r"protocol\.clip_fraction_abort = 2\.0"),
        ({"protocol": {"frame_symbols": 4096, "block_symbols": 2048}},
         r"block_symbols must be >= protocol\.frame_symbols"),
    ],
)
def test_link_protocol_settings(doc: dict, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        config_from_dict(doc)


def test_link_protocol_defaults() -> None:
    p = LinkConfig().protocol
    assert p.security_bound == "lgg" and p.key_bytes == 32 and p.code_n == 64_000
    assert p.beta_target == 0.88  # what the MET family decodes at 25 km (docs/protocol.md)


def test_converter_settings_default_to_the_500_msps_centre_layout() -> None:
    m = LinkConfig().modulation
    assert (m.converter_factor, m.layout, m.planned_linewidth_hz) == (8, "centre", 10e3)
    assert m.player_sps == 500e6
    wide = config_from_dict({"modulation": {"converter_factor": 4, "layout": "edge",
                                            "planned_linewidth_hz": 1e5}}).modulation
    assert wide.player_sps == 1e9 and wide.layout == "edge"
    # the ZCU111 (Gen1) has factors 1, 2, 4, 8: 4 is allowed there too
    assert config_from_dict({"modulation": {"board": "zcu111", "converter_factor": 4}})


@pytest.mark.parametrize(
    ("modulation", "msg"),
    [
        ({"converter_factor": 7}, r"converter_factor = 7 is not a decimation and interpolation "
                                  r"factor of the rfsoc4x2"),
        ({"board": "zcu111", "converter_factor": 5}, r"factor of the zcu111: \[1, 2, 4, 8\]"),
        ({"converter_factor": 2}, r"converter_factor = 2: 2e\+09 S/s exceeds the overlay "
                                  r"streams' 1e\+09 S/s"),
        ({"converter_factor": 6}, r"converter_factor = 6: the player rate 6\.66667e\+08 S/s is "
                                  r"not an integer multiple"),
        ({"converter_factor": 40}, r"not an integer multiple \(>= 2\) of "
                                   r"modulation\.symbol_rate_hz"),
        ({"converter_factor": 20, "symbol_rate_hz": 50e6, "layout": "edge"},
         r"modulation\.layout = 'edge' at converter_factor 20: .* too narrow"),
        ({"converter_factor": 4.0}, r"converter_factor must be of type int"),
        ({"layout": "center"}, r"modulation\.layout must be one of centre, edge"),
        ({"planned_linewidth_hz": 0}, r"planned_linewidth_hz = 0\.0 is out of range: it must "
                                      r"be > 0"),
    ],
)
def test_bad_converter_settings(modulation: dict, msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        config_from_dict({"modulation": modulation})
