"""Binary framing: round trips, allow-list, bounds, and a hypothesis fuzz of malformed frames."""

from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.framing import (
    DTYPES,
    HEADER_SIZE,
    TAG_SIZE,
    FrameError,
    MsgType,
    decode_payload,
    encode_payload,
    pack_header,
    parse_header,
    split_frame,
)


def _frame(fields, msg_type=MsgType.DATA, seq=5, app_keys=0) -> bytes:
    payload = encode_payload(fields)
    return pack_header(msg_type, seq, len(payload), app_keys) + payload + bytes(TAG_SIZE)


def test_round_trip_all_kinds_and_dtypes():
    rng = np.random.default_rng(1)
    fields = {"n": -(2**63), "x": 0.125, "raw": b"\x00\xff", "s": "μ-QKD", "empty": b""}
    for code, dt in DTYPES.items():
        fields[f"a{code}"] = (rng.standard_normal((3, 4)) * 100).astype(dt)
    fields["scalar"] = np.array(7, dtype=np.int32)
    fields["zero"] = np.zeros((0, 5), dtype=np.float64)
    out = decode_payload(encode_payload(fields))
    assert out.keys() == fields.keys()
    for name, value in fields.items():
        if isinstance(value, np.ndarray):
            assert out[name].dtype == value.dtype.newbyteorder("<")
            assert out[name].shape == value.shape
            np.testing.assert_array_equal(out[name], value)
        else:
            assert out[name] == value


def test_arrays_are_little_endian_raw_buffers():
    arr = np.array([1, 2], dtype=">u4")  # big-endian input is converted
    payload = encode_payload({"a": arr})
    # n_fields, name_len, name, kind, dtype code 5 (u4), ndim 1, shape 2, data
    assert payload == struct.pack("<HB1sBBBI", 1, 1, b"a", 5, 5, 1, 2) + struct.pack("<2I", 1, 2)
    np.testing.assert_array_equal(decode_payload(payload)["a"], [1, 2])


@pytest.mark.parametrize("value", [np.array([True]), np.array(["x"]), np.array([object()]),
                                   True, [1, 2], None])
def test_encode_rejects_types_outside_allow_list(value):
    with pytest.raises(FrameError):
        encode_payload({"v": value})


@pytest.mark.parametrize("name", ["", "Upper", "a-b", "x" * 33])
def test_encode_rejects_bad_names(name):
    with pytest.raises(FrameError):
        encode_payload({name: 1})


def test_header_checks():
    good = pack_header(MsgType.SIFT, 3, 10, app_keys=2)
    h = parse_header(good)
    assert (h.msg_type, h.seq, h.payload_len, h.app_keys) == (MsgType.SIFT, 3, 10, 2)
    with pytest.raises(FrameError, match="magic"):
        parse_header(b"XXXX" + good[4:])
    with pytest.raises(FrameError, match="version"):
        parse_header(good[:4] + b"\x09" + good[5:])
    with pytest.raises(FrameError, match="message type"):
        parse_header(good[:5] + b"\xee" + good[6:])
    with pytest.raises(FrameError, match="truncated"):
        parse_header(good[:-1])
    with pytest.raises(FrameError, match="exceeds the limit"):
        parse_header(pack_header(MsgType.DATA, 0, 1001), max_payload=1000)


def test_length_field_lies_rejected_without_allocation():
    # An array header announcing 2^32-1 x 2^32-1 float64 values in a 40-byte payload.
    lie = struct.pack("<HB1sBBB2I", 1, 1, b"a", 5, 10, 2, 2**32 - 1, 2**32 - 1)
    tracemalloc.start()
    with pytest.raises(FrameError, match="truncated"):
        decode_payload(lie)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1_000_000
    # A bytes field announcing 4 GiB.
    with pytest.raises(FrameError, match="truncated"):
        decode_payload(struct.pack("<HB1sBI", 1, 1, b"b", 3, 2**32 - 1))
    # Frame-level: the header announces more than is present.
    frame = _frame({"x": 1})
    with pytest.raises(FrameError, match="announces"):
        split_frame(frame[:-3])


def test_duplicate_and_trailing_rejected():
    one = encode_payload({"a": 1})
    dup = struct.pack("<H", 2) + one[2:] + one[2:]
    with pytest.raises(FrameError, match="duplicate"):
        decode_payload(dup)
    with pytest.raises(FrameError, match="trailing"):
        decode_payload(one + b"\x00")


_VALID = [
    _frame({"n": 3, "bits": np.arange(40, dtype=np.uint8), "x": 1.5, "s": "ok"}),
    _frame({"m": np.ones((2, 3), dtype=np.complex64), "b": b"\x01" * 9}, MsgType.SYNDROME),
    _frame({}, MsgType.CLOSE, seq=2**64 - 1),
]
_LIMIT = 1 << 16


def _parse_or_frame_error(data: bytes) -> None:
    """Parsing must either succeed or raise FrameError, with bounded allocation."""
    tracemalloc.start()
    try:
        _header, payload, _tag = split_frame(data, max_payload=_LIMIT)
        decode_payload(payload)
    except FrameError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 4 * len(data) + 200_000


_FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data):
    _parse_or_frame_error(data)
    _parse_or_frame_error(_VALID[0][:HEADER_SIZE] + data)


@_FUZZ
@given(st.sampled_from(_VALID), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                         min_size=1, max_size=8))
def test_fuzz_mutated_valid_frames(frame, edits):
    data = bytearray(frame)
    for pos, byte in edits:
        data[pos % len(data)] = byte
    _parse_or_frame_error(bytes(data))


@_FUZZ
@given(st.sampled_from(_VALID), st.integers(0, 10**6))
def test_fuzz_truncations(frame, cut):
    data = frame[: cut % len(frame)]
    with pytest.raises(FrameError):
        split_frame(data, max_payload=_LIMIT)


@_FUZZ
@given(st.sampled_from(_VALID), st.integers(0, 2**32 - 1))
def test_fuzz_length_field_lies(frame, length):
    data = frame[:16] + struct.pack("<I", length) + frame[20:]
    _parse_or_frame_error(data)
    if length != len(frame) - HEADER_SIZE - TAG_SIZE:
        with pytest.raises(FrameError):
            split_frame(data, max_payload=2**32)


@_FUZZ
@given(st.binary(min_size=2, max_size=300))
def test_fuzz_payload_decoder(data):
    tracemalloc.start()
    try:
        decode_payload(data)
    except FrameError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 200_000
