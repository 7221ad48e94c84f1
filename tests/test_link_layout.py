"""The link at 1 GS/s with the edge layout (modulation.converter_factor 4, layout "edge"): the
player and capture rates follow the converter factor, Alice's frames carry the edge layout, and
a short block fills both stores with identical keys and an excess-noise estimate that brackets
the configured one."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

import numpy as np
import pytest
from test_link import store_keys
from test_link_drivers_board import bench, bench_session
from test_link_two_process import (
    TINY,
    finish,
    setup_ends,
    start_pair,
    stores,
)

from controller.cli import main
from controller.commands import link_ends
from controller.commands.link import build_config
from controller.config import LinkConfig, config_from_dict
from controller.link import prepare_workdir, run_link
from controller.link_alice import tx_config
from controller.link_quantum import (
    Emission,
    SimQuantumChannel,
    capture_samples,
    model_config,
    model_overlay,
)
from controller.link_report import LinkReport
from dsp.layout import PASS_BAND, added_noise_model
from dsp.transmitter import build_frame
from fpga_bindings.overlay import open_model


def wide_config(**modulation) -> LinkConfig:
    """test_link's small block (5 km, V_A 1.5, 2^18-symbol frames, 2^21-symbol block) at
    1 GS/s with the edge layout."""
    doc = {"physics": {"distance_km": 5.0, "seed": 7},
           "modulation": {"v_a": 1.5, "converter_factor": 4, "layout": "edge", **modulation},
           "protocol": {"frame_symbols": 1 << 18, "block_symbols": 1 << 21, "code_n": 16000}}
    return config_from_dict(doc)


class _Ctx:
    def __init__(self, cfg: LinkConfig) -> None:
        self.cfg = cfg


def test_converter_factor_sets_player_and_capture_rates() -> None:
    cfg = wide_config()
    qc = SimQuantumChannel(cfg)
    assert qc.overlay.rfdc.dac_interpolation() == 4 and qc.decimation == 4
    assert qc.player_sps == qc.capture_rate_hz == 1e9 == model_config(cfg).player_sps
    default = SimQuantumChannel(config_from_dict({}))
    assert default.overlay.rfdc.dac_interpolation() == 8 == default.decimation
    assert default.player_sps == default.capture_rate_hz == 500e6


def test_model_player_rate_must_match_the_converter() -> None:
    """An overlay whose model plays at another rate than the configured factor is refused."""
    other = model_overlay(model_config(config_from_dict({})))  # the model plays at 500 MS/s
    with pytest.raises(ValueError, match="player rate"):
        SimQuantumChannel(wide_config(), overlay=other)


def test_edge_layout_frame_from_the_configuration() -> None:
    """tx_config: the data band at the bottom edge of the 1 GS/s pass band, the strong pilot at
    the top, its power the two-term minimum for the planned linewidth and channel."""
    cfg = wide_config(planned_linewidth_hz=1e4)
    qc = SimQuantumChannel(cfg)
    tx = tx_config(_Ctx(cfg), qc)  # type: ignore[arg-type]
    fs, half = 1e9, 0.5 * 1.2 * 100e6
    strong = tx.pilots[0]
    assert tx.sample_rate_hz == fs and tx.dac_bits == qc.dac_bits
    assert strong.freq_hz == pytest.approx(PASS_BAND * fs - 50e6)
    assert tx.signal_offset_hz - half == pytest.approx(-(PASS_BAND * fs - 50e6))
    # the pilot power is where tracking + skirt is smallest (independent numeric minimum)
    p = cfg.physics
    g2, q = p.transmittance * p.eta / 2, 2 * np.pi * 1e4 / fs
    dist = (strong.freq_hz - tx.signal_offset_hz) / fs
    p_a = 2 * 1.5 / (fs / 100e6) * 10 ** (strong.power_db / 10)
    grid = p_a * np.logspace(-0.5, 0.5, 201)
    total = [sum(added_noise_model(x, 1.5, dist, q, g2, p.v_el)) for x in grid]
    assert abs(np.log10(grid[int(np.argmin(total))] / p_a)) < 0.01
    # a centre-layout config gives today's TxConfig
    centre = tx_config(_Ctx(config_from_dict({})), SimQuantumChannel(config_from_dict({})))
    assert centre.signal_offset_hz != tx.signal_offset_hz and centre.sample_rate_hz == 500e6


def test_capture_lengths_fill_whole_beats() -> None:
    cfg = wide_config()
    mcfg = model_config(cfg)
    for n_player in (1001, 1002, 1003, 5 * (1 << 18) + 7):
        n = capture_samples(mcfg, n_player, 1e9)
        assert n % 2 == 0 and n * 1e-9 >= n_player / mcfg.player_sps + 4e-6


def test_wide_frame_captured_through_the_drivers() -> None:
    """A 1 GS/s edge-layout frame goes through the player and the capture: the capture holds
    the frame (its pilot tones at the layout's frequencies, shifted by the LO offset)."""
    cfg = wide_config()
    qc = SimQuantumChannel(cfg)
    tx = tx_config(_Ctx(cfg), qc)  # type: ignore[arg-type]
    fr = build_frame(tx, 1 << 14, os.urandom(32), 0)
    em = Emission(0, fr.iq_int16, fr.meta["quad_per_lsb"], fr.meta)
    cap = qc.capture(em)
    assert cap.capture_rate_hz == 1e9 and len(cap.iq) == qc.capture_samples(em)
    x = cap.iq[:, 0] + 1j * cap.iq[:, 1].astype(float)
    spec = np.abs(np.fft.fft(x[: 1 << 16] * np.hanning(1 << 16))) ** 2
    f = np.fft.fftfreq(1 << 16, 1e-9)
    peak = f[np.argmax(spec)]  # the strong pilot, moved by the IF error (LO offset)
    offset = cfg.physics.lo_offset_hz
    assert min(abs(peak - (tx.pilots[0].freq_hz + s * offset)) for s in (1, -1)) < 2e6


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LinkConfig, LinkReport]:
    cfg = wide_config()
    root = tmp_path_factory.mktemp("link_wide")
    wd = prepare_workdir(cfg, root)
    return root, cfg, asyncio.run(run_link(cfg, wd, 8))


