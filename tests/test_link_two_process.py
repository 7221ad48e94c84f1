"""`cvqkd tx --listen` and `cvqkd rx --connect` as two real processes, joined by the simulated
fibre and the authenticated classical channel on 127.0.0.1: both key stores end up with the
same keys, and a receiver killed mid-run leaves both stores consistent."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller.cli import main
from controller.keystore import READY
from controller.link import open_store

ROOT = Path(__file__).resolve().parents[1]
# as tests/test_link.py's small_config: 5 km, V_A 1.5, frames of 2^18, 2^21-symbol blocks
SMALL = ["--distance-km", "5", "--va", "1.5", "--seed", "7", "--frame-symbols", "262144",
         "--block-symbols", "2097152", "--code-n", "16000"]
TINY = ["--distance-km", "5", "--va", "1.5", "--seed", "7", "--frame-symbols", "65536",
        "--block-symbols", "131072", "--code-n", "16000"]


def setup_ends(root: Path) -> tuple[Path, Path]:
    """The operator's steps (docs/protocol.md): one PSK file, copied to the other end, each
    end imports it into its own pool and creates its own key store."""
    a, b = root / "alice", root / "bob"
    a.mkdir()
    b.mkdir()
    assert main(["setup", "psk", "--out", str(a / "psk.bin")]) == 0
    shutil.copy2(a / "psk.bin", b / "psk.bin")  # "over a trusted path"; keeps mode 0600
    assert main(["setup", "pool", "--psk", str(a / "psk.bin"), "--pool",
                 str(a / "alice-pool.sqlite"), "--role", "alice"]) == 0
    assert main(["setup", "pool", "--psk", str(b / "psk.bin"), "--pool",
                 str(b / "bob-pool.sqlite"), "--role", "bob"]) == 0
    assert main(["setup", "store", "--store", str(a / "alice-keys.sqlite")]) == 0
    assert main(["setup", "store", "--store", str(b / "bob-keys.sqlite")]) == 0
    assert not (a / "psk.bin").exists() and not (b / "psk.bin").exists()  # wiped on import
    return a, b


def free_port_pair() -> int:
    """A port p with p and p + 1 free on 127.0.0.1 (classical channel, fibre)."""
    for _ in range(100):
        with socket.socket() as s1:
            s1.bind(("127.0.0.1", 0))
            p = s1.getsockname()[1]
            if p >= 65535:
                continue
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", p + 1))
                except OSError:
                    continue
        return p
    raise RuntimeError("no free pair of ports")


def cli(*argv: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "controller.cli", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 60.0,
                  stream: str = "stderr") -> list[str]:
    """Read proc's stderr (or stdout) until a line containing `text`; the lines read."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = getattr(proc, stream).readline()
        if not line:
            raise AssertionError(f"process ended before {text!r}: {''.join(lines)[-2000:]}")
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no {text!r} within {timeout} s")


def start_pair(a: Path, b: Path, opts: list[str], frames: int
               ) -> tuple[subprocess.Popen, subprocess.Popen]:
    port = free_port_pair()
    tx = cli("tx", "--listen", f"127.0.0.1:{port}", "--workdir", str(a), "--frames",
             str(frames), "--json", *opts)
    wait_for_line(tx, "listening on")
    rx = cli("rx", "--connect", f"127.0.0.1:{port}", "--workdir", str(b), "--json", *opts)
    return tx, rx


def finish(proc: subprocess.Popen, timeout: float = 240.0) -> tuple[int, dict | None, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, (json.loads(out) if out.strip() else None), err


def store_keys(path: Path) -> dict[str, bytes]:
    """Every ready key of a store: UUID -> material (through the store API)."""
    with open_store(path) as store:
        return {r.key_id: store.material(r.key_id) for r in store.list_keys(READY)}


def stores(a: Path, b: Path) -> tuple[dict[str, bytes], dict[str, bytes]]:
    return store_keys(a / "alice-keys.sqlite"), store_keys(b / "bob-keys.sqlite")


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict, dict]:
    a, b = setup_ends(tmp_path_factory.mktemp("two"))
    tx, rx = start_pair(a, b, SMALL, frames=8)
    rc_rx, rep_rx, err_rx = finish(rx)
    rc_tx, rep_tx, err_tx = finish(tx)
    assert rc_rx == 0, err_rx[-2000:]
    assert rc_tx == 0, err_tx[-2000:]
    return a, b, rep_tx, rep_rx


