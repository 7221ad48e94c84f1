"""Integration: captures from the link model (`cvqkd sim capture`) through `cvqkd dsp`."""

import argparse
import json
import shutil

import numpy as np
import pytest
from dsp_channel import chain_noise_gain, pilot_to_data

from controller.cli import UsageError
from controller.commands import dsp as dsp_cmd
from controller.commands import sim as sim_cmd


def _cli(module, argv):
    p = argparse.ArgumentParser()
    module.register(p.add_subparsers())
    args = p.parse_args(argv)
    return args.func(args)


# the wide capture: 1 GS/s (ADC 4 GS/s, DDC x4; DAC 4 GS/s, x4), edge layout, the model
# rendering at 4 GS/s and the x4 decimation in software (skirts filtered, not aliased)
WIDE = ["--decimation", "4", "--interpolation", "4", "--layout", "edge",
        "--model-oversample", "4"]


def _capture(path, seed, combined_linewidth_hz, symbols=100_000, extra=(), **kw):
    argv = ["sim", "capture", "--out", str(path), "--seed", str(seed), "--symbols", str(symbols),
            "--distance-km", "25", "--va", "4", "--eta", "0.7", "--vel", "0.1", "--xi", "0.02",
            "--linewidth-hz", str(combined_linewidth_hz / 2), "--lo-offset-hz", "50e6",
            "--lo-drift-hz-per-s", "1e6", "--clock-ppm", str(kw.get("ppm", 20.0)), *extra]
    assert _cli(sim_cmd, argv) == 0


def _xi_added(d, summary):
    """xi_hat(Bob) - xi_hat(genie) on the same noise, Bob in the model's exact SNU."""
    meta = json.loads((d / "meta.json").read_text())
    x = np.load(d / "alice_symbols.npy")
    g = np.load(d / "genie_symbols.npy")
    b = np.load(d / "bob_symbols.npy")
    cfg = meta["waveform"]["config"]
    sps = round(cfg["sample_rate_hz"] / cfg["symbol_rate_hz"])
    n0_true = meta["adc"]["shot_noise_rms_lsb_nominal"] ** 2 * chain_noise_gain(
        summary["smoother_a"], pilot_to_data(meta["waveform"]), sps, cfg["rolloff"])
    b = b * np.sqrt(summary["shot_noise_adc2"] / n0_true)
    ok = np.isfinite(g)

    def xi(y):
        t = np.vdot(x[ok], y[ok]) / np.vdot(x[ok], x[ok]).real
        var = np.mean(np.abs(y[ok] - t * x[ok]) ** 2) / 2
        return (var - 1 - 0.1) / abs(t) ** 2
    return xi(b) - xi(g)


@pytest.mark.parametrize("lw, bound", [(1e3, 0.008), (10e3, 0.02)])
def test_model_capture_reference_scenario(tmp_path, capsys, lw, bound):
    d = tmp_path / "cap"
    _capture(d, 11, lw)
    assert _cli(dsp_cmd, ["dsp", "--in", str(d), "--json", "--disclose-fraction", "0.5"]) == 0
    summary = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert summary["ok"] and summary["n_recovered"] == summary["n_symbols"] == 100000
    assert np.load(d / "bob_mask.npy").all()
    assert summary["clock_offset_ppm"] == pytest.approx(20.0, abs=0.1)
    assert summary["lo_offset_hz"] == pytest.approx(50e6, abs=5e3)
    assert summary["electronic_noise_snu"] == pytest.approx(0.1, abs=0.01)
    assert summary["transmittance"] == pytest.approx(0.316, rel=0.05)
    xi_add = _xi_added(d, summary)
    assert -0.005 < xi_add < bound, xi_add


def test_model_capture_without_signal_fails_cleanly(tmp_path, capsys):
    d = tmp_path / "cap"
    _capture(d, 12, 1e3, ppm=-5.0)
    shutil.copy(d / "shot_noise.npy", d / "adc.npy")  # the switch left on BLOCKED
    assert _cli(dsp_cmd, ["dsp", "--in", str(d), "--json"]) == 1
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["ok"] is False and out["reason"]
    assert not (d / "bob_symbols.npy").exists()