def test_wide_link_keys_identical_at_both_ends(wide_run) -> None:
    root, cfg, report = wide_run
    assert report.session_abort is None and all(f.ok for f in report.frames)
    e = cfg.endpoints
    alice, bob = store_keys(root / e.store_alice), store_keys(root / e.store_bob)
    assert len(alice) > 0 and alice == bob
    assert report.blocks[0].ok
    assert report.blocks[0].secret_bits == 8 * cfg.protocol.key_bytes * len(alice)


def test_wide_link_estimates_the_configured_channel(wide_run) -> None:
    _, cfg, report = wide_run
    b = report.blocks[0]
    p = cfg.physics
    assert b.xi_low <= p.xi <= b.xi_max
    assert abs(b.transmittance / p.transmittance - 1) < 0.03
    assert abs(b.v_el - p.v_el) < 0.01


def test_cli_converter_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--converter-factor/--layout/--planned-linewidth-hz` (link, tx, rx) override the
    configuration's modulation section; bad values are one-line usage errors."""
    args = argparse.Namespace(config=None, **dict.fromkeys(
        ("distance_km", "xi", "eta", "vel", "va", "linewidth_hz", "seed", "frame_symbols",
         "block_symbols", "xi_abort", "beta", "code_n", "bound", "reconciliation")),
        converter_factor=4, layout="edge", planned_linewidth_hz=1e5)
    m = build_config(args).modulation
    assert (m.converter_factor, m.layout, m.planned_linewidth_hz) == (4, "edge", 1e5)
    rc = main(["link", "--sim", "--workdir", str(tmp_path / "w"), "--converter-factor", "7"])
    err = capsys.readouterr().err
    assert rc == 2 and "modulation.converter_factor = 7" in err and len(err.splitlines()) == 1


def test_board_overlay_of_contract_1_1_refuses_1_gsps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1.1 overlay streams one sample per beat: `--board` with converter_factor 4 stops."""
    ol = open_model()
    assert link_ends.check_overlay(ol, wide_config()) is ol
    monkeypatch.setattr(type(ol.board_info), "version", property(lambda self: (1, 1, 0)))
    with pytest.raises(ValueError, match=r"needs contract 1\.2"):
        link_ends.check_overlay(ol, wide_config())
    assert link_ends.check_overlay(ol, config_from_dict({})) is ol  # 500 MS/s is fine on 1.1


def test_two_processes_at_1_gsps(tmp_path: Path) -> None:
    """`cvqkd tx`/`rx` (the simulated fibre between two overlays, controller.link_fibre) at
    converter factor 4 with the edge layout: Bob's DSP recovers every symbol of both frames
    from 1 GS/s captures, the ends agree. (Frames of 2^16 symbols: a frame may still fail on
    its statistics, e.g. the point estimate's excess-noise alarm.)"""
    a, b = setup_ends(tmp_path)
    tx, rx = start_pair(a, b, [*TINY, "--converter-factor", "4", "--layout", "edge"], frames=2)
    rc_rx, rep_rx, err_rx = finish(rx)
    rc_tx, rep_tx, err_tx = finish(tx)
    assert rc_rx == 0 and rc_tx == 0, (err_rx + err_tx)[-2000:]
    assert rep_tx["session_abort"] is None and rep_rx["session_abort"] is None
    assert err_rx.count("DSP recovered 65536/65536 symbols") == 2, err_rx[-2000:]
    assert err_rx.count("captured 680424 samples") == 2  # 1 GS/s: 10 samples per symbol + guards
    assert rep_rx["frames_ok"] >= 1
    assert all(f["ok"] or f["reason"] in ("excess_noise", "snr_out_of_range")
               for f in rep_rx["frame_records"])
    lo, hi = rep_rx["excess_noise_interval_snu"]
    assert lo <= 0.02 <= hi
    alice, bob = stores(a, b)
    assert alice == bob


def test_board_path_at_1_gsps(tmp_path: Path) -> None:
    """The two-board code path (test_link_drivers_board's bench of two model devices: player
    armed for the external trigger, capture with trigger output and TRIG_DELAY) at converter
    factor 4 with the edge layout: both overlays run their converters at 1 GS/s and both
    frames synchronise; the stores agree."""
    cfg = config_from_dict({"physics": {"distance_km": 5.0, "seed": 7},
                            "modulation": {"v_a": 1.5, "converter_factor": 4, "layout": "edge"},
                            "protocol": {"frame_symbols": 1 << 16, "block_symbols": 1 << 17,
                                         "code_n": 16000, "xi_abort": 1.0}})
    a, b = setup_ends(tmp_path)
    alice, bob = bench(cfg)
    rep_tx, rep_rx = bench_session(cfg, a, b, alice, bob, frames=2)
    assert rep_tx.session_abort is None and rep_rx.session_abort is None
    assert alice.rfdc.dac_interpolation() == bob.rfdc.dac_interpolation() == 4
    assert [f.ok for f in rep_rx.frames] == [True, True]
    for f in rep_rx.frames:  # xi 0.02 SNU; one 2^16-symbol frame estimates it to ~0.06
        assert abs(f.xi - cfg.physics.xi) < 0.25
    alice_keys, bob_keys = stores(a, b)
    assert alice_keys == bob_keys
