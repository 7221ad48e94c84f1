"""Optional PKCS#11 back end on SoftHSM2; skipped cleanly when SoftHSM2 or python-pkcs11 is
absent (install: `apt-get install softhsm2`, `pip install python-pkcs11`)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from controller.keystore import (
    COMMITTED,
    PARTICIPANT,
    KeyCorrupted,
    KeyStore,
    KeyStoreError,
    WrongDeviceKey,
)
from controller.keystore_pkcs11 import TokenAead, softhsm_module

pkcs11 = pytest.importorskip("pkcs11", reason="python-pkcs11 not installed")
MODULE = softhsm_module()
if MODULE is None or shutil.which("softhsm2-util") is None:
    pytest.skip("SoftHSM2 not installed", allow_module_level=True)

LABEL, PIN = "cvqkd-test", "1234"


@pytest.fixture(scope="module")
def token(tmp_path_factory):
    d = tmp_path_factory.mktemp("softhsm")
    (d / "tokens").mkdir()
    conf = d / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {d / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    old = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # read by the module at C_Initialize
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", LABEL, "--pin", PIN,
                    "--so-pin", "5678"], check=True, capture_output=True)
    yield
    if old is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = old


def _keys(n):
    return [(str(uuid.uuid4()), hashlib.sha256(bytes([i])).digest(), 256) for i in range(n)]


def test_token_gcm_matches_software_aes_gcm(token):
    """With a known (test-only, extractable) key, the token's GCM equals cryptography's."""
    from pkcs11 import Attribute, KeyType, ObjectClass

    raw = os.urandom(32)
    aead = TokenAead.open(MODULE, LABEL, PIN, key_label="interop", create=True)
    aead.close()
    lib_token = pkcs11.lib(MODULE).get_token(token_label=LABEL)
    with lib_token.open(user_pin=PIN, rw=True) as s:
        key = s.create_object({Attribute.CLASS: ObjectClass.SECRET_KEY,
                               Attribute.KEY_TYPE: KeyType.AES, Attribute.VALUE: raw,
                               Attribute.ENCRYPT: True, Attribute.DECRYPT: True,
                               Attribute.LABEL: "known", Attribute.TOKEN: False})
        t = TokenAead(s, key)
        nonce, data, ad = os.urandom(12), os.urandom(32), b"cvqkd-key-v1" + os.urandom(20)
        ct = t.encrypt(nonce, data, ad)
        assert ct == AESGCM(raw).encrypt(nonce, data, ad)
        assert t.decrypt(nonce, ct, ad) == data


def test_store_with_token_key(token, tmp_path):
    aead = TokenAead.open(MODULE, LABEL, PIN, create=True)
    with pytest.raises(KeyStoreError, match="refusing to create another"):
        TokenAead.open(MODULE, LABEL, PIN, create=True)
    keys = _keys(3)
    with KeyStore.create(tmp_path / "k.db", aead=aead) as store:
        store.add_batch(str(uuid.uuid4()), keys, link_id="L", peer_id="bob", role=PARTICIPANT,
                        status=COMMITTED)
    aead.close()
    # The key is sensitive and non-extractable: its value cannot be read from the token.
    from pkcs11 import Attribute

    again = TokenAead.open(MODULE, LABEL, PIN)
    assert again._key[Attribute.SENSITIVE] and not again._key[Attribute.EXTRACTABLE]
    with pytest.raises(pkcs11.PKCS11Error):
        again._key[Attribute.VALUE]
    with KeyStore.open(tmp_path / "k.db", aead=again) as store:
        assert [store.material(k[0]) for k in keys] == [k[1] for k in keys]
        store._conn.execute("UPDATE keys SET ciphertext = zeroblob(48) WHERE id = ?",
                            (keys[0][0],))
        with pytest.raises(KeyCorrupted, match="AES-GCM authentication failed"):
            store.material(keys[0][0])
        assert store.material(keys[1][0]) == keys[1][1]
    other = TokenAead.open(MODULE, LABEL, PIN, key_label="other-device", create=True)
    with pytest.raises(WrongDeviceKey):
        KeyStore.open(tmp_path / "k.db", aead=other)
    other.close()
    again.close()


def test_clear_token_errors(token):
    with pytest.raises(KeyStoreError, match="wrong user PIN"):
        TokenAead.open(MODULE, LABEL, "0000")
    with pytest.raises(KeyStoreError, match="no PKCS#11 token"):
        TokenAead.open(MODULE, "no-such-token", PIN)
    with pytest.raises(KeyStoreError, match="holds 0 keys"):
        TokenAead.open(MODULE, LABEL, PIN, key_label="absent")


def test_cli_with_token(token, tmp_path, monkeypatch, capsys):
    from controller.cli import main

    store = tmp_path / "t.db"
    opts = ["--pkcs11-module", MODULE, "--pkcs11-token", LABEL, "--pkcs11-key-label", "cli-key"]
    monkeypatch.delenv("CVQKD_PKCS11_PIN", raising=False)
    assert main(["setup", "store", "--store", str(store), *opts]) == 2
    assert "CVQKD_PKCS11_PIN" in capsys.readouterr().err
    monkeypatch.setenv("CVQKD_PKCS11_PIN", PIN)
    assert main(["setup", "store", "--store", str(store), *opts]) == 0
    assert not (tmp_path / "t.db.devkey").exists()  # no key file on the host
    keys = _keys(2)
    aead = TokenAead.open(MODULE, LABEL, PIN, key_label="cli-key")
    with KeyStore.open(store, aead=aead) as s:
        s.add_batch(str(uuid.uuid4()), keys, link_id="L", peer_id="p", role=PARTICIPANT,
                    status=COMMITTED)
    aead.close()
    capsys.readouterr()
    assert main(["keys", "get", "--store", str(store), "--id", keys[1][0], "--hex", *opts]) == 0
    assert capsys.readouterr().out.strip() == keys[1][1].hex()
    assert main(["keys", "get", "--store", str(store), "--id", keys[1][0], "--hex",
                 "--pkcs11-module", MODULE]) == 2
