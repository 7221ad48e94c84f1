"""Optional PKCS#11 back end: the key store's device key held in a token (HSM, SoftHSM2).

The AES-256 device key is generated inside the token as a sensitive, non-extractable secret
key object (PKCS#11 v2.40 / v3.0: CKA_SENSITIVE=true, CKA_EXTRACTABLE=false), and every
encryption and decryption of key material runs inside the token with CKM_AES_GCM (96-bit
nonce, 128-bit tag, the key ID as associated data, exactly as the software path). The SQLite
store, its state machine and the crash-safety argument are unchanged: only the place of the
device key changes, and no file on the host can decrypt the keys.

Requires python-pkcs11 (imported lazily) and a PKCS#11 module, e.g. SoftHSM2's
libsofthsm2.so. The user PIN is read from the environment (CVQKD_PKCS11_PIN), never from the
command line.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidTag

from controller.keystore import KeyStoreError

DEFAULT_KEY_LABEL = "cvqkd-device-key"
PIN_ENV = "CVQKD_PKCS11_PIN"
SOFTHSM_PATHS = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


def softhsm_module() -> str | None:
    """Path of an installed SoftHSM2 PKCS#11 module, if any."""
    return next((p for p in SOFTHSM_PATHS if Path(p).is_file()), None)


def pin_from_env() -> str:
    pin = os.environ.get(PIN_ENV)
    if not pin:
        raise KeyStoreError(f"set the token's user PIN in the environment variable {PIN_ENV}")
    return pin


class TokenAead:
    """AES-256-GCM with a non-extractable key inside a PKCS#11 token (the `Aead` protocol)."""

    def __init__(self, session: object, key: object) -> None:
        self._session = session
        self._key = key

    @classmethod
    def open(
        cls,
        module: str,
        token_label: str,
        pin: str,
        *,
        key_label: str = DEFAULT_KEY_LABEL,
        create: bool = False,
    ) -> TokenAead:
        """Log in to the token and find (or, with create=True, generate) the device key."""
        try:
            import pkcs11
            from pkcs11 import Attribute, KeyType
        except ImportError:
            raise KeyStoreError("PKCS#11 support needs the python-pkcs11 package") from None
        if not Path(module).is_file():
            raise KeyStoreError(f"PKCS#11 module not found: {module}")
        try:
            token = pkcs11.lib(module).get_token(token_label=token_label)
        except pkcs11.NoSuchToken:
            raise KeyStoreError(f"no PKCS#11 token labelled {token_label!r}") from None
        try:
            session = token.open(user_pin=pin, rw=True)
        except pkcs11.PinIncorrect:
            raise KeyStoreError(f"wrong user PIN for token {token_label!r}") from None
        except pkcs11.UserAlreadyLoggedIn:  # login is per application, shared by sessions
            session = token.open(rw=True)
        try:
            existing = list(session.get_objects({
                Attribute.CLASS: pkcs11.ObjectClass.SECRET_KEY, Attribute.LABEL: key_label}))
            if create:
                if existing:
                    raise KeyStoreError(f"token {token_label!r} already holds a key labelled "
                                        f"{key_label!r}; refusing to create another")
                key = session.generate_key(
                    KeyType.AES, 256, label=key_label, store=True,
                    template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False})
            elif len(existing) == 1:
                key = existing[0]
            else:
                raise KeyStoreError(f"token {token_label!r} holds {len(existing)} keys labelled "
                                    f"{key_label!r} (expected 1)")
        except BaseException:
            session.close()
            raise
        return cls(session, key)

    def _params(self, nonce: bytes, associated_data: bytes) -> object:
        from pkcs11.mechanisms import GCMParams

        return GCMParams(nonce, associated_data, 128)

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes) -> bytes:
        from pkcs11 import Mechanism

        return self._key.encrypt(data, mechanism=Mechanism.AES_GCM,
                                 mechanism_param=self._params(nonce, associated_data))

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes) -> bytes:
        import pkcs11
        from pkcs11 import Mechanism

        try:
            return self._key.decrypt(data, mechanism=Mechanism.AES_GCM,
                                     mechanism_param=self._params(nonce, associated_data))
        except (pkcs11.GeneralError, pkcs11.EncryptedDataInvalid, pkcs11.SignatureInvalid,
                pkcs11.EncryptedDataLenRange):
            # Tokens report a GCM tag mismatch with one of these codes (SoftHSM2: general).
            raise InvalidTag() from None

    def close(self) -> None:
        self._session.close()
