"""`cvqkd keyrate` and `cvqkd plan`: output, JSON schema, plot, error handling."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from controller.cli import main
from reconcile import finite_size, keyrate


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> dict:
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one JSON object on one line
    return json.loads(out)


def test_keyrate_json_matches_library(capsys: pytest.CaptureFixture[str]) -> None:
    obj = _json(capsys, ["keyrate", "--detection", "homodyne", "--detector", "trusted",
                         "--va", "5", "--distance-km", "30", "--xi", "0.01", "--eta", "0.6",
                         "--vel", "0.05", "--beta", "0.96", "--json"])
    t = 10 ** (-0.6)
    r = keyrate.asymptotic_rate(5, t, 0.01, 0.96, eta=0.6, v_el=0.05, detection="homodyne")
    assert obj["transmittance"] == pytest.approx(t)
    assert obj["I_AB"] == pytest.approx(float(r.i_ab))
    assert obj["chi_BE"] == pytest.approx(float(r.chi_be))
    assert obj["K"] == pytest.approx(float(r.k)) and obj["K"] > 0
    assert obj["plob"] == pytest.approx(-np.log2(1 - t))
    assert "K_finite" not in obj


def test_keyrate_json_finite_size(capsys: pytest.CaptureFixture[str]) -> None:
    obj = _json(capsys, ["keyrate", "--transmittance", "0.3", "--va", "4", "--xi", "0.02",
                         "--beta", "0.95", "--n-total", "1e10", "--pe-fraction", "0.2",
                         "--epsilon", "1e-9", "--fer", "0.1", "--json"])
    r = finite_size.finite_size_rate(4, 0.3, 0.02, 0.95, n_total=1e10, pe_fraction=0.2,
                                     epsilon=1e-9, fer=0.1, eta=0.7, v_el=0.1)
    for key, val in (("K_finite", r.k_finite), ("K_composable", r.k_composable),
                     ("T_min", r.t_min), ("xi_max", r.xi_max)):
        assert obj[key] == pytest.approx(float(val))
    assert 0 < obj["K_composable"] < obj["K"] and 0 < obj["K_finite"] < obj["K"]


def test_keyrate_at_full_transmission_reports_null_plob(
    capsys: pytest.CaptureFixture[str],
) -> None:
    obj = _json(capsys, ["keyrate", "--transmittance", "1", "--json"])
    assert obj["plob"] is None and obj["K"] > 0


def test_keyrate_human_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keyrate", "--distance-km", "25", "--n-total", "1e9"]) == 0
    out = capsys.readouterr().out
    for label in ("I_AB", "chi_BE", "asymptotic key rate K", "PLOB", "finite-size K",
                  "composable K"):
        assert label in out


@pytest.mark.parametrize("argv", [
    ["keyrate", "--transmittance", "1.5"],
    ["keyrate", "--transmittance", "0.5", "--eta", "0"],
    ["keyrate", "--transmittance", "0.5", "--vel", "-1"],
    ["keyrate", "--transmittance", "0.5", "--beta", "1.2"],
    ["keyrate", "--transmittance", "0.5", "--va", "nan"],
    ["keyrate", "--distance-km", "-3"],
    ["keyrate", "--transmittance", "0.5", "--n-total", "1e9", "--fer", "1"],
    ["keyrate", "--transmittance", "0.5", "--distance-km", "3"],
    ["keyrate", "--va", "4"],
    ["plan", "--distance-km", "0:x:1"],
    ["plan", "--distance-km", "10:0:1"],
    ["plan", "--distance-km", "0:10:0"],
    ["plan", "--distance-km", "0:1e9:1"],
    ["plan", "--distance-km", "0:10:1", "--symbol-rate", "-5"],
])
def test_invalid_input_exits_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err and "error" in err


def test_invalid_input_from_the_installed_command() -> None:
    proc = subprocess.run([sys.executable, "-m", "controller.cli", "keyrate", "--transmittance",
                           "0", "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "cvqkd keyrate: error: transmittance must lie in (0, 1], got 0"]


def test_plan_default_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--distance-km", "0:150:10", "--optimize-va"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [ln for ln in out if ln.strip() and ln.split()[0].replace(".", "").isdigit()]
    assert len(rows) == 16
    assert rows[0].split()[0] == "0.00" and rows[-1].split()[0] == "150.00"
    assert any("asymptotic K" in ln and "km" in ln for ln in out)


def test_plan_json_and_reach(capsys: pytest.CaptureFixture[str]) -> None:
    obj = _json(capsys, ["plan", "--distance-km", "0:100:20", "--detector", "untrusted",
                         "--detection", "homodyne", "--xi", "0.01", "--eta", "0.9", "--vel",
                         "0.01", "--symbol-rate", "1e8",
                         "--n-total", "1e10", "--json"])
    rows = obj["rows"]
    assert [r["distance_km"] for r in rows] == [0, 20, 40, 60, 80, 100]
    assert rows[0]["plob"] is None  # T = 1
    for r in rows:
        assert r["rate_bps"] == pytest.approx(r["K"] * 1e8)
        assert r["K_finite"] <= r["K"] + 1e-15 and r["K_composable"] <= r["K"] + 1e-15
        if r["plob"] is not None:
            assert r["K"] < r["plob"]
    reach = obj["max_distance_km"]["K"]
    assert isinstance(reach, float)
    # the reported reach is where K changes sign
    kw = {"eta": 0.9, "v_el": 0.01, "detection": "homodyne", "detector": "untrusted"}
    t = keyrate.fibre_transmittance(np.array([reach - 1e-3, reach + 1e-3]))
    k = keyrate.asymptotic_rate(4.0, t, 0.01, 0.95, **kw).k_raw
    assert k[0] > 0 >= k[1]
    fin = obj["max_distance_km"]["K_finite"]
    assert fin is None or fin < reach


def test_plan_plot(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "plan.png"
    assert main(["plan", "--distance-km", "0:100:25", "--n-total", "1e9", "--plot",
                 str(png)]) == 0
    capsys.readouterr()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_plan_plot_unwritable(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    rc = main(["plan", "--distance-km", "0:10:5", "--plot", str(tmp_path / "no" / "x.png")])
    assert rc == 2 and "cannot write plot" in capsys.readouterr().err


def test_output_referred_noise_is_converted(capsys: pytest.CaptureFixture[str]) -> None:
    """--xi-output X at transmittance T is --xi X/T (noise referred to the channel input)."""
    a = _json(capsys, ["keyrate", "--distance-km", "20", "--xi-output", "0.004", "--json"])
    t = 10 ** (-0.4)
    b = _json(capsys, ["keyrate", "--transmittance", str(t), "--xi", str(0.004 / t), "--json"])
    assert a["xi"] == pytest.approx(0.004 / t)
    assert a["K"] == pytest.approx(b["K"], rel=1e-12) and a["chi_BE"] == pytest.approx(b["chi_BE"])
    plan = _json(capsys, ["plan", "--distance-km", "10:30:10", "--xi-output", "0.004", "--json"])
    assert [r["xi"] for r in plan["rows"]] == pytest.approx([0.004 * 10 ** (d / 50)
                                                            for d in (10, 20, 30)])


def test_cli_runs_with_one_blas_thread(capsys: pytest.CaptureFixture[str]) -> None:
    """The pipeline brings its own threads: `cvqkd` caps BLAS at one (a second, spinning
    OpenBLAS worker cost ~13 % of a link run's CPU)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):
        if {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"} != {2}:
            pytest.skip("BLAS cannot run two threads here")
        _json(capsys, ["keyrate", "--transmittance", "0.3", "--va", "4", "--xi", "0.02",
                       "--beta", "0.95", "--json"])
        assert {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"} == {1}