def test_bad_input_directory(tmp_path):
    with pytest.raises(UsageError):
        _cli(dsp_cmd, ["dsp", "--in", str(tmp_path)])
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(UsageError):
        _cli(dsp_cmd, ["dsp", "--in", str(tmp_path)])


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(50))
def test_model_sync_many_seeds(tmp_path, capsys, seed):
    d = tmp_path / "cap"
    _capture(d, 1000 + seed, 10e3, ppm=float(np.linspace(-20, 20, 50)[seed]))
    assert _cli(dsp_cmd, ["dsp", "--in", str(d), "--json"]) == 0
    summary = json.loads((d / "dsp_summary.json").read_text())
    assert summary["ok"] and np.load(d / "bob_mask.npy").all()
    assert _xi_added(d, summary) < 0.03


def test_model_wide_capture_10khz(tmp_path, capsys):
    d = tmp_path / "wide"
    _capture(d, 11, 10e3, extra=WIDE)
    meta = json.loads((d / "meta.json").read_text())
    assert meta["rates"]["capture_sps"] == 1e9 and meta["ddc"]["decimation"] == 4
    assert _cli(dsp_cmd, ["dsp", "--in", str(d), "--json", "--disclose-fraction", "0.5"]) == 0
    summary = json.loads((d / "dsp_summary.json").read_text())
    assert summary["ok"] and np.load(d / "bob_mask.npy").all()
    assert summary["clock_offset_ppm"] == pytest.approx(20.0, abs=0.1)
    # the coarse estimate: mean frequency over 0.26 ms, ~3 ms after the model's t = 0 (1 MHz/s
    # drift: +3 kHz), moved by the laser phase's random walk (~2.5 kHz rms at 10 kHz)
    assert summary["lo_offset_hz"] == pytest.approx(50e6, abs=1e4)
    assert summary["transmittance"] == pytest.approx(0.316, rel=0.05)
    # target 0.005; one capture of 1e5 symbols has a statistical sd of about 0.002
    assert -0.005 < _xi_added(d, summary) < 0.009


@pytest.mark.slow
@pytest.mark.parametrize("lw, target", [(10e3, 0.005), (100e3, 0.02)])
def test_model_wide_capture_targets(tmp_path, capsys, lw, target):
    """Mean over 4 captures of 2.5e5 symbols (sd of the mean about 0.0007)."""
    vals = []
    for seed in range(4):
        d = tmp_path / f"w{seed}"
        _capture(d, 600 + seed, lw, symbols=250_000, extra=WIDE)
        assert _cli(dsp_cmd, ["dsp", "--in", str(d), "--json"]) == 0
        vals.append(_xi_added(d, json.loads((d / "dsp_summary.json").read_text())))
        shutil.rmtree(d)
    assert np.mean(vals) < target, vals


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(50))
def test_model_wide_sync_many_seeds(tmp_path, capsys, seed):
    d = tmp_path / "cap"
    ppm = float(np.linspace(-20, 20, 50)[seed])
    _capture(d, 2000 + seed, 10e3, symbols=50_000, extra=WIDE, ppm=ppm)
    assert _cli(dsp_cmd, ["dsp", "--in", str(d), "--json"]) == 0
    summary = json.loads((d / "dsp_summary.json").read_text())
    assert summary["ok"] and np.load(d / "bob_mask.npy").all()
    assert summary["clock_offset_ppm"] == pytest.approx(ppm, abs=0.15)


