"""study.json, study.html and the terminal table, from the records of a study's arms."""

from __future__ import annotations

import html
import io
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from plotly.offline import get_plotlyjs

from harness.core.compare import signed_percent
from harness.core.measure import CallRecord
from harness.core.schedule import blocks, lever_arms, select_levers
from harness.core.summary import SampleStore
from harness.outputs.study_page import compare_runs, study_document, write_study
from harness.outputs.study_table import print_study_table, render_study_table

# Per arm: (TTFT median in s, generation time median in s); streamed unless named NonStreamed.
SPEED = {
    "ControlA": (0.30, 1.0),
    "ControlB": (0.30, 1.0),
    "CompareSonnet": (0.50, 2.0),
    "CompareHaiku": (0.30, 1.0),
    "CompareOpus": (0.80, 3.0),
    "NonStreamed": (0.30, 1.0),
    "Streamed": (0.30, 1.0),
}
LEVERS = select_levers(["control", "model", "streaming", "caching"])  # caching's arms do not run
ROUND: dict[str, int] = {}


def _calls(seed: int, rounds: int = 12, per_block: int = 15) -> dict[str, list[CallRecord]]:
    """Every arm's calls, block by block as the schedule runs them; each block's first call is warm-up."""
    rng = np.random.default_rng(seed)
    arms = [arm for arm in lever_arms(LEVERS) if arm in SPEED]
    out: dict[str, list[CallRecord]] = {arm: [] for arm in arms}
    for block in blocks(arms, seed=seed, count=rounds):
        ttft_median, gen_median = SPEED[block.arm]
        for i in range(per_block):
            ttft = float(rng.lognormal(math.log(ttft_median), 0.3))
            completion = ttft + float(rng.lognormal(math.log(gen_median), 0.2))
            stream = block.arm != "NonStreamed"
            record = CallRecord(
                call_id=f"{block.index}-{i}",
                scenario=block.arm,
                model="m",
                stream=stream,
                outcome="ok" if i != 3 else "http_529",
                warmup=i == 0,
                ttft_s=ttft if stream else None,
                first_text_s=ttft if stream else None,
                completion_s=completion,
                output_tps=200 / gen_median if stream else None,
            )
            ROUND[record.call_id] = block.round
            out[block.arm].append(record)
    return out


@pytest.fixture(scope="module")
def doc() -> dict:
    return study_document(_calls(1), LEVERS, block=lambda r: ROUND[r.call_id], seed=4)


def _find(doc: dict, b: str, metric: str, stat: str = "p50") -> dict:
    (entry,) = [c for c in doc["comparisons"] if (c["b"]["arm"], c["metric"], c["stat"]) == (b, metric, stat)]
    return entry


def test_each_comparison_carries_its_interval_verdict_and_the_guides_prediction(doc: dict) -> None:
    assert doc["bootstrap"] == "blocks" and doc["resamples"] == 2000
    for c in doc["comparisons"]:
        assert {
            "metric",
            "stat",
            "a",
            "b",
            "difference",
            "relative",
            "ci95",
            "verdict",
            "predicted",
            "agreement",
        } <= set(c)
        assert c["ci95"]["difference"][0] <= c["difference"] <= c["ci95"]["difference"][1]
        assert c["method"] == "blocks" and c["blocks"] == 12
    haiku = _find(doc, "CompareHaiku", "ttft_s")
    assert haiku["verdict"] == "lower" and haiku["predicted"] == "lower" and haiku["agreement"] == "agrees"
    assert haiku["ci95"]["relative"][0] < 0.30 / 0.50 - 1 < haiku["ci95"]["relative"][1]
    assert (
        haiku["sentence"].startswith("CompareHaiku's TTFT p50 is ")
        and "lower than CompareSonnet's" in haiku["sentence"]
    )
    opus = _find(doc, "CompareOpus", "completion_s", "p95")
    assert opus["verdict"] == "higher" and opus["agreement"] == "agrees"
    streamed = _find(doc, "Streamed", "perceived_s")
    assert streamed["verdict"] == "lower" and streamed["agreement"] == "agrees"
    control = _find(doc, "ControlB", "ttft_s")
    assert control["verdict"] == "no difference detected" and control["predicted"] == "about the same"


def test_a_lever_whose_arms_did_not_run_is_listed_as_not_compared(doc: dict) -> None:
    assert not [c for c in doc["comparisons"] if c["lever"] == "caching"]
    assert {(s["lever"], s["reason"]) for s in doc["skipped"]} == {("caching", "CacheCold did not run")}


def test_arm_figures_are_summary_json_s_for_the_measured_calls(doc: dict) -> None:
    records = _calls(1)["CompareHaiku"]
    store = SampleStore()
    for r in records:
        if not r.warmup:
            store.add(r)
    summary = store.summary(duration_s=1.0)["overall"]
    arm = doc["arms"]["CompareHaiku"]
    assert (arm["calls"], arm["ok"], arm["errors"], arm["warmup_calls"]) == (
        12 * 2 * 14,
        12 * 2 * 13,
        {"http_529": 24},
        24,
    )
    assert (
        arm["ttft_s"]["p50"] == summary["ttft_s"]["p50"]
        and arm["completion_s"]["p95"] == summary["completion_s"]["p95"]
    )
    assert _find(doc, "CompareHaiku", "ttft_s")["b"]["value"] == summary["ttft_s"]["p50"]
    assert doc["arms"]["NonStreamed"]["ttft_s"]["count"] == 0


