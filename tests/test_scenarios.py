"""The scenario library: every scenario runs against the simulator and its records show its lever.

One in-process Locust run spawns one user of every class in ``scenarios/`` against one fast
simulator; the tests below read that run's records. Selection (default class, names, tags,
``--list``, ``--dataset``) and the start-up checks go through the ``locust`` CLI.
"""

from __future__ import annotations

import importlib
import itertools
import json
import statistics
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from locust import task
from locust.argument_parser import get_parser
from locust.env import Environment
from locust.exception import StopUser
from locust.user import User
from locust.util.load_locustfile import is_user_class, load_locustfile

from harness import AnthropicUser, CallRecord, ConfigError
from harness.core.prompts import CHARS_PER_TOKEN, Dataset
from harness.runtime.catalog import bind_sources, describe, select, tags_of
from harness.runtime.conversation import Conversation
from harness.simulator.launcher import SimulatorProcess
from harness.simulator.messages import parse_messages_request
from scenarios.dataset_replay import SAMPLE, DatasetReplay

from .locust_runs import read_jsonl, run_local
from .test_cli import locust

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(p.stem for p in (ROOT / "scenarios").glob("*.py") if p.stem != "__init__")
FAST_SIMULATOR = ["--ttft", "0.01", "--tps", "2000", "--seed", "3"]


def classes_of(module_name: str) -> list[type[User]]:
    module = importlib.import_module(f"scenarios.{module_name}")
    return [v for v in vars(module).values() if is_user_class(v) and v.__module__ == module.__name__]


LIBRARY = {m: classes_of(m) for m in MODULES}
ALL_CLASSES = [c for classes in LIBRARY.values() for c in classes]


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    with SimulatorProcess(FAST_SIMULATOR) as sim:
        assert sim.url is not None
        yield sim.url


@pytest.fixture(scope="module")
def library(sim_url: str) -> dict[str, list[CallRecord]]:
    """Finished records of one run of every scenario (one user each), by scenario name, in call order."""
    run = run_local(ALL_CLASSES, sim_url, users=len(ALL_CLASSES), seconds=7.0)
    assert run.env.runner is not None
    assert not run.env.runner.exceptions, list(run.env.runner.exceptions.values())[:1]
    by_name: dict[str, list[CallRecord]] = defaultdict(list)
    for record in sorted(run.records, key=lambda r: r.t_start):
        if record.outcome != "cancelled":
            by_name[record.scenario].append(record)
    return by_name


def test_the_library_has_every_lever_and_each_class_says_what_it_does() -> None:
    assert set(MODULES) >= {
        "chat",
        "model_comparison",
        "output_length",
        "prompt_length",
        "streaming",
        "prompt_caching",
        "extended_thinking",
        "tool_use",
        "multi_turn",
        "dataset_replay",
        "mixed",
    }
    for module, classes in LIBRARY.items():
        assert classes, module
        for user_class in classes:
            assert not describe(user_class).startswith("(no description"), user_class
            assert tags_of(user_class), user_class
            user_class.validate()  # type: ignore[attr-defined]


def test_every_scenario_runs_without_failures(library: dict[str, list[CallRecord]]) -> None:
    for user_class in ALL_CLASSES:
        name = user_class.__name__
        records = [r for scenario, rs in library.items() if scenario.startswith(name) for r in rs]
        assert records, f"{name} made no call"
    failed = [(s, r.outcome, r.error_message) for s, rs in library.items() for r in rs if not r.ok]
    assert not failed


def test_model_comparison_sends_the_same_prompt_to_each_model(library: dict[str, list[CallRecord]]) -> None:
    models = {name: library[name] for name in ("CompareHaiku", "CompareSonnet", "CompareOpus")}
    assert {name: {r.model for r in rs} for name, rs in models.items()} == {
        "CompareHaiku": {"claude-haiku-5-5"},
        "CompareSonnet": {"claude-sonnet-5-5"},
        "CompareOpus": {"claude-opus-5-5"},
    }
    assert len({r.input_tokens for rs in models.values() for r in rs}) == 1


