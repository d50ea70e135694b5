"""``GET /llm/stats`` and the LLM tab's data against what ``requests.jsonl`` says, via the real CLI.

The figures are recomputed here independently of the harness (``statistics.quantiles`` with
the inclusive method is the same linear interpolation numpy uses by default).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from tests.locust_runs import read_jsonl
from tests.webui_process import LocustWeb


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(sorted(values), n=100, method="inclusive")[q - 1]


def assert_metric(reported: dict[str, Any], values: list[float]) -> None:
    assert reported["count"] == len(values)
    for q in (50, 90, 95, 99):
        assert abs(reported[f"p{q}"] - pct(values, q)) < 1e-9, (q, reported, pct(values, q))
    assert abs(reported["max"] - max(values)) < 1e-12


def test_llm_stats_agree_with_requests_jsonl(tmp_path: Path) -> None:
    with LocustWeb(tmp_path) as web:
        # A bad harness option from the start form is refused with one message, before any load.
        refused = web.swarm(user_count=4, spawn_rate=4, max_tokens=-5)
        assert refused["success"] is False and "--max-tokens" in refused["message"]
        assert web.json("/llm/stats")["state"] == "ready"

        # The harness's options from the form apply to this run.
        started = web.swarm(user_count=4, spawn_rate=4, model="claude-sonnet-4-5", max_tokens=24)
        assert started["success"] is True
        first = web.wait_for("calls", lambda s: s["total"]["run"]["calls"] >= 4)
        later = web.wait_for("more calls", lambda s: s["total"]["run"]["calls"] >= first["total"]["run"]["calls"] + 8)
        assert later["state"] == "running" and later["users"] == 4
        assert later["elapsed_s"] > first["elapsed_s"]
        assert len(later["series"]) >= 1 and later["series"][-1]["users"] == 4
        assert 0 <= later["total"]["in_flight"] <= 4

        web.stop()
        stats = web.wait_for("the stop", lambda s: s["state"] == "stopped" and (tmp_path / "summary.json").exists())
        table = json.loads(web.get("/stats/requests"))["extended_stats"]
        requests_download = web.get("/llm/download/requests.jsonl")
        summary_download = json.loads(web.get("/llm/download/summary.json"))
        report_status = web.status("/llm/download/report.html")

    records = read_jsonl(tmp_path / "requests.jsonl")
    ok = [r for r in records if r["outcome"] == "ok"]
    assert len(ok) >= 12
    assert {r["model"] for r in records} == {"claude-sonnet-4-5"}
    assert max(r["output_tokens"] for r in ok) <= 24

    total = stats["total"]["run"]
    assert total["calls"] == len(records)
    assert total["ok"] == len(ok)
    errors = Counter(r["outcome"] for r in records if r["outcome"] not in ("ok", "cancelled"))
    assert total["errors"] == dict(errors)
    assert total["output_tokens"] == sum(r["output_tokens"] or 0 for r in records)
    assert_metric(total["ttft_s"], [r["ttft_s"] for r in ok])
    assert_metric(total["first_text_s"], [r["first_text_s"] for r in ok])
    assert_metric(total["completion_s"], [r["completion_s"] for r in ok])
    assert_metric(total["itl_s"], [gap for r in ok for gap in r["itl_s"]])
    assert_metric(total["tpot_s"], [r["tpot_s"] for r in ok if r["tpot_s"] is not None])
    assert stats["scenarios"]["ShortChat"]["run"]["calls"] == len(records)
    # The run was shorter than the window, so the window holds every call.
    assert stats["total"]["window"]["calls"] == len(records)
    assert_metric(stats["total"]["window"]["ttft_s"], [r["ttft_s"] for r in ok])

    # The tab's table rows (on Locust's own /stats/requests) show the same figures, in ms.
    assert table[0]["key"] == "llm"
    row = {r["name"]: r for r in table[0]["data"]}["Total"]
    assert row["calls"] == len(records)
    assert row["ttft_p50"] == round(pct([r["ttft_s"] for r in ok], 50) * 1000, 1)

    # Downloads are the run's files.
    assert requests_download == (tmp_path / "requests.jsonl").read_bytes()
    assert summary_download == json.loads((tmp_path / "summary.json").read_text())
    assert report_status == (200 if (tmp_path / "report.html").exists() else 404)
