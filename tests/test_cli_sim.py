"""`cvqkd sim capture`: the capture directory contract (docs/model.md)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from model_support import estimate_t_xi

from controller.cli import main

FILES = ("adc.npy", "dac.npy", "shot_noise.npy", "electronic_noise.npy", "alice_symbols.npy",
         "genie_symbols.npy", "truth.npz", "meta.json")


def _load(d, name):
    return np.load(d / name, allow_pickle=False)


@pytest.mark.parametrize("detection", ["heterodyne", "homodyne"])
def test_capture_directory_is_complete_and_physical(tmp_path, detection, capsys):
    out = tmp_path / "cap"
    rc = main(["sim", "capture", "--out", str(out), "--symbols", "30000", "--seed", "7",
               "--distance-km", "20", "--xi", "0.05", "--eta", "0.7", "--vel", "0.03",
               "--clock-ppm", "2.5", "--lo-offset-hz", "3e6" if detection == "heterodyne"
               else "0", "--linewidth-hz", "20e3" if detection == "heterodyne" else "1e3",
               "--detection", detection])
    assert rc == 0
    assert "wrote" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["format_version"] == 1
    for key in ("board", "link", "rates", "ddc", "adc", "symbol_rate", "samples_per_symbol",
                "pilots", "waveform", "frontend", "seed", "status", "truth"):
        assert key in meta, key
    adc = _load(out, "adc.npy")
    assert adc.dtype == np.int16 and adc.ndim == 2 and adc.shape[1] == 2
    assert adc.shape[0] == meta["adc"]["n_samples"]
    assert meta["rates"]["capture_sps"] == 500e6 and meta["ddc"]["decimation"] == 8
    alice, genie = _load(out, "alice_symbols.npy"), _load(out, "genie_symbols.npy")
    assert alice.dtype == genie.dtype == np.complex128 and alice.shape == genie.shape == (30000,)
    assert not np.isnan(genie).any()
    link = meta["link"]
    g = meta["adc"]["shot_noise_rms_lsb_nominal"]
    quads = [0, 1] if detection == "heterodyne" else [0]
    for name, want in (("shot_noise.npy", 1 + link["v_el"]), ("electronic_noise.npy",
                                                               link["v_el"])):
        rec = _load(out, name).astype(float) / g
        for q in quads:
            assert abs(rec[:, q].var() / want - 1) < 5 * math.sqrt(2 / len(rec)) + 1e-4
    if detection == "heterodyne":
        x = np.concatenate([alice.real, alice.imag])
        y = np.concatenate([genie.real, genie.imag])
        k = 0.5
    else:
        ang = _load(out, "truth.npz")["symbol_angle_rad"]
        x, y, k = np.real(alice * np.exp(1j * ang)), genie.real, 1.0
    big_t, xi, sd_t, sd_xi = estimate_t_xi(x, y, link["eta"], link["v_el"], k)
    assert abs(big_t - link["fibre_transmittance"]) < 5 * sd_t
    assert abs(xi - link["xi"]) < 5 * sd_xi
    truth = _load(out, "truth.npz")
    assert set(truth.files) >= {"sample_index", "phase_rad", "tx_position", "symbol_position"}
    assert meta["truth"]["du_player_per_capture_sample"] == pytest.approx(1 / (1 + 2.5e-6))


def test_refuses_a_non_empty_directory_and_bad_rates(tmp_path, capsys):
    (tmp_path / "x").write_text("keep me")
    assert main(["sim", "capture", "--out", str(tmp_path), "--symbols", "10"]) == 2
    assert "not an empty directory" in capsys.readouterr().err
    assert main(["sim", "capture", "--out", str(tmp_path / "n"), "--symbol-rate", "3e8"]) == 2
    assert "integer multiple" in capsys.readouterr().err
    assert main(["sim", "capture", "--out", str(tmp_path / "m"), "--eta", "2"]) == 2
    assert "eta" in capsys.readouterr().err
    assert (tmp_path / "x").read_text() == "keep me"


def test_same_seed_gives_the_same_capture(tmp_path):
    for name in ("a", "b"):
        assert main(["sim", "capture", "--out", str(tmp_path / name), "--symbols", "2000",
                     "--seed", "3", "--waveform", "simple"]) == 0
    for f in ("adc.npy", "genie_symbols.npy", "alice_symbols.npy", "shot_noise.npy"):
        assert np.array_equal(_load(tmp_path / "a", f), _load(tmp_path / "b", f)), f


@pytest.mark.slow
def test_large_capture_with_the_dsp_frame_measures_t_and_xi(tmp_path):
    """10^6 symbols of dsp.transmitter's frame: T to ~0.2 %, xi to ~0.01 SNU (5 sigma)."""
    out = tmp_path / "big"
    assert main(["sim", "capture", "--out", str(out), "--symbols", "1000000", "--seed", "11",
                 "--distance-km", "5", "--xi", "0.03", "--clock-ppm", "-1.5",
                 "--calibration-samples", "1000000"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    link = meta["link"]
    alice, genie = _load(out, "alice_symbols.npy"), _load(out, "genie_symbols.npy")
    x = np.concatenate([alice.real, alice.imag])
    y = np.concatenate([genie.real, genie.imag])
    big_t, xi, sd_t, sd_xi = estimate_t_xi(x, y, link["eta"], link["v_el"], 0.5)
    assert abs(big_t - link["fibre_transmittance"]) < 5 * sd_t
    assert abs(xi - link["xi"]) < 5 * sd_xi
    assert sd_xi < 0.01


def test_wide_capture_flags(tmp_path):
    """--decimation/--interpolation/--layout edge/--model-oversample: a 1 GS/s capture whose
    shot-noise records are at the nominal level for that decimation (rms x sqrt(8/4))."""
    out = tmp_path / "wide"
    assert main(["sim", "capture", "--out", str(out), "--symbols", "20000", "--seed", "3",
                 "--linewidth-hz", "5e3", "--eta", "0.7", "--vel", "0.1",
                 "--decimation", "4", "--interpolation", "4", "--layout", "edge",
                 "--model-oversample", "4"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["rates"]["capture_sps"] == 1e9 and meta["rates"]["player_sps"] == 1e9
    assert meta["ddc"] == {"mode": "DDC", "nco_hz": 1e9, "decimation": 4,
                           "model_oversample": 4}
    g = meta["adc"]["shot_noise_rms_lsb_nominal"]
    assert g == pytest.approx(1024 * math.sqrt(2))
    shot = _load(out, "shot_noise.npy").astype(float) / g
    assert shot.shape[0] == meta["adc"]["calibration_samples"]
    # in the pass band the decimated record keeps the model's level: 1 + v_el per quadrature
    # at the symbol spacing (white within +-0.4 of the rate, the filter's roll-off beyond)
    spec = np.abs(np.fft.fft(shot[:, 0] + 1j * shot[:, 1])) ** 2 / shot.shape[0]
    f = np.fft.fftfreq(shot.shape[0])
    assert np.mean(spec[np.abs(f) < 0.35]) / 2 == pytest.approx(1.1, rel=0.02)
    wf = meta["waveform"]
    assert wf["signal_offset_hz"] < -200e6 and wf["pilots"][0]["freq_hz"] > 300e6


@pytest.mark.parametrize("argv, msg", [
    (["--decimation", "7"], "--decimation"),
    (["--model-oversample", "3"], "--model-oversample"),
    (["--interpolation", "20", "--decimation", "20", "--symbol-rate", "50e6", "--layout",
      "edge"], "--layout edge"),
])
def test_wide_capture_bad_flags(tmp_path, capsys, argv, msg):
    rc = main(["sim", "capture", "--out", str(tmp_path / "x"), "--symbols", "1000", *argv])
    assert rc == 2
    assert msg in capsys.readouterr().err