def _capture_real_if(path, seed, combined_linewidth_hz, n_symbols=40000):
    """A real-IF capture (ADC in REAL_IF mode at 4 GS/s, no hardware down-converter) from the
    link model, following `cvqkd sim capture`'s sequence (calibrations, play, trigger)."""
    from fpga_bindings.model.link import LinkModel
    from fpga_bindings.model.link_api import AdcMode, AdcSettings, FrontEnd, OpticalSwitch
    from fpga_bindings.model.simple_tx import required_voa_db

    p = argparse.ArgumentParser()
    sim_cmd.register(p.add_subparsers())
    args = p.parse_args(["sim", "capture", "--out", str(path), "--symbols", str(n_symbols),
                         "--linewidth-hz", str(combined_linewidth_hz / 2), "--eta", "0.7",
                         "--vel", "0.1", "--xi", "0.02", "--lo-offset-hz", "20e6",
                         "--clock-ppm", "10"])
    cfg = sim_cmd._config(args, seed)
    wf = sim_cmd.build_waveform(args, cfg, seed)
    voa = required_voa_db(wf.quad_per_lsb, cfg.dac_fs_snu)
    fs_adc = cfg.adc_rate_nominal
    n_sig = int((len(wf.iq) / cfg.player_sps + 2 * sim_cmd.GUARD_S) * fs_adc * 1.0001)
    model = LinkModel(cfg)
    path.mkdir()

    def record(name, n):
        chunks = list(model.capture(AdcSettings(n_samples=n, mode=AdcMode.REAL_IF)))
        np.save(path / name, np.concatenate(chunks), allow_pickle=False)

    for name, sw in (("shot_noise.npy", OpticalSwitch.BLOCKED),
                     ("electronic_noise.npy", OpticalSwitch.LO_OFF)):
        model.set_frontend(FrontEnd(switch=sw, voa_db=voa))
        record(name, 1 << 22)
    model.set_frontend(FrontEnd(voa_db=voa))
    model.load_dac(wf.iq, cyclic=False)
    model.request_ground_truth(wf.grid)
    model.advance(max(0.0, cfg.delay_s - sim_cmd.GUARD_S))
    record("adc.npy", n_sig)
    np.save(path / "alice_symbols.npy", wf.symbols.astype(np.complex128), allow_pickle=False)
    meta = {"waveform": wf.params, "link": cfg.as_dict(),
            "board": {"default_decimation": cfg.profile.default_decimation},
            "rates": {"adc_sps": fs_adc, "capture_sps": fs_adc},
            "ddc": {"mode": "REAL_IF", "nco_hz": 0.0, "decimation": 1}}
    (path / "meta.json").write_text(json.dumps(meta, default=float))


def test_real_if_capture_through_software_ddc(tmp_path, capsys):
    d = tmp_path / "rif"
    _capture_real_if(d, 21, 1e3)
    assert _cli(dsp_cmd, ["dsp", "--in", str(d), "--json", "--disclose-fraction", "0.5"]) == 0
    s = json.loads((d / "dsp_summary.json").read_text())
    assert s["ok"] and np.load(d / "bob_mask.npy").all()
    assert s["clock_offset_ppm"] == pytest.approx(10.0, abs=0.2)
    assert s["lo_offset_hz"] == pytest.approx(20e6, abs=5e3)
    assert s["electronic_noise_snu"] == pytest.approx(0.1, abs=0.01)
    assert s["transmittance"] == pytest.approx(0.316, rel=0.06)
    # the model gives no ideal receiver in REAL_IF mode: check the residual noise of the fit
    # over all symbols against 1 + v_el + eta T xi / 2 = 1.1022 SNU (statistical sd 0.008)
    x, b = np.load(d / "alice_symbols.npy"), np.load(d / "bob_symbols.npy")
    t = np.vdot(x, b) / np.vdot(x, x)
    var = np.mean(np.abs(b - t * x) ** 2) / 2
    assert var == pytest.approx(1.1022, abs=0.03)


