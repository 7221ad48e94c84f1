"""`cvqkd keys`: inspect the key store.

    cvqkd keys list --store PATH [--state STATE] [--json]   metadata only, never material
    cvqkd keys get --store PATH --id UUID --hex [--device-key PATH]
                                                           administrative audit read

`keys get` prints secret key material, so it demands the explicit --hex flag and warns on
stderr; it does not change the key's state. Store problems (missing store, wrong device key,
corrupted row) are reported in one line with exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from controller.cli import UsageError
from controller.keystore import STATES, KeyStore, KeyStoreError, default_device_key_path


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
    get.set_defaults(func=_get)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def _fail(exc: KeyStoreError) -> int:
    print(f"cvqkd keys: error: {exc}", file=sys.stderr)
    return 1


def _list(args: argparse.Namespace) -> int:
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
    device_key = args.device_key or default_device_key_path(args.store)
    try:
        with KeyStore.open(args.store, device_key) as store:
            material = store.material(args.key_id)
    except KeyStoreError as exc:
        return _fail(exc)
    print(f"warning: printing secret key material of {args.key_id} (audit use only)",
          file=sys.stderr)
    print(material.hex())
    return 0
