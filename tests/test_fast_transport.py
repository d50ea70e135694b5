"""``--transport fast`` against the SDK path: same scripted streams, same records, same faults.

Also the lean SSE decoder (``sse.StreamEventDecoder``) against the full one on bytes:
for any split of any stream it must give the events ``SSEDecoder`` + ``parse_event`` give.
"""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from locust import constant, task

from harness import AnthropicUser, CallRecord, HarnessOptions
from harness.core.errors import ProtocolError
from harness.core.stream_decoder import StreamEventDecoder
from harness.core.stream_events import iter_stream_events

from .locust_runs import run_local
from .test_sse import EXPECTED, TRANSCRIPT


def scenario(model: str, *, stream: bool = True) -> type[AnthropicUser]:
    return type(
        f"F_{model}",
        (AnthropicUser,),
        {"model": model, "prompt": "hi", "max_tokens": 64, "stream": stream, "__module__": __name__},
    )


def lean(chunks: list[bytes]) -> list[object]:
    decoder = StreamEventDecoder()
    out: list[object] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out + decoder.flush()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# -- the lean decoder ------------------------------------------------------------------------


@given(st.lists(st.integers(min_value=0), max_size=12))
def test_lean_decoder_equals_the_full_parser_for_any_split(cuts: list[int]) -> None:
    for data in (TRANSCRIPT, TRANSCRIPT.replace(b"\n", b"\r\n"), TRANSCRIPT.replace(b"\n", b"\r")):
        assert lean(split(data, cuts)) == EXPECTED


# The API's own compact framing, which the lean decoder matches whole, beside near misses it must not.
COMPACT_TRANSCRIPT = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"x","usage":'
    b'{"input_tokens":3,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
    b'"content_block":{"type":"text","text":""}}\n\n'
    b'event: ping\ndata: {"type":"ping"}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":"Hi"}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":" there"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":1,'
    b'"content_block":{"type":"text","text":"pre"}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,'
    b'"delta":{"type":"text_delta","text":"!"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":1, "x":1}\n\n'
    b"event: ping\ndata: {}\n\n"
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
    b'"usage":{"output_tokens":3}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


@given(st.lists(st.integers(min_value=0), max_size=12))
def test_lean_decoder_equals_the_full_parser_on_compact_framing(cuts: list[int]) -> None:
    expected = list(iter_stream_events([COMPACT_TRANSCRIPT]))
    assert len(expected) == 12
    assert lean(split(COMPACT_TRANSCRIPT, cuts)) == expected


def _delta_event(index: int, kind: str, payload: str, *, compact: bool) -> bytes:
    field = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}[kind]
    doc = {"type": "content_block_delta", "index": index, "delta": {"type": kind, field: payload}}
    data = json.dumps(doc, separators=(",", ":") if compact else None, ensure_ascii=False)
    return f"event: content_block_delta\ndata: {data}\n\n".encode()


@settings(max_examples=200)
@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(["text_delta", "thinking_delta", "input_json_delta"]),
    st.text(),
    st.booleans(),
    st.lists(st.integers(min_value=0), max_size=4),
)
def test_the_compact_delta_shortcut_gives_what_json_gives(
    index: int, kind: str, payload: str, compact: bool, cuts: list[int]
) -> None:
    data = _delta_event(index, kind, payload, compact=compact)
    assert lean(split(data, cuts)) == list(iter_stream_events([data]))


@settings(max_examples=100)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=3),
            st.sampled_from(["text_delta", "thinking_delta", "input_json_delta"]),
            st.text(max_size=8),
            st.booleans(),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_deltas_read_one_event_at_a_time_give_what_json_gives(deltas: list[tuple[int, str, str, bool]]) -> None:
    # A server writes one event per chunk, so a read is mostly exactly one delta: the case
    # the decoder answers from the previous delta's prefix without its regex.
    events = [_delta_event(index, kind, payload, compact=compact) for index, kind, payload, compact in deltas]
    assert lean(events) == list(iter_stream_events([b"".join(events)]))


def test_repeat_matches_exactly_one_more_delta_of_the_block_before() -> None:
    decoder = StreamEventDecoder()
    assert decoder.repeat is None
    decoder.feed(_delta_event(2, "thinking_delta", "a", compact=True))
    repeat = decoder.repeat
    assert repeat is not None and decoder.delta_type == "thinking_delta"
    assert repeat(_delta_event(2, "thinking_delta", "next one", compact=True)) is not None
    # Whether a payload is valid UTF-8 is the caller's to check (chunk.isascii(), or decoding it).
    assert repeat(bytearray(_delta_event(2, "thinking_delta", "é", compact=True))) is not None
    for other in [
        _delta_event(2, "thinking_delta", "", compact=True),  # empty: times nothing, goes the long way
        _delta_event(2, "thinking_delta", 'a "quote"', compact=True),
        _delta_event(3, "thinking_delta", "a", compact=True),
        _delta_event(2, "text_delta", "a", compact=True),
        _delta_event(2, "thinking_delta", "a", compact=False),
        _delta_event(2, "thinking_delta", "a", compact=True) * 2,
        _delta_event(2, "thinking_delta", "a", compact=True)[:-1],
    ]:
        assert repeat(other) is None, other
    decoder.feed(b"event: ping\ndata: {}\n\n")
    assert decoder.repeat is None  # only straight after a delta


def test_a_broken_delta_after_a_run_of_good_ones_is_a_protocol_error() -> None:
    good = _delta_event(0, "text_delta", "ok", compact=True)
    decoder = StreamEventDecoder()
    assert len(decoder.feed(good) + decoder.feed(good)) == 2
    with pytest.raises(ProtocolError):
        decoder.feed(good.replace(b"ok", b"\xff"))