def test_max_tokens_steps_cap_output_tokens(library: dict[str, list[CallRecord]]) -> None:
    for cap in (64, 256, 1024):
        records = library[f"MaxTokens{cap}"]
        assert all(r.output_tokens is not None and 0 < r.output_tokens <= cap for r in records)
    assert any(r.output_tokens == 64 and r.stop_reason == "max_tokens" for r in library["MaxTokens64"])
    assert statistics.mean(r.output_tokens or 0 for r in library["MaxTokens1024"]) > 64
    assert library["OneSentence"] and library["OpenQuestion"]


def test_a_long_context_shows_in_input_tokens(library: dict[str, list[CallRecord]]) -> None:
    assert all(r.input_tokens is not None and r.input_tokens < 50 for r in library["ShortPrompt"])
    assert all(r.input_tokens is not None and 7900 <= r.input_tokens <= 8100 for r in library["LongContext"])


def test_non_streaming_reports_completion_time_and_no_ttft(library: dict[str, list[CallRecord]]) -> None:
    for record in library["NonStreamed"]:
        assert not record.stream and record.ttft_s is None and record.first_text_s is None
        assert record.completion_s > 0 and record.output_tokens
    for record in library["Streamed"]:
        assert record.stream and record.ttft_s is not None and 0 < record.ttft_s <= record.completion_s


@pytest.mark.skipif(
    not (ROOT / "harness" / "simulator" / "cache.py").exists(), reason="this simulator has no prompt cache yet"
)
def test_prompt_caching_reads_the_prefix_after_the_first_call(library: dict[str, list[CallRecord]]) -> None:
    warm = library["CacheWarm"]
    assert len(warm) >= 2
    assert (warm[0].cache_creation_input_tokens or 0) > 5000
    assert all((r.cache_read_input_tokens or 0) > 5000 for r in warm[1:])
    cold = library["CacheCold"]
    assert cold and all(not r.cache_read_input_tokens and not r.cache_creation_input_tokens for r in cold)
    assert all((r.input_tokens or 0) > 5000 for r in cold)


def test_thinking_comes_before_the_first_text(library: dict[str, list[CallRecord]]) -> None:
    for name in ("Thinking1k", "Thinking2k", "Thinking4k"):
        for record in library[name]:
            assert record.t_first_token is not None and record.t_first_text is not None
            # Events one read delivered share its kernel stamp: a reader that fell behind by the
            # whole thinking block (this module runs 20 users in one process) stamps both alike.
            assert record.t_first_token <= record.t_first_text
    for record in library["NoThinking"]:
        assert record.t_first_token == record.t_first_text


def test_tool_use_ends_in_a_tool_call_then_a_follow_up(library: dict[str, list[CallRecord]]) -> None:
    calls, follow_ups = library["ToolUse"], library["ToolUseFollowUp"]
    assert calls and all(r.stop_reason == "tool_use" for r in calls)
    assert follow_ups and all(r.stop_reason in ("end_turn", "max_tokens") for r in follow_ups)
    for follow_up in follow_ups:
        before = [c for c in calls if c.t_end <= follow_up.t_start]
        assert before and (follow_up.input_tokens or 0) > (before[-1].input_tokens or 0)


def test_multi_turn_calls_grow_in_input_tokens(library: dict[str, list[CallRecord]]) -> None:
    turns = [r.input_tokens or 0 for r in library["MultiTurnChat"]][:4]
    assert len(turns) >= 2
    assert all(b > a for a, b in itertools.pairwise(turns))


def test_dataset_replay_sends_the_sample_in_order(library: dict[str, list[CallRecord]]) -> None:
    sample = [json.loads(line) for line in (ROOT / "scenarios" / "data" / "sample.jsonl").read_text().splitlines()]
    expected = [parse_messages_request({"model": "m", "max_tokens": 1, **body}).input_tokens for body in sample]
    sent = [r.input_tokens for r in library["DatasetReplay"]]
    assert len(sent) >= 3
    start = expected.index(sent[0])
    assert sent == [expected[(start + i) % len(expected)] for i in range(len(sent))]
    models = {body.get("model", "claude-haiku-4-5") for body in sample}
    assert {r.model for r in library["DatasetReplay"]} <= models


