"""Versioned binary framing of the classical channel (no pickle, no JSON for bulk data).

One frame on the wire (all integers little-endian)::

    magic    4 bytes  b"CVQK"
    version  u8       framing version (FRAMING_VERSION)
    type     u8       MsgType
    app_keys u16      one-time pool keys reserved for the application after this frame
    seq      u64      per-direction sequence number = index of the frame's one-time MAC key
    length   u32      payload length in bytes (<= the receiver's max_payload)
    payload  length bytes
    tag      16 bytes Poly1305 tag (see controller.auth)

A payload is a list of named, typed fields::

    n_fields u16, then per field: name_len u8, name (ASCII [a-z0-9_]), kind u8, value

    kind 1 int    i64
    kind 2 float  f64
    kind 3 bytes  u32 length + data
    kind 4 str    u32 length + UTF-8 data
    kind 5 array  dtype code u8, ndim u8, shape u32 * ndim, raw little-endian C-order data

Arrays travel as raw buffers with a dtype code from a small allow-list (DTYPES); their byte
count follows from the shape and is checked against the bytes present before anything is
allocated. Every malformed input raises `FrameError`, never another exception.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

MAGIC = b"CVQK"
FRAMING_VERSION = 1
SUPPORTED_FRAMING_VERSIONS = frozenset({FRAMING_VERSION})
HEADER = struct.Struct("<4sBBHQI")
HEADER_SIZE = HEADER.size  # 20 bytes
TAG_SIZE = 16
DEFAULT_MAX_PAYLOAD = 64 * 2**20  # bytes
MAX_APP_KEYS = 64
MAX_FIELDS = 256
MAX_NDIM = 8
MAX_NAME = 32

_INT = struct.Struct("<q")
_FLOAT = struct.Struct("<d")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")

KIND_INT, KIND_FLOAT, KIND_BYTES, KIND_STR, KIND_ARRAY = 1, 2, 3, 4, 5

# Allowed array dtypes and their wire codes (always little-endian on the wire).
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("u1"),
    2: np.dtype("i1"),
    3: np.dtype("<u2"),
    4: np.dtype("<i2"),
    5: np.dtype("<u4"),
    6: np.dtype("<i4"),
    7: np.dtype("<u8"),
    8: np.dtype("<i8"),
    9: np.dtype("<f4"),
    10: np.dtype("<f8"),
    11: np.dtype("<c8"),
    12: np.dtype("<c16"),
}
_DTYPE_CODES = {(dt.kind, dt.itemsize): code for code, dt in DTYPES.items()}

FieldValue = int | float | bytes | str | np.ndarray


class FrameError(ValueError):
    """A frame or payload is malformed, oversized or of an unsupported version."""


class MsgType(IntEnum):
    """Message types of the classical channel. Values are wire codes: never renumber."""

    HELLO = 1
    HELLO_ACK = 2
    CLOSE = 3
    ABORT = 4
    # Pipeline (parameter exchange, sifting, estimation, reconciliation, privacy amplification)
    PARAMS = 16
    SIFT = 17
    ESTIMATION = 18
    SYNDROME = 19
    VERIFY = 20
    PA_SEED = 21
    DATA = 22
    # Two-step key commit and its recovery (controller.key_commit)
    KEY_PREPARE = 32
    KEY_PREPARE_ACK = 33
    KEY_COMMIT = 34
    KEY_COMMIT_ACK = 35
    KEY_RECOVER_QUERY = 36
    KEY_RECOVER_REPORT = 37
    KEY_RECOVER_DECISION = 38
    KEY_RECOVER_ACK = 39


_MSG_TYPES = frozenset(int(t) for t in MsgType)


@dataclass(frozen=True)
class FrameHeader:
    version: int
    msg_type: MsgType
    app_keys: int
    seq: int
    payload_len: int


def pack_header(msg_type: MsgType, seq: int, payload_len: int, app_keys: int = 0) -> bytes:
    """The 20-byte frame header."""
    if not 0 <= app_keys <= MAX_APP_KEYS:
        raise FrameError(f"app_keys {app_keys} outside 0..{MAX_APP_KEYS}")
    return HEADER.pack(MAGIC, FRAMING_VERSION, int(msg_type), app_keys, seq, payload_len)


def parse_header(data: bytes, max_payload: int = DEFAULT_MAX_PAYLOAD) -> FrameHeader:
    """Validate a frame header; rejects oversized lengths before any payload is read."""
    if len(data) != HEADER_SIZE:
        raise FrameError(f"truncated frame header ({len(data)} of {HEADER_SIZE} bytes)")
    magic, version, msg_type, app_keys, seq, length = HEADER.unpack(data)
    if magic != MAGIC:
        raise FrameError("bad frame magic (not a cvqkd channel peer?)")
    if version not in SUPPORTED_FRAMING_VERSIONS:
        raise FrameError(f"unsupported framing version {version}")
    if msg_type not in _MSG_TYPES:
        raise FrameError(f"unknown message type {msg_type}")
    if app_keys > MAX_APP_KEYS:
        raise FrameError(f"app_keys {app_keys} exceeds {MAX_APP_KEYS}")
    if length > max_payload:
        raise FrameError(f"frame payload of {length} bytes exceeds the limit of {max_payload}")
    return FrameHeader(version, MsgType(msg_type), app_keys, seq, length)


def split_frame(
    data: bytes, max_payload: int = DEFAULT_MAX_PAYLOAD
) -> tuple[FrameHeader, bytes, bytes]:
    """Split one complete frame held in memory into (header, payload, tag)."""
    header = parse_header(bytes(data[:HEADER_SIZE]), max_payload)
    expected = HEADER_SIZE + header.payload_len + TAG_SIZE
    if len(data) != expected:
        raise FrameError(f"frame of {len(data)} bytes, header announces {expected}")
    payload = bytes(data[HEADER_SIZE : HEADER_SIZE + header.payload_len])
    return header, payload, bytes(data[-TAG_SIZE:])


def _check_name(name: str) -> bytes:
    raw = name.encode("ascii", "replace")
    if not 1 <= len(raw) <= MAX_NAME or not all(c in b"abcdefghijklmnopqrstuvwxyz0123456789_"
                                                for c in raw):
        raise FrameError(f"invalid field name {name!r} (1-{MAX_NAME} chars of [a-z0-9_])")
    return raw


def _encode_array(arr: np.ndarray) -> bytes:
    code = _DTYPE_CODES.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None or arr.dtype.kind not in "uifc":
        raise FrameError(f"array dtype {arr.dtype} not in the channel's allow-list")
    if arr.ndim > MAX_NDIM or any(n >= 2**32 for n in arr.shape):
        raise FrameError(f"array shape {arr.shape} not encodable")
    le = np.ascontiguousarray(arr, dtype=DTYPES[code])
    head = struct.pack(f"<BB{arr.ndim}I", code, arr.ndim, *arr.shape)
    return head + le.tobytes()


def encode_payload(fields: Mapping[str, FieldValue]) -> bytes:
    """Serialise named fields; see the module docstring for the layout."""
    if len(fields) > MAX_FIELDS:
        raise FrameError(f"{len(fields)} fields exceed the limit of {MAX_FIELDS}")
    parts = [_U16.pack(len(fields))]
    for name, value in fields.items():
        raw = _check_name(name)
        parts.append(bytes([len(raw)]) + raw)
        if isinstance(value, bool | np.bool_):
            raise FrameError(f"field {name}: send booleans as int")
        if isinstance(value, int | np.integer):
            parts.append(bytes([KIND_INT]) + _INT.pack(int(value)))
        elif isinstance(value, float | np.floating):
            parts.append(bytes([KIND_FLOAT]) + _FLOAT.pack(float(value)))
        elif isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
            parts.append(bytes([KIND_BYTES]) + _U32.pack(len(data)) + data)
        elif isinstance(value, str):
            data = value.encode("utf-8")
            parts.append(bytes([KIND_STR]) + _U32.pack(len(data)) + data)
        elif isinstance(value, np.ndarray):
            parts.append(bytes([KIND_ARRAY]) + _encode_array(value))
        else:
            raise FrameError(f"field {name}: unsupported type {type(value).__name__}")
    return b"".join(parts)


class _Reader:
    """Bounds-checked cursor over a payload."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n > len(self.data) - self.pos:
            raise FrameError(f"payload truncated in {what} (needs {n} bytes, "
                             f"{len(self.data) - self.pos} left)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]


def _decode_array(r: _Reader, name: str) -> np.ndarray:
    code = r.u8(f"{name} dtype")
    dtype = DTYPES.get(code)
    if dtype is None:
        raise FrameError(f"field {name}: dtype code {code} not allowed")
    ndim = r.u8(f"{name} ndim")
    if ndim > MAX_NDIM:
        raise FrameError(f"field {name}: {ndim} dimensions exceed {MAX_NDIM}")
    shape = struct.unpack(f"<{ndim}I", r.take(4 * ndim, f"{name} shape"))
    count = 1
    for n in shape:
        count *= n
    nbytes = count * dtype.itemsize
    # The data must already be present: this check precedes any allocation.
    raw = r.take(nbytes, f"{name} data")
    arr = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)
    return arr


