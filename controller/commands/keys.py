"""`cvqkd keys`: inspect the key store.

    cvqkd keys list --store PATH [--state STATE] [--json]   metadata only, never material
    cvqkd keys get --store PATH --id UUID --hex [--device-key PATH]
                                                           administrative audit read
    ... get --pkcs11-module SO --pkcs11-token LABEL        device key in a PKCS#11 token
                                                           (PIN from $CVQKD_PKCS11_PIN)

`keys get` prints secret key material, so it demands the explicit --hex flag and warns on
stderr; it does not change the key's state. A store path that does not exist is bad input (one
line, exit status 2); problems of an existing store (wrong device key, corrupted row, unknown key
ID) are reported in one line with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from controller.cli import UsageError
from controller.keystore import STATES, KeyStore, KeyStoreError, default_device_key_path
from controller.keystore_pkcs11 import DEFAULT_KEY_LABEL, TokenAead, pin_from_env


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("keys", help="list keys in the key store; audit reads")
    sub = parser.add_subparsers(dest="keys_command", required=True)
    lst = sub.add_parser("list", help="key IDs, sizes, states and times (never material)")
    lst.add_argument("--store", required=True, help="key store database path")
    lst.add_argument("--state", choices=STATES, help="only keys in this state")
    lst.add_argument("--json", action="store_true", help="JSON output")
    lst.set_defaults(func=_list)
    get = sub.add_parser("get", help="print one key's material (administrative; needs --hex)")
    get.add_argument("--store", required=True, help="key store database path")
    get.add_argument("--id", required=True, dest="key_id", help="key UUID")
    get.add_argument("--hex", action="store_true", help="confirm: print the material as hex")
    get.add_argument("--device-key", help="device key file (default: STORE.devkey)")
    add_pkcs11_arguments(get)
    get.set_defaults(func=_get)


def add_pkcs11_arguments(parser: argparse.ArgumentParser) -> None:
    """Options selecting a device key held in a PKCS#11 token instead of a file."""
    parser.add_argument("--pkcs11-module", help="PKCS#11 module (.so), e.g. libsofthsm2.so")
    parser.add_argument("--pkcs11-token", help="token label (PIN from $CVQKD_PKCS11_PIN)")
    parser.add_argument("--pkcs11-key-label", default=DEFAULT_KEY_LABEL,
                        help=f"device key label in the token (default {DEFAULT_KEY_LABEL})")


def token_aead(args: argparse.Namespace, *, create: bool = False) -> TokenAead | None:
    """The token-held device key the options select, or None for a device key file."""
    if not args.pkcs11_module and not args.pkcs11_token:
        return None
    if not (args.pkcs11_module and args.pkcs11_token):
        raise UsageError("--pkcs11-module and --pkcs11-token go together")
    if getattr(args, "device_key", None):
        raise UsageError("give --device-key or the --pkcs11-* options, not both")
    return TokenAead.open(args.pkcs11_module, args.pkcs11_token, pin_from_env(),
                          key_label=args.pkcs11_key_label, create=create)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def _fail(exc: KeyStoreError) -> int:
    print(f"cvqkd keys: error: {exc}", file=sys.stderr)
    return 1


def _existing_store(path: str) -> str:
    """The --store path; a missing one is a usage error (exit 2), not a store failure."""
    if not Path(path).is_file():
        raise UsageError(f"--store {path}: key store not found (create one with `cvqkd setup "
                         "store --store PATH`)")
    return path


def _list(args: argparse.Namespace) -> int:
    _existing_store(args.store)
    try:
        with KeyStore.open(args.store) as store:
            records = store.list_keys(args.state)
    except KeyStoreError as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps([{
            "id": r.key_id, "state": r.state, "size_bits": r.size_bits, "link": r.link_id,
            "peer": r.peer_id, "batch": r.batch_id, "created": _iso(r.created),
            "updated": _iso(r.updated)} for r in records], indent=2))
        return 0
    print(f"{'ID':36}  {'STATE':9}  {'BITS':>6}  {'LINK':12}  {'PEER':12}  CREATED (UTC)")
    for r in records:
        print(f"{r.key_id:36}  {r.state:9}  {r.size_bits:6d}  {r.link_id:12}  {r.peer_id:12}  "
              f"{_iso(r.created)}")
    print(f"{len(records)} key(s)")
    return 0


def _get(args: argparse.Namespace) -> int:
    if not args.hex:
        raise UsageError("`keys get` prints secret key material; pass --hex to confirm")
    _existing_store(args.store)
    try:
        aead = token_aead(args)
        device_key = None if aead else args.device_key or default_device_key_path(args.store)
        with KeyStore.open(args.store, device_key, aead=aead) as store:
            material = store.material(args.key_id)
    except KeyStoreError as exc:
        return _fail(exc)
    print(f"warning: printing secret key material of {args.key_id} (audit use only)",
          file=sys.stderr)
    print(material.hex())
    return 0
