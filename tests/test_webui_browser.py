"""The LLM tab in a real browser: Debian's chromium driven by Playwright, against ``locust`` and the simulator.

A person's path: open the page, fill users and ramp-up and a harness option, press Start,
click the LLM tab, watch the figures move; they must agree with ``/llm/stats``. The
screenshot of the running tab is kept as ``docs/webui-llm.png`` (refreshed with HARNESS_UPDATE_DOCS=1).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.webui_process import ROOT, LocustWeb

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements.txt)")
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="chromium is not installed: apt-get install -y chromium chromium-driver"
)
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The screenshot in docs/ is refreshed on request only, so a test run leaves the tree clean:
# HARNESS_UPDATE_DOCS=1 python -m pytest tests/test_webui_browser.py
DOCS_SCREENSHOT = ROOT / "docs" / "webui-llm.png"


@pytest.fixture
def page() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1500})
            context.set_default_timeout(20_000)
            yield context.new_page()
        finally:
            browser.close()


def table_row(page: Any, name: str) -> dict[str, str]:
    """A row of Locust's table for the LLM tab, by column title."""
    return dict(
        page.evaluate(
            """(name) => {
                const th = document.querySelector('th[data-sortkey="ttftP50"]');
                const table = th.closest('table');
                const heads = [...table.querySelectorAll('thead th')].map((h) => h.innerText.replace(/\\s+/g, ' '));
                const row = [...table.querySelectorAll('tbody tr')].find((r) => r.cells[0].innerText === name);
                return row ? heads.map((h, i) => [h, row.cells[i].innerText]) : [];
            }""",
            name,
        )
    )


def panel_cell(page: Any, card: str, row_title: str, column: int) -> str:
    return str(
        page.evaluate(
            """([card, rowTitle, column]) => {
                const rows = document.querySelectorAll(`#llm-panel [data-llm="${card}"] tbody tr`);
                const row = [...rows].find((r) => r.cells[0].innerText === rowTitle);
                return row ? row.cells[column].innerText : '';
            }""",
            [card, row_title, column],
        )
    )


def luminance(css_color: str) -> float:
    r, g, b = (int(x) for x in css_color[css_color.index("(") + 1 : css_color.index(")")].split(",")[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_llm_tab_live_in_a_browser(page: Any, tmp_path: Path) -> None:
    with LocustWeb(tmp_path) as web:
        page.goto(web.url + "/")
        page.fill("input[name=userCount]", "6")
        page.fill("input[name=spawnRate]", "6")
        page.get_by_text("Advanced options").click()
        page.get_by_text("Custom parameters").click()
        page.fill("input[name=maxTokens]", "32")
        page.get_by_role("button", name="Start").click()

        page.get_by_role("tab", name="LLM").click()
        page.wait_for_function("() => new URLSearchParams(location.search).get('tab') === 'llm'")
        page.wait_for_selector('#llm-panel [data-llm="charts"] svg polyline', timeout=30_000)
        total_calls_at_least = """(calls) => {
            const th = document.querySelector('th[data-sortkey="ttftP50"]');
            const rows = th ? [...th.closest('table').querySelectorAll('tbody tr')] : [];
            const total = rows.find((r) => r.cells[0].innerText === 'Total');
            return Boolean(total) && Number(total.cells[1].innerText) >= calls;
        }"""
        page.wait_for_function(total_calls_at_least, arg=1, timeout=30_000)
        first = table_row(page, "Total")
        page.wait_for_function(total_calls_at_least, arg=int(first["# Calls"]) + 6, timeout=30_000)
        moving = table_row(page, "Total")
        assert int(moving["# Calls"]) > int(first["# Calls"])
        assert float(moving["TTFT p50 (ms)"]) > 0
        assert page.inner_text('#llm-panel [data-llm-field="state"]') == "running"
        # A few chart points, so the screenshot shows the charts moving.
        web.wait_for("chart points", lambda s: sum(p["ttft_p50_s"] is not None for p in s["series"]) >= 4)
        page.wait_for_timeout(2200)
        shot = DOCS_SCREENSHOT if os.environ.get("HARNESS_UPDATE_DOCS") == "1" else tmp_path / "webui-llm.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000

        # The theme is Locust's: switching to dark mode turns the panel's text light.
        light = luminance(page.evaluate("() => getComputedStyle(document.querySelector('#llm-panel td')).color"))
        page.locator("header button").last.click()
        page.wait_for_timeout(2500)
        dark = luminance(page.evaluate("() => getComputedStyle(document.querySelector('#llm-panel td')).color"))
        assert light < 0.5 < dark

        # Stopped, the figures hold still: the tab then shows exactly what /llm/stats says.
        web.stop()
        web.wait_for("the stop", lambda s: s["state"] == "stopped")
        page.wait_for_function("() => document.querySelector('#llm-panel')?.dataset.state === 'stopped'")
        stats = json.loads(page.request.get(web.url + "/llm/stats").text())
        total = stats["total"]["run"]
        page.wait_for_function(
            "(calls) => document.querySelector('#llm-panel [data-llm-field=\"calls\"]').innerText === String(calls)",
            arg=total["calls"],
        )
        # Locust's UI stops polling its tables when a run stops; a reload shows the final rows.
        page.reload()
        page.wait_for_selector('#llm-panel [data-llm="percentiles"]')
        # The table fills in after its first poll, which a loaded machine can delay past the panel.
        page.wait_for_function(
            """() => [...(document.querySelector('th[data-sortkey="ttftP50"]')?.closest('table')
                      ?.querySelectorAll('tbody tr') ?? [])].some((r) => r.cells[0].innerText === 'Total')"""
        )
        row = table_row(page, "Total")
        assert int(row["# Calls"]) == total["calls"]
        assert float(row["TTFT p50 (ms)"]) == round(total["ttft_s"]["p50"] * 1000, 1)
        assert float(row["Completion p95 (ms)"]) == round(total["completion_s"]["p95"] * 1000, 1)
        assert panel_cell(page, "percentiles", "TTFT", 4) == f"{total['ttft_s']['p99'] * 1000:.1f}"
        assert panel_cell(page, "percentiles", "ITL", 1) == f"{total['itl_s']['p50'] * 1000:.1f}"
        assert max(r["output_tokens"] or 0 for r in map(json.loads, (tmp_path / "requests.jsonl").open())) <= 32