def decode_payload(data: bytes) -> dict[str, FieldValue]:
    """Parse a payload into {name: value}; arrays are read-only little-endian views."""
    r = _Reader(bytes(data))
    (n_fields,) = _U16.unpack(r.take(2, "field count"))
    if n_fields > MAX_FIELDS:
        raise FrameError(f"{n_fields} fields exceed the limit of {MAX_FIELDS}")
    fields: dict[str, FieldValue] = {}
    for _ in range(n_fields):
        raw_name = r.take(r.u8("field name length"), "field name")
        try:
            name = raw_name.decode("ascii")
            _check_name(name)
        except UnicodeDecodeError as exc:
            raise FrameError("field name is not ASCII") from exc
        if name in fields:
            raise FrameError(f"duplicate field {name}")
        kind = r.u8(f"{name} kind")
        if kind == KIND_INT:
            fields[name] = _INT.unpack(r.take(8, name))[0]
        elif kind == KIND_FLOAT:
            fields[name] = _FLOAT.unpack(r.take(8, name))[0]
        elif kind in (KIND_BYTES, KIND_STR):
            (length,) = _U32.unpack(r.take(4, f"{name} length"))
            value = r.take(length, name)
            if kind == KIND_STR:
                try:
                    fields[name] = value.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise FrameError(f"field {name}: invalid UTF-8") from exc
            else:
                fields[name] = value
        elif kind == KIND_ARRAY:
            fields[name] = _decode_array(r, name)
        else:
            raise FrameError(f"field {name}: unknown kind {kind}")
    if r.pos != len(r.data):
        raise FrameError(f"{len(r.data) - r.pos} trailing bytes after the last field")
    return fields