@pytest.mark.parametrize(
    "data",
    [
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta"\n\n',
        b"event: message_start\ndata: {not json\n\n",
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"\xff"}}\n\n',
        b"event: ping\ndata: \xff\n",  # a half-built event at the end of the stream is still checked
    ],
)
def test_broken_events_are_protocol_errors_on_both_paths(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        list(iter_stream_events([data]))
    with pytest.raises(ProtocolError):
        lean([data])


# -- both transports against the scripted server ---------------------------------------------------

TIMING = {"t_scheduled", "t_start", "t_message_start", "t_first_token", "t_first_text", "t_last_token", "t_end"}
DURATIONS = {"queue_s", "ttft_s", "first_text_s", "completion_s", "tpot_s", "output_tps"}
PER_CALL = {"call_id", "timestamp", "user_id", "error_message"}


def first_record(url: str, model: str, transport: str, *, stream: bool = True, timeout: float = 60.0) -> CallRecord:
    # Until a call has ended: one that the run's stop cut (it began before the first one ended,
    # or its end waited out the stop on a loaded machine) is cancelled, and says nothing here.
    run = run_local(
        [scenario(model, stream=stream)],
        url,
        seconds=30,
        options=HarnessOptions(transport=transport, request_timeout=timeout),
        until=lambda run: any(r.outcome != "cancelled" for r in run.records),
    )
    finished = [r for r in run.records if r.outcome != "cancelled"]
    assert finished, run.records
    return finished[0]


@pytest.mark.parametrize(
    ("model", "stream"),
    [
        ("timed", True),
        ("thinking", True),
        ("compact", True),
        ("no_usage", True),
        ("whole", False),
        ("api_headers", True),
    ],
)
def test_both_transports_give_the_same_record_field_by_field(scripted_url: str, model: str, stream: bool) -> None:
    sdk = first_record(scripted_url, model, "sdk", stream=stream).to_dict()
    fast = first_record(scripted_url, model, "fast", stream=stream).to_dict()
    if model == "api_headers":  # the headers really were read, whatever their case
        assert fast["ratelimit"]["requests_limit"] == 50 and fast["ratelimit"]["output_tokens_remaining"] == 7999
        assert (fast["retry_after_s"], fast["request_id"]) == (2.0, "req_api_headers")
    for name in sdk.keys() - TIMING - DURATIONS - PER_CALL - {"itl_s"}:
        assert fast[name] == sdk[name], name
    for name in TIMING | DURATIONS:
        assert (fast[name] is None) == (sdk[name] is None), name
    for name in ("ttft_s", "first_text_s", "completion_s"):
        if sdk[name] is not None:
            # The scripted steps are 100-200 ms; a different definition would be off by a whole step.
            assert fast[name] == pytest.approx(sdk[name], abs=0.06), name
    assert len(fast["itl_s"]) == len(sdk["itl_s"])
    if sdk["itl_s"]:
        mean = sum(sdk["itl_s"]) / len(sdk["itl_s"])
        assert sum(fast["itl_s"]) / len(fast["itl_s"]) == pytest.approx(mean, abs=0.01)


@pytest.mark.parametrize(
    "model",
    ["http_429", "http_529", "http_500", "midstream", "drop", "malformed", "bad_utf8", "no_stop", "out_of_order"],
)
def test_both_transports_classify_every_fault_the_same_way(scripted_url: str, model: str) -> None:
    sdk = first_record(scripted_url, model, "sdk")
    fast = first_record(scripted_url, model, "fast")
    assert fast.outcome == sdk.outcome != "ok"
    assert (fast.http_status, fast.request_id, fast.retry_after_s) == (
        sdk.http_status,
        sdk.request_id,
        sdk.retry_after_s,
    )
    if sdk.outcome.startswith(("http_", "stream_")):
        assert fast.error_message == sdk.error_message


def test_a_stalled_stream_is_a_timeout_and_a_closed_port_a_connection_failure(scripted_url: str) -> None:
    stalled = first_record(scripted_url, "stall", "fast", timeout=0.3)
    assert stalled.outcome == "timeout" and 0.3 <= stalled.completion_s < 1.5
    refused = first_record("http://127.0.0.1:9", "timed", "fast")
    assert refused.outcome == "connection"


def test_a_pooled_connection_closed_or_dirtied_by_the_server_is_not_reused(scripted_url: str) -> None:
    # The server closes (or writes stray bytes on) each kept-alive connection after its
    # response; the pause lets that reach the client before the next call takes a
    # connection from the pool. Reusing one would fail the call as a connection error.
    class Alternating(AnthropicUser):
        model, prompt, max_tokens = "closing", "hi", 16
        wait_time = constant(0.05)
        models = itertools.cycle(["closing", "stray", "timed"])

        @task
        def call_once(self) -> None:
            self.messages(model=next(self.models))

    run = run_local([Alternating], scripted_url, users=1, seconds=1.5, options=HarnessOptions(transport="fast"))
    done = [r for r in run.records if r.outcome != "cancelled"]
    assert {r.model for r in done} == {"closing", "stray", "timed"}
    assert [(r.model, r.outcome, r.error_message) for r in done if not r.ok] == []


def test_a_stopped_run_cancels_fast_calls_in_flight(scripted_url: str) -> None:
    run = run_local([scenario("stall")], scripted_url, users=3, seconds=0.5, options=HarnessOptions(transport="fast"))
    assert [r.outcome for r in run.records] == ["cancelled"] * 3