def test_two_processes_fill_both_stores_with_the_same_keys(good_run) -> None:
    a, b, rep_tx, rep_rx = good_run
    assert rep_tx["session_abort"] is None and rep_rx["session_abort"] is None
    alice, bob = stores(a, b)
    assert len(alice) > 0 and alice == bob  # same UUIDs, same material, key by key
    assert all(len(k) == 32 for k in alice.values())
    assert rep_rx["secret_bits"] == 8 * 32 * len(bob)
    assert rep_tx["keys_in_store_alice"] == rep_rx["keys_in_store_bob"] == len(alice)
    # each process reports only its own store
    assert rep_tx["key_store_bob"] == "" and rep_rx["key_store_alice"] == ""
    # the channel measured through the fibre is the configured one (5 km: T = 0.794)
    assert rep_rx["frames_ok"] >= 7  # a frame may trip the xi alarm (point estimate)
    lo, hi = rep_rx["excess_noise_interval_snu"]
    assert lo <= 0.02 <= hi  # configured xi (default), within its interval
    assert abs(rep_rx["transmittance"] / 10 ** (-0.1) - 1) < 0.05


def test_rx_killed_mid_run_leaves_both_stores_consistent(good_run, tmp_path: Path) -> None:
    a0, b0, _, _ = good_run
    a, b = tmp_path / "alice", tmp_path / "bob"
    shutil.copytree(a0, a)
    shutil.copytree(b0, b)
    before = stores(a, b)
    tx, rx = start_pair(a, b, TINY, frames=4)
    wait_for_line(rx, "frame 1: captured")
    rx.send_signal(signal.SIGKILL)
    rx.wait(30)
    rc_tx, rep_tx, err_tx = finish(tx, timeout=90)
    assert rc_tx == 1, err_tx[-2000:]
    assert rep_tx["session_abort"]["reason"] == "peer_lost"
    after = stores(a, b)
    assert after == before and after[0] == after[1]  # nothing lost, nothing at one end only


def test_config_mismatch_between_the_processes(tmp_path: Path) -> None:
    """Different modulation settings at the two ends: both processes stop with
    config_mismatch (exit 1) before any frame, and no key is stored."""
    a, b = setup_ends(tmp_path)
    port = free_port_pair()
    tx = cli("tx", "--listen", f"127.0.0.1:{port}", "--workdir", str(a), "--frames", "1",
             *TINY)
    wait_for_line(tx, "listening on", stream="stdout")
    rx = cli("rx", "--connect", f"127.0.0.1:{port}", "--workdir", str(b), *TINY,
             "--va", "2.0")
    out_rx, _ = rx.communicate(timeout=120)
    out_tx, _ = tx.communicate(timeout=120)
    assert rx.returncode == 1 and tx.returncode == 1
    assert "config_mismatch" in out_rx and "session aborted: config_mismatch" in out_tx
    assert "frames 0 (0 ok)" in out_rx
    assert stores(a, b) == ({}, {})


