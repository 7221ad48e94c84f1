"""Secret files: the pre-shared authentication key file and the key store's device key.

Secret files are created atomically with mode 0600 and never overwritten: the data goes to a
temporary file opened with O_CREAT|O_EXCL (mode 0600), is fsynced, then hard-linked to its final
name (link(2) fails if the name exists) and the directory is fsynced. Readers refuse files that
other users could read.

Pre-shared key (PSK) file layout: magic b"CVQKPSK1", a 16-byte random PSK ID, then the key
material, a multiple of 32 bytes (one Poly1305 one-time key each). Setup creates it on one end;
the operator copies it to the other end over a trusted path (both ends must hold the same file).
`controller.auth.KeyPool.create` imports it and then wipes it, so the same one-time keys can
never be imported, hence used, twice.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PSK_MAGIC = b"CVQKPSK1"
PSK_ID_BYTES = 16
ONE_TIME_KEY_BYTES = 32  # one Poly1305 key (r, s)
DEFAULT_PSK_KEYS = 4096  # 128 KiB: thousands of messages before the first refill


def create_secret_file(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to a new file with mode 0600, atomically; refuse to overwrite."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise ValueError(f"refusing to overwrite existing file {path}")
    if not path.parent.is_dir():
        raise ValueError(f"directory {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.tmp-{os.urandom(6).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # independent of the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise ValueError(f"refusing to overwrite existing file {path}") from None
    finally:
        os.unlink(tmp)
    _fsync_dir(path.parent)
    return path


def read_secret_file(path: str | os.PathLike, what: str) -> bytes:
    """Read a secret file, refusing one that is missing, not regular or readable by others."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ValueError(f"{what} not found: {path}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{what} {path} is not a regular file")
    if st.st_mode & 0o077:
        raise ValueError(
            f"{what} {path} has mode {stat.S_IMODE(st.st_mode):04o}; it must be 0600 "
            f"(chmod 600 {path})"
        )
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise ValueError(f"{what} {path} is owned by another user")
    return path.read_bytes()


def wipe_file(path: str | os.PathLike) -> None:
    """Overwrite a file with zeros, fsync, and unlink it."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "r+b", buffering=0) as f:
        f.write(bytes(size))
        os.fsync(f.fileno())
    path.unlink()
    _fsync_dir(path.parent)


def create_psk_file(path: str | os.PathLike, n_keys: int = DEFAULT_PSK_KEYS) -> bytes:
    """Create a PSK file of `n_keys` one-time keys from the OS CSPRNG; return its PSK ID."""
    if not 1 <= n_keys <= 2**24:
        raise ValueError(f"number of pre-shared keys {n_keys} outside 1..{2**24}")
    psk_id = os.urandom(PSK_ID_BYTES)
    create_secret_file(path, PSK_MAGIC + psk_id + os.urandom(n_keys * ONE_TIME_KEY_BYTES))
    return psk_id


def read_psk_file(path: str | os.PathLike) -> tuple[bytes, bytes]:
    """Return (psk_id, material) of a PSK file after validating its layout and mode."""
    data = read_secret_file(path, "pre-shared key file")
    head = len(PSK_MAGIC) + PSK_ID_BYTES
    if not data.startswith(PSK_MAGIC):
        raise ValueError(f"{path} is not a cvqkd pre-shared key file")
    material = data[head:]
    if not material or len(material) % ONE_TIME_KEY_BYTES:
        raise ValueError(
            f"pre-shared key file {path} is truncated (material not a positive multiple of "
            f"{ONE_TIME_KEY_BYTES} bytes)"
        )
    return data[len(PSK_MAGIC) : head], material


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