def _capture_with_fault(path, seed, kind, n_symbols=60000, **params):
    """A DDC capture from the link model with a run-time fault injected during the frame."""
    from fpga_bindings.model.link import LinkModel
    from fpga_bindings.model.link_api import AdcSettings, FrontEnd, OpticalSwitch
    from fpga_bindings.model.simple_tx import required_voa_db

    p = argparse.ArgumentParser()
    sim_cmd.register(p.add_subparsers())
    args = p.parse_args(["sim", "capture", "--out", str(path), "--symbols", str(n_symbols),
                         "--linewidth-hz", "500", "--eta", "0.7", "--vel", "0.1",
                         "--xi", "0.02", "--lo-offset-hz", "20e6", "--clock-ppm", "5"])
    cfg = sim_cmd._config(args, seed)
    wf = sim_cmd.build_waveform(args, cfg, seed)
    voa = required_voa_db(wf.quad_per_lsb, cfg.dac_fs_snu)
    decim = cfg.profile.default_decimation
    fs_cap = cfg.adc_rate_nominal / decim
    n_sig = int((len(wf.iq) / cfg.player_sps + 2 * sim_cmd.GUARD_S) * fs_cap * 1.0001)
    model = LinkModel(cfg)
    path.mkdir()

    def record(name, n):
        st = AdcSettings(n_samples=n, nco_hz=cfg.if_hz, decimation=decim)
        np.save(path / name, np.concatenate(list(model.capture(st))), allow_pickle=False)

    for name, sw in (("shot_noise.npy", OpticalSwitch.BLOCKED),
                     ("electronic_noise.npy", OpticalSwitch.LO_OFF)):
        model.set_frontend(FrontEnd(switch=sw, voa_db=voa))
        record(name, 1 << 20)
    model.set_frontend(FrontEnd(voa_db=voa))
    model.load_dac(wf.iq, cyclic=False)
    model.request_ground_truth(wf.grid)
    model.advance(max(0.0, cfg.delay_s - sim_cmd.GUARD_S))
    model.inject(kind, **params)
    record("adc.npy", n_sig)
    np.save(path / "alice_symbols.npy", wf.symbols.astype(np.complex128), allow_pickle=False)
    np.save(path / "genie_symbols.npy", model.ground_truth().genie.symbols.astype(np.complex128),
            allow_pickle=False)
    meta = {"waveform": wf.params, "link": cfg.as_dict(),
            "rates": {"capture_sps": fs_cap},
            "ddc": {"mode": "DDC", "nco_hz": cfg.if_hz, "decimation": decim},
            "adc": {"shot_noise_rms_lsb_nominal": cfg.rx_gain_lsb}}
    (path / "meta.json").write_text(json.dumps(meta, default=float))


@pytest.mark.parametrize("kind, params", [
    ("fibre_cut", {}),
    ("saturation", {"gain": 30.0}),
    ("lo_unlock", {"phase_rad": 1.0, "freq_hz": 5e6}),
])
def test_fault_during_frame_is_masked_not_wrong(tmp_path, kind, params):
    d = tmp_path / "fault"
    # the frame (0.6 ms) starts ~2 us into the capture; fault from 0.25 to 0.35 ms
    _capture_with_fault(d, 31, kind, at_s=0.25e-3, duration_s=0.1e-3, **params)
    assert _cli(dsp_cmd, ["dsp", "--in", str(d), "--json", "--disclose-fraction", "0.5"]) == 0
    s = json.loads((d / "dsp_summary.json").read_text())
    mask = np.load(d / "bob_mask.npy")
    assert s["lost_ranges"], s
    lost = np.zeros(mask.size, dtype=bool)
    for a, b in s["lost_ranges"]:
        lost[a:b] = True
    assert not mask[lost].any() and mask[~lost].all()
    assert lost[27000:33000].all()  # the symbols during the fault (0.27-0.33 ms)
    # what is kept is right: close to the ideal receiver on the same noise
    x, g, b = (np.load(d / f) for f in ("alice_symbols.npy", "genie_symbols.npy",
                                         "bob_symbols.npy"))
    ok = mask & np.isfinite(g)
    tb = np.vdot(x[ok], b[ok]) / np.vdot(x[ok], x[ok])
    tg = np.vdot(x[ok], g[ok]) / np.vdot(x[ok], x[ok])
    rb = np.mean(np.abs(b[ok] - tb * x[ok]) ** 2) / np.abs(tb) ** 2
    rg = np.mean(np.abs(g[ok] - tg * x[ok]) ** 2) / np.abs(tg) ** 2
    assert abs(tb) / abs(tg) == pytest.approx(1.0, abs=0.03)
    assert rb / rg == pytest.approx(1.0, abs=0.03)
