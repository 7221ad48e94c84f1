"""`cvqkd setup`: create the secret files of one end of a link.

    cvqkd setup psk --out PATH [--keys N]        pre-shared authentication key file (0600);
                                                 copy it to the other end over a trusted path
    cvqkd setup pool --psk PATH --pool PATH --role alice|bob
                                                 import a PSK file into this end's key pool,
                                                 then wipe the PSK file
    cvqkd setup store --store PATH [--device-key PATH]
                                                 new key store; creates the device key (0600,
                                                 default STORE.devkey) if it does not exist
    cvqkd setup store --store PATH --pkcs11-module SO --pkcs11-token LABEL
                                                 device key generated inside a PKCS#11 token
                                                 (non-extractable; PIN from $CVQKD_PKCS11_PIN)

Nothing is ever overwritten; no secret is printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from controller.auth import KeyPool, Role
from controller.commands.keys import add_pkcs11_arguments, token_aead
from controller.keystore import (
    KeyStore,
    KeyStoreError,
    create_device_key,
    default_device_key_path,
)
from controller.psk import DEFAULT_PSK_KEYS, ONE_TIME_KEY_BYTES, create_psk_file


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("setup", help="create PSK, key pool, device key, key store")
    sub = parser.add_subparsers(dest="setup_command", required=True)
    psk = sub.add_parser("psk", help="create a pre-shared authentication key file (0600)")
    psk.add_argument("--out", required=True, help="new file path (never overwritten)")
    psk.add_argument("--keys", type=int, default=DEFAULT_PSK_KEYS,
                     help=f"one-time keys of {ONE_TIME_KEY_BYTES} bytes (default "
                          f"{DEFAULT_PSK_KEYS})")
    psk.set_defaults(func=_psk)
    pool = sub.add_parser("pool", help="import a PSK file into this end's key pool, wipe it")
    pool.add_argument("--psk", required=True, help="pre-shared key file")
    pool.add_argument("--pool", required=True, help="new key pool database path")
    pool.add_argument("--role", required=True, choices=[r.value for r in Role])
    pool.set_defaults(func=_pool)
    store = sub.add_parser("store", help="create a key store (and its device key)")
    store.add_argument("--store", required=True, help="new key store database path")
    store.add_argument("--device-key", help="device key file (default: STORE.devkey)")
    add_pkcs11_arguments(store)
    store.set_defaults(func=_store)


def _refuse_existing(path: str) -> None:
    if Path(path).exists():
        raise ValueError(f"refusing to overwrite existing file {path}")


def _psk(args: argparse.Namespace) -> int:
    psk_id = create_psk_file(args.out, args.keys)
    print(f"created {args.out}: {args.keys} one-time keys, PSK ID {psk_id.hex()} (mode 0600); "
          "copy it to the other end over a trusted path")
    return 0


def _pool(args: argparse.Namespace) -> int:
    _refuse_existing(args.pool)
    with KeyPool.create(args.pool, args.psk, args.role) as pool:
        bits = pool.stats().total_bits
    print(f"created key pool {args.pool} for {args.role}: {bits} bits; {args.psk} wiped")
    return 0


def _store(args: argparse.Namespace) -> int:
    _refuse_existing(args.store)
    try:
        aead = token_aead(args, create=True)
        if aead is not None:
            KeyStore.create(args.store, aead=aead).close()
            aead.close()
            print(f"created key store {args.store}; device key {args.pkcs11_key_label!r} "
                  f"generated in token {args.pkcs11_token!r}")
            return 0
        device_key = Path(args.device_key or default_device_key_path(args.store))
        if not device_key.exists():
            create_device_key(device_key)
            print(f"created device key {device_key} (mode 0600)")
        KeyStore.create(args.store, device_key).close()
    except KeyStoreError as exc:
        raise ValueError(str(exc)) from None
    print(f"created key store {args.store}")
    return 0