def test_board_is_refused_here() -> None:
    proc = subprocess.run([sys.executable, "-m", "controller.cli", "rx", "--connect",
                           "127.0.0.1:9", "--board"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no RFSoC board" in proc.stderr


def test_missing_pool_is_a_usage_error(tmp_path: Path, capsys) -> None:
    rc = main(["tx", "--listen", "127.0.0.1:9", "--workdir", str(tmp_path)])
    assert rc == 2 and "cvqkd setup pool" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rx_killed_at_a_random_time_then_recovered(good_run, tmp_path: Path, seed) -> None:
    """Kill rx at a random moment of a key-producing session (possibly inside the commit);
    the next session's commit recovery makes both stores equal again, losing no key that
    was stored before."""
    a0, b0, _, _ = good_run
    a, b = tmp_path / "alice", tmp_path / "bob"
    shutil.copytree(a0, a)
    shutil.copytree(b0, b)
    before = stores(a, b)
    tx, rx = start_pair(a, b, SMALL, frames=8)
    time.sleep(random.Random(seed).uniform(2.0, 20.0))
    rx.send_signal(signal.SIGKILL)
    rx.wait(30)
    finish(tx, timeout=120)
    tx, rx = start_pair(a, b, TINY, frames=1)  # recovery, one frame, no new key
    assert finish(rx)[0] == 0
    assert finish(tx)[0] == 0
    alice, bob = stores(a, b)
    assert alice == bob
    assert set(before[0]) <= set(alice)


def test_fibre_receiver_discards_what_captures_no_longer_need() -> None:
    """The receiver keeps only the field from `first` on (bounded memory over many frames)."""
    import numpy as np

    from fpga_bindings.model.fibre_transport import FibreReceiver, FibreSender, TransmitterModel
    from fpga_bindings.model.link import LinkConfig as ModelConfig
    from fpga_bindings.model.link_api import FrontEnd

    a, b = socket.socketpair()
    tx = TransmitterModel(ModelConfig(seed=1, tx_linewidth_hz=0.0), FibreSender(a),
                          FrontEnd(voa_db=0.0))
    iq = np.stack([np.arange(1000, dtype=np.int16) * 16, np.zeros(1000, np.int16)], axis=1)
    tx.transmit(iq, chunk=300, end=False)
    tx.transmit(iq[:10], chunk=300)  # the stream continues, then ends
    rx = FibreReceiver(b)
    rx.wait_until(1010)
    full, _ = rx.field()
    rx.discard_before(450)  # inside the second chunk
    part, _ = rx.field()
    assert rx.first == 450 and np.array_equal(part, full[450:]) and len(part) == 560
    rx.discard_before(100)  # never backwards
    assert rx.first == 450
    rx.discard_before(10**6)  # at most what arrived
    assert rx.first == 1010 and len(rx.field()[0]) == 0
    a.close()
    b.close()


@pytest.mark.parametrize(("fault", "xi_abort", "reason"), [
    (("fibre_cut", {}), 0.1, "sync_failure"),
    (("intercept_resend", {}), 10.0, None),
])
def test_fault_through_the_fibre(tmp_path: Path, fault, xi_abort, reason) -> None:
    """Both ends in one event loop (run_tx, run_rx) with a fault in Bob's model: a fibre cut
    is a sync failure; Eve's intercept-resend on the field that crossed the fibre shows as
    2 SNU of excess noise (Grosshans & Grangier 2002), as in the one-process mode."""
    import asyncio

    from controller.config import config_from_dict
    from controller.link_two_process import TxServer, end_files, run_rx, run_tx

    a, b = setup_ends(tmp_path)
    cfg = config_from_dict({"physics": {"distance_km": 5.0, "seed": 7},
                            "modulation": {"v_a": 1.5},
                            "protocol": {"frame_symbols": 1 << 16, "block_symbols": 1 << 16,
                                         "code_n": 16000, "xi_abort": xi_abort}})
    port = free_port_pair()
    addr, fibre = ("127.0.0.1", port), ("127.0.0.1", port + 1)

    async def both():
        listening = asyncio.Event()
        tx = asyncio.create_task(run_tx(cfg, end_files(cfg, a, "alice"), addr, fibre,
                                        TxServer(frames=1),
                                        on_listening=lambda *_: listening.set()))
        await asyncio.wait_for(listening.wait(), 30)
        rx = await run_rx(cfg, end_files(cfg, b, "bob"), addr, fibre, faults={0: fault})
        (tx_report,) = await tx
        return tx_report, rx

    rep_tx, rep_rx = asyncio.run(both())
    assert rep_tx.session_abort is None and rep_rx.session_abort is None
    (frame,) = rep_rx.frames
    if reason is not None:
        assert not frame.ok and frame.reason == reason
    else:
        assert 1.5 < frame.xi < 2.5
    assert stores(a, b) == ({}, {})


def test_transmitter_reports_a_receiver_gone() -> None:
    """Alice's fibre end: a closed receiver ends the session as peer_lost at the next flush;
    closing afterwards never raises."""
    import asyncio

    from controller.config import LinkConfig
    from controller.link_fibre import FibreTransmitter
    from controller.link_protocol import AbortReason, LinkAbort
    from controller.link_quantum import Emission
    from dsp.transmitter import TxConfig, build_frame

    cfg = LinkConfig()
    a, b = socket.socketpair()
    b.close()
    qc = FibreTransmitter(cfg, a)
    frame = build_frame(TxConfig(sample_rate_hz=qc.player_sps,
                                 symbol_rate_hz=cfg.modulation.symbol_rate_hz,
                                 v_a=cfg.modulation.v_a, dac_bits=qc.dac_bits),
                        4096, os.urandom(32), 0)

    async def go() -> None:
        timing = await qc.emit(Emission(0, frame.iq_int16, frame.meta["quad_per_lsb"],
                                        frame.meta))
        lead, _ = qc.dark_samples(0, len(frame.iq_int16))
        assert timing["light_start_s"] == lead / qc.player_sps
        with pytest.raises(LinkAbort) as exc:
            await qc.flush()
        assert exc.value.reason == AbortReason.PEER_LOST
        await qc.close()

    asyncio.run(go())


def test_tx_serves_sessions_one_after_another(tmp_path: Path) -> None:
    """`cvqkd tx --sessions 2`: two rx runs, one after the other, against one tx process;
    each session is reported (one JSON line each), both stores agree after each."""
    a, b = setup_ends(tmp_path)
    port = free_port_pair()
    tx = cli("tx", "--listen", f"127.0.0.1:{port}", "--workdir", str(a), "--frames", "1",
             "--sessions", "2", "--json", *TINY)
    wait_for_line(tx, "listening on")
    for _ in range(2):
        rx = cli("rx", "--connect", f"127.0.0.1:{port}", "--workdir", str(b), "--json", *TINY)
        rc, rep, err = finish(rx)
        assert rc == 0 and rep["session_abort"] is None and rep["frames"] == 1, err[-2000:]
        line = json.loads(tx.stdout.readline())  # tx's report of the session, as it ends
        assert line["session_abort"] is None
        alice, bob = stores(a, b)
        assert alice == bob
    out, err = tx.communicate(timeout=60)
    assert tx.returncode == 0 and out.strip() == "", err[-2000:]


def test_sigterm_lets_the_session_finish_then_tx_exits(tmp_path: Path) -> None:
    """`--sessions 0` serves until stopped: SIGTERM in the middle of a session lets it finish
    (the receiver completes normally, stores equal) and tx exits 0 without taking another."""
    a, b = setup_ends(tmp_path)
    port = free_port_pair()
    tx = cli("tx", "--listen", f"127.0.0.1:{port}", "--workdir", str(a), "--frames", "2",
             "--sessions", "0", "--json", *TINY)
    wait_for_line(tx, "listening on")
    rx = cli("rx", "--connect", f"127.0.0.1:{port}", "--workdir", str(b), "--json", *TINY)
    wait_for_line(rx, "frame 0: captured")
    tx.send_signal(signal.SIGTERM)
    rc, rep, err = finish(rx)
    assert rc == 0 and rep["session_abort"] is None and rep["frames"] == 2, err[-2000:]
    rc_tx, rep_tx, err_tx = finish(tx, timeout=60)
    assert rc_tx == 0 and rep_tx["session_abort"] is None, err_tx[-2000:]
    assert "SIGTERM: finishing the session in progress" in err_tx
    alice, bob = stores(a, b)
    assert alice == bob


def test_second_signal_aborts_the_session_cleanly(tmp_path: Path) -> None:
    """Two SIGINTs: the session in progress is aborted (the receiver is told: peer_lost),
    tx exits 1, and both stores stay equal."""
    a, b = setup_ends(tmp_path)
    port = free_port_pair()
    tx = cli("tx", "--listen", f"127.0.0.1:{port}", "--workdir", str(a), "--frames", "4",
             "--json", *TINY)
    wait_for_line(tx, "listening on")
    rx = cli("rx", "--connect", f"127.0.0.1:{port}", "--workdir", str(b), "--json", *TINY)
    wait_for_line(rx, "frame 0: captured")
    tx.send_signal(signal.SIGINT)
    time.sleep(0.2)
    tx.send_signal(signal.SIGINT)
    rc_tx, rep_tx, err_tx = finish(tx, timeout=60)
    assert rc_tx == 1 and rep_tx["session_abort"]["reason"] == "peer_lost", err_tx[-2000:]
    rc, rep, err = finish(rx)
    assert rc == 1 and rep["session_abort"] is not None, err[-2000:]
    alice, bob = stores(a, b)
    assert alice == bob
