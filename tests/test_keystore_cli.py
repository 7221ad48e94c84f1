"""`cvqkd keys list|get` and `cvqkd setup psk|pool|store`."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import uuid

import pytest

from controller.cli import main
from controller.keystore import COMMITTED, PARTICIPANT, KeyStore, create_device_key


@pytest.fixture
def filled(tmp_path):
    store_path = tmp_path / "k.db"
    assert main(["setup", "store", "--store", str(store_path)]) == 0
    keys = [(str(uuid.uuid4()), hashlib.sha256(bytes([i])).digest(), 256) for i in range(3)]
    with KeyStore.open(store_path, f"{store_path}.devkey") as s:
        s.add_batch(str(uuid.uuid4()), keys, link_id="link-25km", peer_id="bob",
                    role=PARTICIPANT, status=COMMITTED)
    return store_path, keys


def test_list_table_and_json_never_show_material(filled, capsys):
    store, keys = filled
    assert main(["keys", "list", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "3 key(s)" in out and keys[0][0] in out and "link-25km" in out
    assert main(["keys", "list", "--store", str(store), "--json", "--state", "ready"]) == 0
    out = capsys.readouterr().out
    rows = json.loads(out)
    assert [r["id"] for r in rows] == [k[0] for k in keys]
    assert {r["state"] for r in rows} == {"ready"} and {r["size_bits"] for r in rows} == {256}
    assert rows[0]["created"].endswith("+00:00")
    for _, material, _ in keys:
        assert material.hex() not in out


def test_get_needs_hex_and_warns(filled, capsys):
    store, keys = filled
    assert main(["keys", "get", "--store", str(store), "--id", keys[1][0]]) == 2
    assert "--hex" in capsys.readouterr().err
    assert main(["keys", "get", "--store", str(store), "--id", keys[1][0], "--hex"]) == 0
    cap = capsys.readouterr()
    assert cap.out.strip() == keys[1][1].hex()
    assert "warning" in cap.err and keys[1][1].hex() not in cap.err


def test_clear_errors(filled, tmp_path, capsys):
    store, keys = filled
    for cmd in (["list"], ["get", "--id", keys[0][0], "--hex"]):  # bad input: exit 2
        assert main(["keys", *cmd, "--store", str(tmp_path / "missing.db")]) == 2
        err = capsys.readouterr().err
        assert "key store not found" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    create_device_key(tmp_path / "other.key")
    assert main(["keys", "get", "--store", str(store), "--id", keys[0][0], "--hex",
                 "--device-key", str(tmp_path / "other.key")]) == 1
    assert "does not belong" in capsys.readouterr().err
    raw = sqlite3.connect(store)
    raw.execute("UPDATE keys SET ciphertext = zeroblob(48) WHERE id = ?", (keys[0][0],))
    raw.commit()
    raw.close()
    assert main(["keys", "get", "--store", str(store), "--id", keys[0][0], "--hex"]) == 1
    err = capsys.readouterr().err
    assert "AES-GCM authentication failed" in err
    assert main(["keys", "get", "--store", str(store), "--id", keys[2][0], "--hex"]) == 0
    assert capsys.readouterr().out.strip() == keys[2][1].hex()  # other keys unaffected
    assert main(["keys", "get", "--store", str(store), "--id", str(uuid.uuid4()), "--hex"]) == 1
    assert "not in this store" in capsys.readouterr().err


def test_setup_psk_and_pool(tmp_path, capsys):
    psk = tmp_path / "link.psk"
    assert main(["setup", "psk", "--out", str(psk), "--keys", "64"]) == 0
    assert stat.S_IMODE(os.stat(psk).st_mode) == 0o600
    assert main(["setup", "psk", "--out", str(psk)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert main(["setup", "psk", "--out", str(tmp_path / "x.psk"), "--keys", "0"]) == 2
    assert main(["setup", "pool", "--psk", str(psk), "--pool", str(tmp_path / "p.db"),
                 "--role", "bob"]) == 0
    assert not psk.exists() and "16384 bits" in capsys.readouterr().out
    assert main(["setup", "pool", "--psk", str(psk), "--pool", str(tmp_path / "q.db"),
                 "--role", "bob"]) == 2
    assert "not found" in capsys.readouterr().err
