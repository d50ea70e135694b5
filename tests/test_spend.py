"""The spend guard: prices, the estimate, live cost, ``--max-cost`` and the real-API warning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.core.errors import ConfigError
from harness.core.exitcodes import EXIT_COST_CAP
from harness.core.measure import CallRecord
from harness.monitors.spend import DEFAULT_PRICES, Price, load_price_file, price_for

from .locust_runs import read_jsonl
from .test_cli import ROOT, locust

FAST_SIM = "--seed 5 --ttft 0.01 --tps 3000"


def record(**tokens: int) -> CallRecord:
    return CallRecord(call_id="1", scenario="s", model="claude-sonnet-4-5", stream=True, outcome="ok", **tokens)


def test_each_token_kind_has_its_own_price() -> None:
    sonnet = price_for("claude-sonnet-4-5-20250929", DEFAULT_PRICES)  # a dated snapshot id
    assert sonnet == Price(3.0, 15.0, 3.75, 0.30)
    cost = sonnet.cost(
        record(
            input_tokens=1_000_000,
            output_tokens=1_000_000,
            cache_creation_input_tokens=1_000_000,
            cache_read_input_tokens=1_000_000,
        )
    )
    assert cost == pytest.approx(3.0 + 15.0 + 3.75 + 0.30)
    assert price_for("my-finetune", DEFAULT_PRICES) is None


def test_price_file_in_json_and_toml(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps({"models": {"my-model": {"input": 2, "output": 8}}}))
    prices = load_price_file(str(tmp_path / "p.json"))
    assert prices["my-model"] == Price(2.0, 8.0, 2.5, 0.2)
    (tmp_path / "p.toml").write_text("[models.other]\ninput = 1\noutput = 4\ncache_read = 0.05\n")
    assert load_price_file(str(tmp_path / "p.toml"))["other"].cache_read == 0.05
    (tmp_path / "bad.json").write_text('{"models": {"x": {"input": "lots"}}}')
    with pytest.raises(ConfigError, match="needs numeric 'input' and 'output'"):
        load_price_file(str(tmp_path / "bad.json"))


def test_max_cost_stops_the_run_within_one_call_of_the_cap(tmp_path: Path) -> None:
    cap = 0.004  # about five Haiku calls of ~160 output tokens
    out = tmp_path / "out"
    result = locust(
        "-f", str(ROOT / "locustfile.py"), "--headless", "-u", "1", "-t", "60s",
        "--simulator-args", FAST_SIM, "--report-dir", str(out), "--max-cost", str(cap),
        cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert result.returncode == EXIT_COST_CAP, result.stderr[-3000:]
    assert "spend estimate: ~$" in result.stderr  # printed before the run
    assert f"--max-cost ${cap:.4f} reached" in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    cost = summary["cost"]
    assert cost["stopped_by_cap"] is True and cost["max_cost_usd"] == cap
    assert cap <= cost["total_usd"] < cap + cost["max_call_usd"]
    assert summary["duration_s"] < 30  # stopped long before -t 60s
    # The cost is the usage the server reported, each kind at its price, and nothing else.
    lines = read_jsonl(out / "requests.jsonl")
    haiku = DEFAULT_PRICES["claude-haiku-4-5"]
    expected = sum(haiku.cost(CallRecord.from_dict(line)) for line in lines)
    assert cost["total_usd"] == pytest.approx(expected)
    assert sum(cost["by_kind_usd"].values()) == pytest.approx(expected)
    assert summary["overall"]["calls"] == len(lines)


def test_real_api_without_a_cap_prints_the_estimate_and_a_warning(tmp_path: Path) -> None:
    # No users, so nothing is sent: only the start-up checks run against the real API's URL.
    result = locust(
        "-f", str(ROOT / "locustfile.py"), "--headless", "-u", "0", "-t", "1s",
        env={"ANTHROPIC_API_KEY": "sk-ant-test-not-a-real-key-000000"}, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert "spend estimate: ~$" in result.stderr, result.stderr[-2000:]
    warnings = [line for line in result.stderr.splitlines() if "no cap: add --max-cost" in line]
    assert len(warnings) == 1


def test_a_bad_cap_or_price_file_is_one_line_at_start(tmp_path: Path) -> None:
    for args, message in (
        (["--max-cost", "-1"], "--max-cost must be a positive number"),
        (["--price-file", str(tmp_path / "missing.json")], "--price-file"),
    ):
        result = locust(
            "-f", str(ROOT / "locustfile.py"), "--headless", "-u", "1", "-t", "1s", *args, cwd=tmp_path, timeout=60
        )  # fmt: skip
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
