"""Test helpers: pairs of authentication key pools from one pre-shared key file."""

from __future__ import annotations

from pathlib import Path

from controller.auth import KeyPool, Role
from controller.psk import create_psk_file


def make_pool_pair(directory: Path, n_keys: int = 256) -> tuple[Path, Path]:
    """Alice's and Bob's pool databases, imported from one PSK file (then wiped)."""
    psk = directory / "link.psk"
    create_psk_file(psk, n_keys)
    copy = directory / "link-copy.psk"  # the operator's copy for the other end
    copy.write_bytes(psk.read_bytes())
    copy.chmod(0o600)
    paths = directory / "pool-alice.db", directory / "pool-bob.db"
    KeyPool.create(paths[0], psk, Role.ALICE).close()
    KeyPool.create(paths[1], copy, Role.BOB).close()
    return paths
