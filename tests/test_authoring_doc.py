"""docs/authoring.md works as written: its example code runs, its first command runs, its claims hold."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections import defaultdict
from pathlib import Path

import pytest
from locust.util.load_locustfile import load_locustfile

from harness import ConfigError
from harness.core.prompts import load_jsonl
from harness.runtime.user import AnthropicUser
from harness.simulator.launcher import SimulatorProcess

from .locust_runs import read_jsonl, run_local
from .test_cli import locust
from .test_scenarios import ALL_CLASSES, FAST_SIMULATOR

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "authoring.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.DOTALL)


def load_examples(tmp_path: Path) -> dict[str, type[AnthropicUser]]:
    """Every class the doc's Python blocks define, loaded by Locust's own loader as `locust -f` does."""
    found: dict[str, type[AnthropicUser]] = {}
    for i, code in enumerate(blocks("python")):
        path = tmp_path / f"doc_example_{i}.py"
        path.write_text(code)
        classes, _ = load_locustfile(str(path))
        found.update(classes)  # type: ignore[arg-type]
    return found


def test_the_first_example_is_under_fifteen_lines() -> None:
    first = blocks("python")[0]
    assert len(first.strip().splitlines()) < 15
    assert "class SupportQuestion(AnthropicUser)" in first


def test_every_example_class_passes_the_start_checks_and_runs(tmp_path: Path) -> None:
    examples = load_examples(tmp_path)
    assert {"SupportQuestion", "VariedQuestions", "LongDocuments", "SummariseThenTranslate", "Onboarding"} <= set(
        examples
    )
    for user_class in examples.values():
        user_class.validate()
    with SimulatorProcess(FAST_SIMULATOR) as sim:
        assert sim.url is not None
        run = run_local(list(examples.values()), sim.url, users=len(examples), seconds=4.0)
    assert run.env.runner is not None and not run.env.runner.exceptions
    by_name: dict[str, list[dict[str, object]]] = defaultdict(list)
    for record in sorted(run.records, key=lambda r: r.t_start):
        if record.outcome != "cancelled":
            assert record.ok, (record.scenario, record.outcome, record.error_message)
            by_name[record.scenario].append({"input_tokens": record.input_tokens})
    expected_rows = set(examples) - {"SummariseThenTranslate"} | {"Summarise", "Translate"}
    assert set(by_name) == expected_rows
    inputs = [r["input_tokens"] for r in by_name["Onboarding"]][:3]
    assert len(inputs) >= 2 and inputs == sorted(inputs) and len(set(inputs)) == len(inputs)


def test_the_documented_error_line_is_what_a_scenario_without_model_gets(tmp_path: Path) -> None:
    documented = blocks("text")[0].strip()
    path = tmp_path / "support_question.py"
    path.write_text(blocks("python")[0].replace('    model = "claude-haiku-4-5"\n', ""))
    classes, _ = load_locustfile(str(path))
    with pytest.raises(ConfigError) as info:
        classes["SupportQuestion"].validate()  # type: ignore[attr-defined]
    assert f"locust: error: {info.value}" == documented.replace("scenarios/support_question.py", str(path))


def test_the_documented_dataset_line_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "line.jsonl"
    path.write_text(blocks("json")[0])
    assert load_jsonl(path)[0]["max_tokens"] == 200


def test_every_library_scenario_is_in_the_lever_table() -> None:
    table = DOC.split("## The scenario library")[1].split("## A lever study")[0]
    expanded = table.replace("MaxTokens64/256/1024", "MaxTokens64 MaxTokens256 MaxTokens1024")
    for user_class in ALL_CLASSES:
        assert re.search(rf"\b{user_class.__name__}\b", expanded), user_class.__name__


def test_step_three_runs_as_a_new_user_would(tmp_path: Path) -> None:
    # Step 1: the file where the doc says; step 3: the doc's command, shortened and on a fast simulator.
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "support_question.py").write_text(blocks("python")[0])
    command = next(line for block in blocks("sh") for line in block.splitlines() if line.startswith("locust -f"))
    args = shlex.split(command)[1:]
    args[args.index("-t") + 1] = "5s"
    result = locust(
        *args,
        "--simulator-args",
        " ".join(FAST_SIMULATOR),
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "COMPLETION  SupportQuestion" in result.stderr and "TTFT     SupportQuestion" in result.stderr
    out = tmp_path / args[args.index("--report-dir") + 1]
    records = [r for r in read_jsonl(out / "requests.jsonl") if r["outcome"] != "cancelled"]
    assert records and all(r["outcome"] == "ok" and r["scenario"] == "SupportQuestion" for r in records)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenarios"]["SupportQuestion"]["ttft_s"]["count"] == len(records)
