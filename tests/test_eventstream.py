"""The AWS event-stream decoder on bytes: every split, every header type, broken CRCs, and botocore's verdict."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import Any

import pytest
from botocore.eventstream import EventStreamBuffer
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.core.errors import ProtocolError
from harness.core.eventstream import BedrockEventDecoder, EventStreamDecoder, Frame, bedrock_event
from harness.core.stream_events import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    MessageDelta,
    MessageStart,
    MessageStop,
    StreamError,
    Usage,
    iter_stream_events,
)
from harness.simulator.eventstream import chunk_frame, encode_frame, exception_frame, string_headers

# ---- an encoder of every header type, independent of the simulator's (which writes strings only) ----

Header = tuple[str, int, Any]  # name, type, value


def typed_headers(headers: list[Header]) -> bytes:
    out = b""
    for name, kind, value in headers:
        raw = name.encode()
        out += bytes((len(raw),)) + raw + bytes((kind,))
        if kind in (0, 1):
            pass
        elif kind in (2, 3, 4, 5, 8):
            out += struct.pack({2: ">b", 3: ">h", 4: ">i", 5: ">q", 8: ">q"}[kind], value)
        elif kind == 6:
            out += struct.pack(">H", len(value)) + value
        elif kind == 7:
            out += struct.pack(">H", len(value.encode())) + value.encode()
        else:
            out += value  # 9: 16 bytes
    return out


def expected_value(kind: int, value: Any) -> Any:
    return {0: True, 1: False}.get(kind, value)


names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8).filter(
    lambda s: len(s.encode()) < 256
)
header_value = st.one_of(
    st.tuples(st.just(0), st.none()),
    st.tuples(st.just(1), st.none()),
    st.tuples(st.just(2), st.integers(-(2**7), 2**7 - 1)),
    st.tuples(st.just(3), st.integers(-(2**15), 2**15 - 1)),
    st.tuples(st.just(4), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.just(5), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just(6), st.binary(max_size=40)),
    st.tuples(st.just(7), st.text(max_size=40)),
    st.tuples(st.just(8), st.integers(0, 2**62)),
    st.tuples(st.just(9), st.binary(min_size=16, max_size=16)),
)
frame_spec = st.tuples(
    st.dictionaries(names, header_value, max_size=5).map(lambda d: [(n, k, v) for n, (k, v) in d.items()]),
    st.binary(max_size=300),
)


def wire(specs: list[tuple[list[Header], bytes]]) -> bytes:
    return b"".join(encode_frame(typed_headers(h), p) for h, p in specs)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def decode_all(chunks: list[bytes]) -> list[Frame]:
    decoder = EventStreamDecoder()
    frames = [f for c in chunks for f in decoder.feed(c)]
    decoder.end()
    return frames


def as_tuples(frames: list[Frame]) -> list[tuple[dict[str, Any], bytes]]:
    return [(dict(f.headers), f.payload) for f in frames]


def botocore_frames(data: bytes) -> list[tuple[dict[str, Any], bytes]]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(m.headers, m.payload) for m in buffer]


# ---- frames ----


@settings(max_examples=200, deadline=None)
@given(st.lists(frame_spec, min_size=1, max_size=6), st.lists(st.integers(0, 10_000), max_size=12))
def test_any_split_gives_the_frames_botocore_reads(specs: list[tuple[list[Header], bytes]], cuts: list[int]) -> None:
    data = wire(specs)
    frames = as_tuples(decode_all(split(data, cuts)))
    assert frames == [({n: expected_value(k, v) for n, k, v in h}, p) for h, p in specs]
    assert frames == botocore_frames(data)


def test_byte_by_byte_and_whole_agree() -> None:
    data = chunk_frame(b'{"type":"ping"}', 3) + exception_frame("throttlingException", "slow down") * 2
    whole = as_tuples(decode_all([data]))
    assert as_tuples(decode_all([data[i : i + 1] for i in range(len(data))])) == whole
    assert len(whole) == 3 and whole == botocore_frames(data)


def test_header_blocks_are_shared_and_read_only() -> None:
    frames = decode_all([chunk_frame(b"{}") * 2])
    assert frames[0].headers is frames[1].headers
    with pytest.raises(TypeError):
        frames[0].headers[":event-type"] = "x"  # type: ignore[index]


def test_pending_counts_a_half_frame_and_end_refuses_it() -> None:
    data = chunk_frame(b'{"type":"ping"}')
    decoder = EventStreamDecoder()
    assert decoder.feed(data[:-5]) == [] and decoder.pending == len(data) - 5
    with pytest.raises(ProtocolError, match="ended inside a frame"):
        decoder.end()
    assert len(decoder.feed(data[-5:])) == 1 and decoder.pending == 0
    decoder.end()


@pytest.mark.parametrize(
    ("offset", "what"),
    [(0, "prelude CRC"), (9, "prelude CRC"), (20, "message CRC"), (-1, "message CRC"), (-6, "message CRC")],
)
def test_a_flipped_byte_is_a_crc_mismatch(offset: int, what: str) -> None:
    data = bytearray(chunk_frame(b'{"type":"message_stop"}'))
    data[offset] ^= 0x40
    for chunks in ([bytes(data)], [bytes(data[:7]), bytes(data[7:])]):
        with pytest.raises(ProtocolError, match=what) as info:
            decode_all(chunks)
        assert info.value.outcome == "protocol"


def test_a_good_frame_after_a_bad_one_is_not_reached() -> None:
    bad = bytearray(chunk_frame(b"{}"))
    bad[-1] ^= 1
    decoder = EventStreamDecoder()
    with pytest.raises(ProtocolError):
        decoder.feed(chunk_frame(b"{}") + bytes(bad))


def frame_with(total: int, headers_len: int, rest: bytes = b"") -> bytes:
    prelude = struct.pack(">II", total, headers_len)
    return prelude + struct.pack(">I", zlib.crc32(prelude)) + rest


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (frame_with(15, 0), "cannot hold"),
        (frame_with(40, 30), "cannot hold"),
        (frame_with(200_000, 150_000), "size limits"),
        (frame_with(30 * 1024 * 1024, 0), "size limits"),
        (encode_frame(b"\x01a\x63", b""), "unknown type 99"),
        (encode_frame(b"\x01a\x07\x00\x09ab", b""), "truncated"),
        (encode_frame(b"\x05ab", b""), "truncated"),
        (encode_frame(b"\x01a\x00\x01a\x01", b""), "repeated"),
        (encode_frame(b"\x01\xff\x00", b""), "UTF-8"),
        (encode_frame(b"\x01a\x07\x00\x01\xff", b""), "UTF-8"),
    ],
)
def test_malformed_frames(data: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        EventStreamDecoder().feed(data)


# ---- Bedrock frames ----

EVENTS: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "model": "claude-haiku-4-5",
            "usage": {"input_tokens": 9, "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    *(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}
        for t in ["Hel", "lo", " é", '"q"\n']
    ),
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 4}},
    {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 9, "outputTokenCount": 4}},
]
TYPED = [
    MessageStart("msg_1", "claude-haiku-4-5", Usage(9, 1)),
    ContentBlockStart(0, "text"),
    ContentBlockDelta(0, "text_delta", "Hel"),
    ContentBlockDelta(0, "text_delta", "lo"),
    ContentBlockDelta(0, "text_delta", " é"),
    ContentBlockDelta(0, "text_delta", '"q"\n'),
    ContentBlockStop(0),
    MessageDelta("end_turn", Usage(output_tokens=4)),
    MessageStop(),
]


def compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def bedrock_stream(events: list[dict[str, Any]]) -> bytes:
    return b"".join(chunk_frame(compact(e), i) for i, e in enumerate(events))


def test_chunk_frames_give_the_event_json() -> None:
    frames = decode_all([bedrock_stream(EVENTS)])
    assert [bedrock_event(f) for f in frames] == [compact(e) for e in EVENTS]


def test_chunk_payload_in_any_json_form() -> None:
    event = compact(EVENTS[2])
    for payload in (
        b'{"p":"xyz","bytes":"%s"}' % base64.b64encode(event),
        b'{ "bytes" : "%s" }' % base64.b64encode(event),
    ):
        assert bedrock_event(Frame(decode_all([chunk_frame(b"{}")])[0].headers, payload)) == event


@pytest.mark.parametrize(
    "payload",
    [b'{"bytes":"abc"}', b'{"bytes":"ab$="}', b'{"bytes":42}', b"[1]", b"not json", b'{"bytes":"\xc3\xa9"}'],
)
def test_bad_chunk_payloads_are_protocol_errors(payload: bytes) -> None:
    headers = decode_all([chunk_frame(b"{}")])[0].headers
    with pytest.raises(ProtocolError):
        bedrock_event(Frame(headers, payload))


def test_exception_and_error_frames_are_typed_stream_errors() -> None:
    error_headers = string_headers(
        [(":message-type", "error"), (":error-code", "InternalFailure"), (":error-message", "boom")]
    )
    data = (
        exception_frame("modelStreamErrorException", "Model overloaded", originalStatusCode=529)
        + exception_frame("throttlingException", "Too many requests")
        + encode_frame(error_headers, b"")
        + encode_frame(string_headers([(":message-type", "exception"), (":exception-type", "x")]), b"raw text")
    )
    assert [bedrock_event(f) for f in decode_all([data])] == [
        StreamError("modelStreamErrorException", "Model overloaded"),
        StreamError("throttlingException", "Too many requests"),
        StreamError("InternalFailure", "boom"),
        StreamError("x", "raw text"),
    ]


def test_other_frames() -> None:
    initial = encode_frame(string_headers([(":message-type", "event"), (":event-type", "initial-response")]), b"{}")
    assert bedrock_event(decode_all([initial])[0]) is None
    odd = encode_frame(string_headers([(":message-type", "surprise")]), b"")
    with pytest.raises(ProtocolError, match="surprise"):
        bedrock_event(decode_all([odd])[0])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 10_000), max_size=15))
def test_bedrock_events_equal_the_sse_events_for_any_split(cuts: list[int]) -> None:
    sse = b"".join(b"event: %s\ndata: %s\n\n" % (e["type"].encode(), compact(e)) for e in EVENTS)
    assert list(iter_stream_events([sse])) == TYPED
    decoder = BedrockEventDecoder()
    events = [e for c in split(bedrock_stream(EVENTS), cuts) for e in decoder.feed(c)]
    decoder.end()
    assert events == TYPED


def test_non_compact_event_json_and_a_mid_stream_exception() -> None:
    pretty = json.dumps(EVENTS[2], indent=2).encode()
    reordered = b'{"index":0,"type":"content_block_stop"}'
    data = (
        chunk_frame(compact(EVENTS[0]))
        + chunk_frame(pretty)
        + chunk_frame(reordered)
        + chunk_frame(b'{"type":"brand_new_event"}')
        + exception_frame("throttlingException", "Too many tokens, please wait before trying again.")
    )
    assert BedrockEventDecoder().feed(data) == [
        TYPED[0],
        TYPED[2],
        ContentBlockStop(0),
        StreamError("throttlingException", "Too many tokens, please wait before trying again."),
    ]
    for bad in (b"[1]", b'{"no":"type"}', b"\xff"):
        with pytest.raises(ProtocolError):
            BedrockEventDecoder().feed(chunk_frame(bad))
