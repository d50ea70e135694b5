"""Trace files (harness/core/trace.py) and the prompts synthesised for their lines (harness/core/synth.py).

The sample traces of scenarios/data/ hold the same 40 calls in each format (make_traces.py), so
every format must read back the same offsets and lengths. Token counts are checked by the real
simulator's count_tokens endpoint through the anthropic SDK.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import anthropic
import pytest

from harness.core.errors import ConfigError
from harness.core.synth import BLOCK_TOKENS, USER_TOKENS, Calibration, TracePrompts
from harness.core.trace import ReplayOptions, TraceFormat, TraceLine, parse_window
from harness.core.trace_files import detect_format, load_trace
from harness.simulator import SimulatorProcess

DATA = Path(__file__).resolve().parent.parent / "scenarios" / "data"
SAMPLES = {
    TraceFormat.MOONCAKE: DATA / "trace_mooncake.jsonl",
    TraceFormat.AZURE: DATA / "trace_azure.csv",
    TraceFormat.BURSTGPT: DATA / "trace_burstgpt.csv",
    TraceFormat.HARNESS: DATA / "trace_harness.jsonl",
}
MODEL = "claude-haiku-4-5"


# -- reading ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(TraceFormat))
def test_each_sample_is_detected_and_reads_the_same_calls(fmt: TraceFormat) -> None:
    reference = load_trace(SAMPLES[TraceFormat.MOONCAKE])
    trace = load_trace(SAMPLES[fmt])
    assert detect_format(SAMPLES[fmt]) is fmt and trace.format is fmt
    assert len(trace.lines) == 40
    assert trace.lines[0].offset_s == 0.0
    offsets = [x.offset_s for x in trace.lines]
    assert offsets == sorted(offsets)
    assert offsets == pytest.approx([x.offset_s for x in reference.lines], abs=1e-6)
    assert trace.duration_s == pytest.approx(reference.duration_s)
    outputs = [x.output_tokens for x in trace.lines]
    expected_outputs = [x.output_tokens for x in reference.lines]
    if fmt is TraceFormat.BURSTGPT:
        expected_outputs[13] = 0  # the sample's failed call, as BurstGPT logs them
    assert outputs == expected_outputs
    if fmt is not TraceFormat.HARNESS:  # the harness sample rewrites a few lines (sessions, a request)
        assert [x.input_tokens for x in trace.lines] == [x.input_tokens for x in reference.lines]


def test_mooncake_lines_carry_hash_ids_and_millisecond_timestamps() -> None:
    first, second = load_trace(SAMPLES[TraceFormat.MOONCAKE]).lines[:2]
    assert first == TraceLine(line=1, offset_s=0.0, input_tokens=1285, output_tokens=28, hash_ids=(0, 1, 100))
    assert (second.line, second.offset_s, second.hash_ids) == (2, 0.236, (0, 1, 101, 102))


def test_azure_datetimes_are_sorted_and_the_sort_is_said() -> None:
    trace = load_trace(SAMPLES[TraceFormat.AZURE])
    assert trace.notes == (
        f"trace {SAMPLES[TraceFormat.AZURE]} was not in time order; sorted by offset (2 lines moved)",
    )
    # Rows 21 and 22 of the file (lines 22 and 23 with the header) were swapped: sorted back.
    assert [x.line for x in trace.lines[19:23]] == [21, 23, 22, 24]


def test_burstgpt_rebases_its_clock_and_keeps_model_and_log_type_as_source() -> None:
    trace = load_trace(SAMPLES[TraceFormat.BURSTGPT])
    first = trace.lines[0]
    assert (first.line, first.offset_s, first.input_tokens, first.model) == (2, 0.0, 1285, None)
    assert first.source == "GPT-4 / API log"
    assert {x.source.split(" / ")[0] for x in trace.lines if x.source} == {"ChatGPT", "GPT-4"}


def test_harness_format_sessions_requests_and_scenarios() -> None:
    trace = load_trace(SAMPLES[TraceFormat.HARNESS])
    sessions: dict[str, list[TraceLine]] = {}
    for x in trace.lines:
        if x.session_id:
            sessions.setdefault(x.session_id, []).append(x)
    assert sorted(sessions) == ["conv-a", "conv-b"]
    for turns in sessions.values():
        assert [t.turn for t in turns] == [1, 2] and {t.scenario for t in turns} == {"chat"}
        assert turns[1].input_tokens > turns[0].input_tokens + turns[0].output_tokens  # history counted
    (with_request,) = [x for x in trace.lines if x.request is not None]
    assert with_request.request is not None
    assert with_request.request["messages"][0]["content"] == "Name three prime numbers."


def test_session_turns_are_numbered_in_time_order_when_absent(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"offset_s": 2, "input_tokens": 50, "output_tokens": 5, "session_id": "s"}\n'
        '{"offset_s": 1, "input_tokens": 10, "output_tokens": 5, "session_id": "s"}\n'
        '{"offset_s": 1.5, "input_tokens": 10, "output_tokens": 5}\n'
    )
    trace = load_trace(path)
    assert [(x.line, x.turn) for x in trace.lines] == [(2, 1), (3, None), (1, 2)]
    assert trace.notes and "sorted by offset" in trace.notes[0]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (
            "m.jsonl",
            '{"timestamp": 0, "input_length": 5, "output_length": 1}\n{"timestamp": 1, oops}\n',
            "line 2 is not valid JSON",
        ),
        (
            "m.jsonl",
            '{"timestamp": 0, "input_length": 5, "output_length": 1}\n\n'
            '{"timestamp": 9, "input_length": "many", "output_length": 1}\n',
            "line 3: \"input_length\" is 'many'; write a whole number of 0 or more",
        ),
        (
            "m.jsonl",
            '{"timestamp": -5, "input_length": 5, "output_length": 1}\n',
            'line 1: "timestamp" is -5; write a number',
        ),
        ("m.jsonl", '{"timestamp": 0, "input_length": 5}\n', 'line 1: no "output_length"; every line needs one'),
        (
            "m.jsonl",
            '{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": "1,2"}\n',
            'line 1: "hash_ids" is 1,2; write a list of whole numbers',
        ),
        (
            "h.jsonl",
            '{"offset_s": 0, "input_tokens": 5, "output_tokens": 1, "offset": 3}\n',
            "line 1: unknown field(s) ['offset']",
        ),
        (
            "h.jsonl",
            '{"offset_s": 0, "input_tokens": 5, "output_tokens": 1, "turn": 1}\n',
            'line 1: "turn" without "session_id"',
        ),
        (
            "h.jsonl",
            '{"offset_s": 0, "input_tokens": 5, "output_tokens": 1, "request": {"messages": []}}\n',
            'line 1 "request" has no "messages" list',
        ),
        (
            "h.jsonl",
            '{"offset_s": 0, "input_tokens": 5, "output_tokens": 1, "session_id": "s", "turn": 2}\n'
            '{"offset_s": 1, "input_tokens": 5, "output_tokens": 1, "session_id": "s", "turn": 1}\n',
            "session 's' has turns [2, 1] in time order",
        ),
        (
            "a.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,10,2\nyesterday,10,2\n",
            "line 3: TIMESTAMP 'yesterday' is not a datetime",
        ),
        (
            "a.csv",
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,10\n",
            "line 2 has 2 columns, the header 3",
        ),
        (
            "b.csv",
            "Timestamp,Model,Request tokens,Response tokens\n1,ChatGPT,12.5,3\n",
            "line 2: \"Request tokens\" is '12.5'",
        ),
        ("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n\n", "has no calls (only a header or blank lines)"),
        ("e.jsonl", "\n  \n", "is empty"),
        ("x.csv", "time,prompt,answer\n1,2,3\n", "CSV columns ['answer', 'prompt', 'time'] are no known trace"),
        ("x.jsonl", '{"t": 0, "in": 5}\n', "JSONL with fields ['in', 't'] is no known trace"),
    ],
)
def test_bad_traces_name_the_file_line_and_fix(tmp_path: Path, name: str, content: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load_trace(path)
    message = str(info.value)
    assert expected in message and str(path) in message
    assert "\n" not in message


def test_a_forced_format_checks_its_columns_and_names(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"line 1: no column Timestamp, Request tokens, Response tokens for a burstgpt"
    ):
        load_trace(SAMPLES[TraceFormat.AZURE], "burstgpt")
    with pytest.raises(ConfigError, match="--replay-format 'sharegpt' is unknown; choose one of: mooncake, azure"):
        load_trace(SAMPLES[TraceFormat.AZURE], "sharegpt")
    with pytest.raises(ConfigError, match=r"trace .*nope\.csv not found"):
        load_trace(tmp_path / "nope.csv")
    # Forcing a format reads a file detection would also accept: the same lines.
    assert load_trace(SAMPLES[TraceFormat.MOONCAKE], TraceFormat.MOONCAKE) == load_trace(SAMPLES[TraceFormat.MOONCAKE])


# -- transforms -------------------------------------------------------------------------


def test_speed_divides_offsets_and_the_period() -> None:
    trace = load_trace(SAMPLES[TraceFormat.MOONCAKE])
    fast = ReplayOptions(speed=2.0).apply(trace)
    assert [x.offset_s for x in fast.lines] == pytest.approx([x.offset_s / 2 for x in trace.lines])
    assert fast.duration_s == pytest.approx(trace.duration_s / 2)
    assert fast.recorded_rate == pytest.approx(2 * trace.recorded_rate)
    with pytest.raises(ConfigError, match="--replay-speed 0 must be above 0"):
        ReplayOptions(speed=0)


def test_window_keeps_its_lines_rebased_to_its_start() -> None:
    trace = load_trace(SAMPLES[TraceFormat.MOONCAKE])
    cut = ReplayOptions(window=parse_window("2s:6s")).apply(trace)
    inside = [x for x in trace.lines if 2 <= x.offset_s < 6]
    assert 0 < len(cut.lines) == len(inside) < 40
    assert [x.line for x in cut.lines] == [x.line for x in inside]
    assert [x.offset_s for x in cut.lines] == pytest.approx([x.offset_s - 2 for x in inside])
    assert cut.duration_s == 4.0
    # The window is in trace time: with speed 2 the same lines come twice as fast.
    both = ReplayOptions(speed=2.0, window=(2.0, 6.0)).apply(trace)
    assert [x.offset_s for x in both.lines] == pytest.approx([(x.offset_s - 2) / 2 for x in inside])
    with pytest.raises(ConfigError, match="holds no line of trace"):
        trace.window(60.0, 90.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30s:5m", (30.0, 300.0)), (":90", (0.0, 90.0)), ("1m30s:", (90.0, None)), ("500ms:2s", (0.5, 2.0))],
)
def test_parse_window(text: str, expected: tuple[float, float | None]) -> None:
    assert parse_window(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("30s", "needs START:END"), ("5m:30s", "must end after it starts"), ("a:b", "is not a duration")],
)
def test_bad_windows(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_window(text)


def test_loop_repeats_the_trace_shifted_by_its_period() -> None:
    trace = load_trace(SAMPLES[TraceFormat.HARNESS])
    looped = list(islice(ReplayOptions(loop=True).schedule(trace), 80))  # two passes
    n, period = len(trace.lines), trace.duration_s
    # One period is the span plus a mean gap, so a pass's first call follows its last one.
    assert period == pytest.approx(trace.lines[-1].offset_s * n / (n - 1))
    for k in (0, 1):
        part = looped[k * n : (k + 1) * n]
        assert [x.loop for x in part] == [k] * n
        assert [x.offset_s for x in part] == pytest.approx([x.offset_s + k * period for x in trace.lines])
    offsets = [x.offset_s for x in looped]
    assert offsets == sorted(offsets)
    first_turns = [x for x in looped if x.session_id == "conv-a" and x.turn == 1]
    assert [x.session_key for x in first_turns] == [("conv-a", 0), ("conv-a", 1)]
    assert list(ReplayOptions().schedule(trace)) == list(trace.lines)


# -- synthesis --------------------------------------------------------------------------


def system_texts(body: dict[str, Any]) -> list[str]:
    return [block["text"] for block in body.get("system", [])]


def test_same_hash_ids_give_the_same_prefix_and_different_ids_different_text() -> None:
    lines = [
        TraceLine(1, 0.0, 3000, 10, hash_ids=(0, 1, 2, 3, 4, 5)),
        TraceLine(2, 1.0, 2500, 10, hash_ids=(0, 1, 2, 9, 10)),
        TraceLine(3, 2.0, 2500, 10, hash_ids=(7, 8, 11, 12, 13)),
    ]
    prompts = TracePrompts(lines)
    a, b, c = (system_texts(prompts.request(x)) for x in lines)
    assert a[:3] == b[:3]  # blocks 0, 1, 2: the same text
    assert a[3] != b[3] and not set(c) & set(a + b)  # other ids: other text
    assert len({*a, *b, *c}) == len(a) + len(b) + len(c) - 3
    assert [len(t) for t in a] == [BLOCK_TOKENS * 4] * 5 + [(3000 - 5 * BLOCK_TOKENS - USER_TOKENS) * 4]
    # A block cut short is a prefix of the same block in full.
    assert prompts.block_text(4, 100) == prompts.block_text(4, 512)[:400]
    # Other seeds, other text for the same id.
    assert TracePrompts(lines, seed=1).block_text(0, 512) != prompts.block_text(0, 512)


def test_cache_breakpoints_end_the_shared_prefixes() -> None:
    lines = [
        TraceLine(1, 0.0, 3000, 10, hash_ids=(0, 1, 2, 3, 4, 5)),
        TraceLine(2, 1.0, 2500, 10, hash_ids=(0, 1, 2, 9, 10)),
        TraceLine(3, 2.0, 2500, 10, hash_ids=(0, 1, 20, 21, 22)),
        TraceLine(4, 3.0, 900, 10, hash_ids=(30, 31)),
    ]
    prompts = TracePrompts(lines)

    def marked(x: TraceLine) -> list[int]:
        return [i for i, block in enumerate(prompts.request(x).get("system", [])) if "cache_control" in block]

    # Blocks 0-1 (1,024 tokens) are shared by lines 1-3; blocks 0-2 by lines 1-2 only.
    assert marked(lines[0]) == [1, 2] and marked(lines[1]) == [1, 2] and marked(lines[2]) == [1]
    assert marked(lines[3]) == []  # nothing shared
    assert TracePrompts(lines, min_cache_tokens=2048).breakpoints(lines[0], [512] * 6) == []
    # Lines with ids 0..1, 0..2, ..., 0..10: the longest (11 blocks) shares 2, 3, ... 10 blocks with
    # the others; at most four marks: the three widest-shared prefixes and the longest.
    many = [TraceLine(i, 0.0, 6000, 1, hash_ids=tuple(range(i))) for i in range(2, 12)]
    assert TracePrompts(many, min_cache_tokens=0).breakpoints(many[-1], [512] * 11) == [1, 2, 3, 9]


def test_request_fields_history_and_recorded_bodies() -> None:
    line = TraceLine(5, 0.0, 1500, 42, hash_ids=(0, 1), model="claude-haiku-4-5", session_id="s", turn=2)
    prompts = TracePrompts([line, TraceLine(6, 1.0, 1100, 1, hash_ids=(0, 1))])
    history = [{"role": "user", "content": "x" * 400}, {"role": "assistant", "content": "y" * 200}]
    body = prompts.request(line, history)
    assert body["max_tokens"] == 42 and body["model"] == "claude-haiku-4-5"
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    # The history's last user turn is where the previous turn wrote the cache: read it there.
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "x" * 400, "cache_control": {"type": "ephemeral"}}
    ]
    assert body["messages"][1]["content"] == [{"type": "text", "text": "y" * 200}]
    assert history[0]["content"] == "x" * 400  # the caller's history is not changed
    # The new turn fills what the blocks (1,024 tokens) and the history (150 tokens) leave; no
    # later turn follows it, so it is not marked.
    (new_turn,) = body["messages"][2]["content"]
    assert len(new_turn["text"]) == (1500 - 1024 - 150) * 4 and "cache_control" not in new_turn
    recorded = TraceLine(7, 0.0, 7, 30, request={"messages": [{"role": "user", "content": "Hi"}], "temperature": 0})
    assert prompts.request(recorded) == {
        "max_tokens": 30,
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0,
    }
    assert prompts.request(TraceLine(8, 0.0, 10, 0))["max_tokens"] == 1  # a failed call's 0 output tokens


def test_calibration_fits_a_line_and_refuses_nonsense() -> None:
    cal = Calibration.from_counts([(1000, 210), (11000, 2210)])
    assert cal.tokens_per_char == pytest.approx(0.2) and cal.overhead_tokens == pytest.approx(10)
    assert cal.chars_for(1000) == 5000
    assert Calibration.from_counts([(400, 100)]).tokens_per_char == 0.25
    with pytest.raises(ConfigError, match="cannot calibrate"):
        Calibration.from_counts([(1000, 0)])


# -- against the simulator ----------------------------------------------------------------


@pytest.fixture(scope="module")
def client() -> Iterator[anthropic.Anthropic]:
    with SimulatorProcess(["--seed", "3", "--ttft", "0.01", "--tps", "5000"]) as sim:
        assert sim.url is not None
        yield anthropic.Anthropic(base_url=sim.url, api_key="sk-test", max_retries=0)


def count(client: anthropic.Anthropic, body: dict[str, Any]) -> int:
    fields = {k: v for k, v in body.items() if k != "max_tokens"}
    return client.messages.count_tokens(**{"model": MODEL, **fields}).input_tokens


@pytest.mark.parametrize("fmt", [TraceFormat.MOONCAKE, TraceFormat.HARNESS])
def test_calibrated_prompts_count_within_10_percent_on_the_simulator(
    client: anthropic.Anthropic, fmt: TraceFormat
) -> None:
    calibration = Calibration.measure(lambda body: count(client, body), MODEL)
    assert calibration.tokens_per_char == pytest.approx(0.25, rel=0.01)  # the simulator counts 4 chars a token
    trace = load_trace(SAMPLES[fmt])
    prompts = TracePrompts(trace.lines, calibration)
    history: dict[str, list[dict[str, Any]]] = {}
    for line in trace.lines:
        if line.request is not None:
            continue
        past = history.get(line.session_id or "", []) if line.session_id else []
        body = prompts.request(line, past)
        assert abs(count(client, body) - line.input_tokens) <= 0.10 * line.input_tokens, line
        if line.session_id:  # the next turn sends this one and a (stand-in) answer as its history
            history[line.session_id] = prompts.next_history(line, body)
    # A calibration that is off shows: twice the tokens per character halves the count.
    off = TracePrompts(trace.lines, Calibration(0.5)).request(trace.lines[0])
    assert count(client, off) < 0.6 * trace.lines[0].input_tokens


def test_lines_sharing_blocks_read_them_from_the_simulators_cache(client: anthropic.Anthropic) -> None:
    trace = load_trace(SAMPLES[TraceFormat.MOONCAKE])
    prompts = TracePrompts(trace.lines)
    first, second = [x for x in trace.lines if x.hash_ids[:2] == (0, 1)][:2]
    usages = [client.messages.create(model=MODEL, **prompts.request(x)).usage for x in (first, second)]  # type: ignore[call-overload]
    assert usages[0].cache_creation_input_tokens == 2 * BLOCK_TOKENS
    assert usages[1].cache_read_input_tokens == 2 * BLOCK_TOKENS
    assert usages[1].output_tokens <= second.output_tokens


def test_a_conversations_later_turn_reads_the_earlier_turns_from_the_cache(client: anthropic.Anthropic) -> None:
    turns = [
        TraceLine(1, 0.0, 1500, 20, session_id="s", turn=1),
        TraceLine(2, 1.0, 3200, 20, session_id="s", turn=2),
        TraceLine(3, 2.0, 5000, 20, session_id="s", turn=3),
    ]
    prompts = TracePrompts(turns)
    history: list[dict[str, Any]] = []
    usages = []
    for line in turns:
        body = prompts.request(line, history)
        marks = sum("cache_control" in b for m in body["messages"] for b in m["content"])
        assert marks == (line.turn != 1) + (line.turn != 3)  # read where the last turn wrote; write if one follows
        usages.append(client.messages.create(model=MODEL, **body).usage)  # type: ignore[call-overload]
        history = prompts.next_history(line, body)
    assert usages[0].cache_creation_input_tokens == pytest.approx(1500, abs=2)
    # Turn 2 reads turn 1's whole prompt and writes its own; turn 3 reads turn 2's.
    assert usages[1].cache_read_input_tokens == usages[0].cache_creation_input_tokens
    assert usages[2].cache_read_input_tokens == pytest.approx(3200, abs=8)
