"""Prompt sources: what each one sends, seeding, and the one-line errors they raise at start."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.core.errors import ConfigError
from harness.core.prompts import (
    CHARS_PER_TOKEN,
    Dataset,
    Synthetic,
    Template,
    Text,
    fixed,
    normal,
    synthetic_text,
    uniform,
)
from harness.simulator.messages import parse_messages_request

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "scenarios" / "data" / "sample.jsonl"


def simulator_input_tokens(request: dict[str, object]) -> int:
    """What the simulator will count for this request (its documented 4-characters-per-token rule)."""
    body = {"model": "claude-haiku-4-5", "max_tokens": 16, **request}
    return parse_messages_request(body).input_tokens


def user_text(request: dict[str, object]) -> str:
    messages = request["messages"]
    assert isinstance(messages, list) and messages[-1]["role"] == "user"
    content = messages[-1]["content"]
    assert isinstance(content, str)
    return content


def test_text_sends_the_same_single_turn() -> None:
    source = Text("Name three prime numbers.")
    source.check()
    assert [source.next_request() for _ in range(2)] == [
        {"messages": [{"role": "user", "content": "Name three prime numbers."}]}
    ] * 2
    with pytest.raises(ConfigError, match="empty prompt"):
        Text("  ").check()


def test_template_fills_every_field_from_its_values_and_is_seeded() -> None:
    def draws(seed: int) -> list[str]:
        source = Template("In {n} sentences, explain {topic}.", topic=["TCP", "DNS", "TLS"], n=[1, 3], seed=seed)
        source.check()
        return [user_text(source.next_request()) for _ in range(30)]

    first = draws(5)
    assert first == draws(5)
    assert first != draws(6)
    assert {t.split(", ")[1] for t in first} == {"explain TCP.", "explain DNS.", "explain TLS."}
    assert {t.split()[1] for t in first} == {"1", "3"}
    constant = Template("Hello {name}", name="Ada")
    constant.check()
    assert user_text(constant.next_request()) == "Hello Ada"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (Template("Explain {topic}."), r"field \{topic\} has no values"),
        (Template("Explain {topic}.", topic=[]), r"field \{topic\} has no values"),
        (Template("Explain {}.", x=[1]), "must be a plain name"),
        (Template("Explain {topic}.", topic=["a"], extra=[1]), "extra do not appear"),
        (Template("Explain {topic.", topic=["a"]), "cannot be parsed"),
        (Template(""), "empty template"),
    ],
)
def test_template_mistakes_are_one_line_config_errors(source: Template, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        source.check()
    assert "\n" not in str(info.value)


def test_distributions_stay_in_their_ranges_and_are_seeded() -> None:
    rng = random.Random(1)
    assert {fixed(300).draw(rng) for _ in range(20)} == {300}
    drawn = [uniform(100, 200).draw(rng) for _ in range(500)]
    assert min(drawn) >= 100 and max(drawn) <= 200 and max(drawn) - min(drawn) > 80
    gauss = [normal(1000, 100).draw(rng) for _ in range(2000)]
    mean = sum(gauss) / len(gauss)
    assert 980 < mean < 1020 and min(gauss) < 850 and max(gauss) > 1150
    assert min(normal(5, 50, minimum=3).draw(rng) for _ in range(200)) == 3
    for bad in (fixed(0), uniform(10, 5), uniform(0, 5), normal(0, 1), normal(10, -1)):
        with pytest.raises(ConfigError):
            bad.check()


@pytest.mark.parametrize("target", [10, 50, 1000, 8000])
def test_synthetic_prompts_have_the_target_token_count(target: int) -> None:
    source = Synthetic(tokens=target, question="Summarise.", seed=3)
    source.check()
    first, second = source.next_request(), source.next_request()
    assert user_text(first) != user_text(second)  # fresh filler per call
    for request in (first, second):
        assert user_text(request).endswith("\n\nSummarise.")
        assert abs(simulator_input_tokens(request) - target) <= max(1, target // 100)


def test_synthetic_lengths_follow_the_distribution_and_the_seed() -> None:
    def lengths(seed: int) -> list[int]:
        source = Synthetic(tokens=uniform(200, 400), seed=seed)
        return [simulator_input_tokens(source.next_request()) for _ in range(40)]

    drawn = lengths(9)
    assert drawn == lengths(9) and drawn != lengths(10)
    assert min(drawn) >= 199 and max(drawn) <= 401 and max(drawn) - min(drawn) > 100


def test_synthetic_text_is_seeded_filler_of_the_asked_length() -> None:
    text = synthetic_text(250, random.Random(4))
    assert text == synthetic_text(250, random.Random(4))
    assert len(text) == 250 * CHARS_PER_TOKEN and len(text.split()) > 100


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_dataset_replays_lines_in_order_and_wraps_around(tmp_path: Path) -> None:
    bodies = [{"messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 10 + i} for i in range(3)]
    bodies[1]["system"] = "Be brief."
    lines = [json.dumps(b) for b in bodies]
    path = write_lines(tmp_path / "d.jsonl", [lines[0], "", "   ", lines[1], lines[2]])
    source = Dataset(path)
    source.check()
    sent = [source.next_request() for _ in range(7)]
    assert sent == [bodies[i % 3] for i in range(7)]
    sent[0]["messages"].append({"role": "user", "content": "mutated"})  # a caller's change stays its own
    assert source.requests()[0] == bodies[0]


def test_dataset_option_replaces_the_default_file(tmp_path: Path) -> None:
    other = write_lines(tmp_path / "other.jsonl", ['{"messages": [{"role": "user", "content": "from the option"}]}'])
    source = Dataset(SAMPLE)
    source.bind(SimpleNamespace(dataset=None))
    assert source.path == SAMPLE
    source.bind(SimpleNamespace(dataset=str(other)))
    source.check()
    assert user_text(source.next_request()) == "from the option"
    with pytest.raises(ConfigError, match="needs a dataset; pass --dataset"):
        Dataset().check()


def test_the_shipped_sample_is_a_valid_dataset_of_distinct_requests() -> None:
    requests = Dataset(SAMPLE).requests()
    assert len(requests) >= 5
    counts = [simulator_input_tokens({k: v for k, v in r.items() if k != "model"}) for r in requests]
    assert len(set(counts)) == len(counts)  # so a replay's order is visible in input_tokens


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"messages": [{"role": "user", "content": "ok"}]}', "{not json"], "line 2 is not valid JSON"),
        (['{"messages": [{"role": "user", "content": "ok"}]}', "", '{"prompt": "hi"}'], 'line 3 has no "messages"'),
        (['{"messages": []}'], 'line 1 has no "messages"'),
        (['{"messages": "hello"}'], 'line 1 has no "messages"'),
        (["[1, 2]"], "line 1 is not a JSON object"),
        (['{"messages": [{"content": "no role"}]}'], 'line 1: every message needs a "role"'),
        (['{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}'], "line 1: max_tokens must be"),
        (['{"messages": [{"role": "user", "content": "x"}], "model": ""}'], "line 1: model must be"),
        (["", "  "], "has no requests"),
    ],
)
def test_dataset_mistakes_name_the_file_and_line(tmp_path: Path, lines: list[str], message: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", lines)
    with pytest.raises(ConfigError, match=message) as info:
        Dataset(path).check()
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_missing_dataset_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        Dataset(tmp_path / "nope.jsonl").check()
