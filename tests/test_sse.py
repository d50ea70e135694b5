"""The SSE parser on bytes: no network, every split and line ending."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.core.errors import ProtocolError
from harness.core.sse import SSEDecoder
from harness.core.stream_events import (
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    MessageDelta,
    MessageStart,
    MessageStop,
    Ping,
    StreamError,
    Usage,
    iter_stream_events,
    parse_event,
)

TRANSCRIPT = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"msg_1","model":"m","usage":'
    b'{"input_tokens":9,"output_tokens":1,"cache_read_input_tokens":4}}}\n\n'
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}\n\n'
    b": a comment line\n"
    b"event: ping\ndata: {}\n\n"
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hm"}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"s1"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"f"}}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"a\\""}}\n\n'
    b'event: brand_new_event\ndata: {"type":"brand_new_event"}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"h\xc3\xa9"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n'
    b"event: message_delta\n"
    b'data: {"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":42}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)

EXPECTED = [
    MessageStart("msg_1", "m", Usage(9, 1, None, 4)),
    ContentBlockStart(0, "thinking"),
    Ping(),
    ContentBlockDelta(0, "thinking_delta", "hm"),
    ContentBlockDelta(0, "signature_delta", "s1"),
    ContentBlockStop(0),
    ContentBlockStart(1, "tool_use"),
    ContentBlockDelta(1, "input_json_delta", '{"a"'),
    ContentBlockDelta(1, "text_delta", "hé"),
    ContentBlockStop(1),
    MessageDelta("tool_use", Usage(None, 42, None, None)),
    MessageStop(),
]


def test_every_event_type_is_typed_and_unknown_ones_are_skipped() -> None:
    assert list(iter_stream_events([TRANSCRIPT])) == EXPECTED


@pytest.mark.parametrize("ending", [b"\r\n", b"\r"])
def test_crlf_and_cr_line_endings(ending: bytes) -> None:
    assert list(iter_stream_events([TRANSCRIPT.replace(b"\n", ending)])) == EXPECTED


def test_one_byte_at_a_time_including_a_split_crlf_and_utf8() -> None:
    data = TRANSCRIPT.replace(b"\n", b"\r\n")
    assert list(iter_stream_events(data[i : i + 1] for i in range(len(data)))) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(TRANSCRIPT)), max_size=30))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [TRANSCRIPT[a:b] for a, b in zip([0, *points], [*points, len(TRANSCRIPT)], strict=True)]
    assert list(iter_stream_events(chunks)) == EXPECTED


def test_multi_line_data_is_joined_with_newlines_and_fields_without_space() -> None:
    events = SSEDecoder().feed(b"event:x\ndata:line one\ndata: line two\nid: 7\n\n")
    assert len(events) == 1
    assert (events[0].event, events[0].data, events[0].id) == ("x", "line one\nline two", "7")


def test_mid_stream_error_event() -> None:
    data = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    assert list(iter_stream_events([data])) == [StreamError("overloaded_error", "Overloaded")]


@pytest.mark.parametrize(
    "data",
    [
        b"event: content_block_delta\ndata: {not json\n\n",
        b"event: content_block_delta\ndata: [1, 2]\n\n",
        b'event: content_block_delta\ndata: {"index": 0}\n\n',
        b'event: message_start\ndata: {"type": "message_start"}\n\n',
        b"event: content_block_delta\ndata: \xff\xfe\n\n",
    ],
)
def test_malformed_events_raise_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        list(iter_stream_events([data]))
    assert info.value.outcome == "protocol"


def test_a_line_without_end_is_refused_past_the_limit() -> None:
    decoder = SSEDecoder(max_line_bytes=1024)
    with pytest.raises(ProtocolError):
        decoder.feed(b"data: " + b"x" * 2000)


def test_half_an_event_at_the_end_is_dropped() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: message_stop\ndata: {}") == []
    assert decoder.flush() == []


def test_unknown_delta_type_has_empty_payload() -> None:
    sse = SSEDecoder().feed(
        b'event: content_block_delta\ndata: {"index":0,"delta":{"type":"future_delta","x":"y"}}\n\n'
    )[0]
    assert parse_event(sse) == ContentBlockDelta(0, "future_delta", "")