def test_the_mix_sends_every_kind_of_request(library: dict[str, list[CallRecord]]) -> None:
    kinds = {name.removeprefix("ProductionMix.") for name in library if name.startswith("ProductionMix.")}
    assert "chat" in kinds and len(kinds) >= 2


# -- selection ------------------------------------------------------------------------------


def environment_for(args: list[str]) -> Environment:
    import locustfile

    options = get_parser().parse_args(["-f", "locustfile.py", *args])
    classes = [v for v in vars(locustfile).values() if is_user_class(v)]
    return Environment(user_classes=classes, parsed_options=options)


def names(env: Environment) -> set[str]:
    return {c.__name__ for c in env.user_classes}


def test_selection_default_names_and_tags() -> None:
    env = environment_for([])
    select(env)
    assert names(env) == {"ShortChat"}

    env = environment_for(["CacheWarm", "ToolUse"])
    everything = names(env)
    select(env)  # Locust itself keeps only the named classes; naming any turns the default off
    assert names(env) == everything and len(everything) == len(ALL_CLASSES)

    env = environment_for(["--tags", "caching", "thinking"])
    select(env)
    assert names(env) == {"CacheWarm", "CacheCold", "NoThinking", "Thinking1k", "Thinking2k", "Thinking4k"}

    env = environment_for(["--exclude-tags", "caching"])
    select(env)
    assert "CacheWarm" not in names(env) and "ShortChat" in names(env) and len(names(env)) == len(ALL_CLASSES) - 2

    with pytest.raises(ConfigError, match="no scenario has a task tagged nothing-has-this"):
        select(environment_for(["--tags", "nothing-has-this"]))


def test_dataset_is_refused_when_no_selected_scenario_replays_one() -> None:
    env = environment_for(["--dataset", "mine.jsonl"])
    select(env)
    with pytest.raises(ConfigError, match="--dataset is given but no selected scenario replays a dataset"):
        bind_sources(env)
    env = environment_for(["--dataset", "mine.jsonl", "DatasetReplay"])
    select(env)
    source = DatasetReplay.prompt_source
    assert isinstance(source, Dataset)
    try:
        bind_sources(env)
        assert source.path == Path("mine.jsonl")
    finally:
        source.bind(SimpleNamespace(dataset=str(SAMPLE)))  # the class is shared with the other tests


def test_each_module_runs_alone_with_its_own_classes_only(tmp_path: Path) -> None:
    # Locust's own loader, as `locust -f scenarios/<name>.py` uses it.
    for module in MODULES:
        found, _ = load_locustfile(str(ROOT / "scenarios" / f"{module}.py"))
        assert set(found) == {c.__name__ for c in LIBRARY[module]}, module


def test_list_shows_every_scenario_with_its_description() -> None:
    result = locust("-f", "locustfile.py", "--list", timeout=30)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "Available Users:"
    listed = {line.split()[0]: line for line in lines[1:]}
    assert set(listed) == {c.__name__ for c in ALL_CLASSES}
    for user_class in ALL_CLASSES:
        assert describe(user_class) in listed[user_class.__name__]
        assert "tags: " + ", ".join(tags_of(user_class)) in listed[user_class.__name__]
    assert [name for name, line in listed.items() if "[default" in line] == ["ShortChat"]