def test_study_json_and_html_carry_the_same_numbers(doc: dict, tmp_path: Path) -> None:
    json_path, html_path = write_study(tmp_path, doc)
    saved = json.loads(json_path.read_text())
    assert saved == json.loads(json.dumps(doc, allow_nan=False))
    page = html_path.read_text()
    embedded = re.search(r'<script type="application/json" id="study-data">(.*?)</script>', page, re.S)
    assert embedded is not None and json.loads(embedded.group(1)) == saved
    for c in saved["comparisons"]:
        assert html.escape(c["sentence"]) in page
        point = round(c["relative"] * 100, 3)
        low, high = (round(v * 100, 3) for v in c["ci95"]["relative"])
        assert json.dumps(point) in page  # the chart's point and its interval's error bars
        assert json.dumps(high - point) in page and json.dumps(point - low) in page
    assert page.count("Plotly.newPlot") == 3  # one chart per compared lever


def test_the_page_is_self_contained(doc: dict, tmp_path: Path) -> None:
    _, html_path = write_study(tmp_path, doc)
    page = html_path.read_text()
    assert not re.search(r"<script[^>]*\ssrc\s*=", page, re.I)
    assert not re.search(r"<link[^>]*href\s*=\s*[\"']https?:", page, re.I)
    assert get_plotlyjs()[:2000] in page


def _change(entry: dict) -> str:
    low, high = entry["ci95"]["relative"]
    return f"{signed_percent(entry['relative'])} ({signed_percent(low)} to {signed_percent(high)})"


def test_the_terminal_table_states_each_effect_with_its_interval(doc: dict) -> None:
    text = render_study_table(doc)
    assert "\033" not in text
    lines = text.splitlines()
    haiku = next(line for line in lines if "CompareHaiku vs CompareSonnet" in line and "TTFT" in line)
    entry = _find(doc, "CompareHaiku", "ttft_s")
    assert _change(entry) + " *" in haiku and "lower: agrees" in haiku
    assert _change(_find(doc, "CompareHaiku", "ttft_s", "p95")) in haiku
    assert "not compared: CacheWarm vs CacheCold ttft_s: CacheCold did not run" in text
    assert re.search(r"The guide's predictions \(p50 and p95\): \d+ borne out, 0 contradicted", text)
    header = next(line for line in lines if "p50 change (95% CI)" in line)
    assert haiku.index(_change(entry)) == header.index("p50 change")  # fixed-width columns


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_and_never_with_no_color(doc: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    terminal, log = _Terminal(), io.StringIO()
    print_study_table(doc, terminal)
    print_study_table(doc, log)
    assert "\033[32magrees" in terminal.getvalue() and "\033" not in log.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    plain = _Terminal()
    print_study_table(doc, plain)
    assert "\033" not in plain.getvalue() and plain.getvalue() == log.getvalue()


def _run(records: Sequence[CallRecord]) -> dict:
    store = SampleStore()
    for r in records:
        store.add(r)
    return store.summary(duration_s=1.0)["overall"]


def test_two_finished_runs_compared_with_the_same_intervals() -> None:
    calls = _calls(2)
    sonnet = [r for r in calls["CompareSonnet"] if not r.warmup]
    haiku = [r for r in calls["CompareHaiku"] if not r.warmup]
    doc = compare_runs({"run-sonnet": sonnet, "run-haiku": haiku}, seed=1)
    assert doc["bootstrap"] == "calls" and not doc["skipped"]
    assert {(c["metric"], c["stat"]) for c in doc["comparisons"]} == {
        (m, s) for m in ("ttft_s", "completion_s", "output_tps") for s in ("p50", "p95")
    }
    ttft = next(c for c in doc["comparisons"] if (c["metric"], c["stat"]) == ("ttft_s", "p95"))
    assert ttft["a"]["value"] == _run(sonnet)["ttft_s"]["p95"] and ttft["b"]["value"] == _run(haiku)["ttft_s"]["p95"]
    assert ttft["verdict"] == "lower" and ttft["predicted"] is None
    assert "run-haiku vs run-sonnet" in render_study_table(doc)
    same = compare_runs({"run": sonnet, "again": sonnet})
    assert {c["a"]["arm"] for c in same["comparisons"]} == {"run"}
    assert {c["verdict"] for c in same["comparisons"]} == {"no difference detected"}
    three = compare_runs({"run-sonnet": sonnet, "run-haiku": haiku, "again": sonnet})
    assert {(c["a"]["arm"], c["b"]["arm"]) for c in three["comparisons"]} == {
        ("run-sonnet", "run-haiku"),
        ("run-sonnet", "again"),
    }