def test_a_class_name_and_dataset_option_replay_a_file_in_order(tmp_path: Path) -> None:
    dataset = tmp_path / "mine.jsonl"
    lines = [{"messages": [{"role": "user", "content": "x" * (40 * (i + 1))}], "max_tokens": 8} for i in range(4)]
    dataset.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "out"
    result = locust(
        *("-f", "locustfile.py", "DatasetReplay", "--dataset", str(dataset), "--report-dir", str(out)),
        *("--headless", "-u", "1", "-t", "5s", "--simulator-args", " ".join(FAST_SIMULATOR)),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    replayed = [r for r in read_jsonl(out / "requests.jsonl") if r["outcome"] != "cancelled"]
    assert len(replayed) >= 4 and {r["scenario"] for r in replayed} == {"DatasetReplay"}
    assert [r["input_tokens"] for r in replayed] == [10 * (i % 4 + 1) for i in range(len(replayed))]


# -- start-up checks ------------------------------------------------------------------------

SCENARIO = """
from harness import AnthropicUser
from harness.core.prompts import Dataset

class {name}(AnthropicUser):
    {body}
"""


@pytest.mark.parametrize(
    ("name", "body", "dataset", "message"),
    [
        ("NoModel", 'prompt = "hi"', None, "scenario NoModel ({file}) has no model"),
        ("EmptyPrompt", 'model = "claude-haiku-4-5"; prompt = " "', None, "scenario EmptyPrompt ({file}) has an empty"),
        ("ZeroMax", 'model = "claude-haiku-4-5"; prompt = "hi"; max_tokens = 0', None, "max_tokens must be a positive"),
        (
            "BadJson",
            'model = "claude-haiku-4-5"; prompt_source = Dataset()',
            '{"messages": [{"role": "user", "content": "ok"}]}\n{"messages": [\n',
            "scenario BadJson ({file}): {dataset} line 2 is not valid JSON",
        ),
        (
            "NoMessages",
            'model = "claude-haiku-4-5"; prompt_source = Dataset()',
            '\n{"prompt": "hello"}\n',
            'scenario NoMessages ({file}): {dataset} line 2 has no "messages" list',
        ),
    ],
)
def test_bad_scenarios_stop_at_start_with_one_line(
    tmp_path: Path, name: str, body: str, dataset: str | None, message: str
) -> None:
    file = tmp_path / f"{name.lower()}.py"
    file.write_text(SCENARIO.format(name=name, body=body))
    args = ["-f", str(file), "--headless", "-u", "1", "-t", "5s"]
    data = tmp_path / "requests.jsonl"
    if dataset is not None:
        data.write_text(dataset)
        args += ["--dataset", str(data)]
    result = locust(*args, timeout=30)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("locust: error: "), result.stderr
    assert message.format(file=file, dataset=data) in errors[0]
    assert "Traceback" not in result.stderr


# -- conversations ----------------------------------------------------------------------------

conversations: list[dict[str, Any]] = []


class FailingTurn(AnthropicUser):
    """A conversation whose middle turn fails (the scripted server's http_500 model)."""

    model = "timed"
    max_tokens = 20

    @task
    def talk(self) -> None:
        talk = Conversation(self, think_time=0.2)
        records = [talk.say("one"), talk.say("two", model="http_500"), talk.say("three")]
        given_up = Conversation(self, model="http_500").play(["a", "b", "c"])
        conversations.append({"records": records, "history": talk.history, "given_up": given_up})
        raise StopUser()


def test_a_failed_turn_leaves_the_history_as_it_was_and_play_gives_up(scripted_url: str) -> None:
    conversations.clear()
    run_local([FailingTurn], scripted_url, users=1, seconds=2.5)
    assert len(conversations) == 1
    first, failed, third = conversations[0]["records"]
    assert [first.ok, failed.ok, third.ok] == [True, False, True]
    assert failed.t_start - first.t_end >= 0.2  # the think time before the second turn
    history = conversations[0]["history"]
    assert [(m["role"], m["content"] if m["role"] == "user" else None) for m in history] == [
        ("user", "one"),
        ("assistant", None),
        ("user", "three"),
        ("assistant", None),
    ]
    # Filler of the reply's output_tokens (a trailing space trimmed).
    assert 20 * CHARS_PER_TOKEN - 1 <= len(history[1]["content"]) <= 20 * CHARS_PER_TOKEN
    assert [r.outcome for r in conversations[0]["given_up"]] == ["http_500"]
