"""Live metrics of real runs: scraped during and after them, by a real Prometheus, pushed over OTLP.

Real ``locust`` processes against the embedded simulator (with injected faults, so error
outcomes are counted too): a web UI run (``--autostart``/``--autoquit``, under
``--web-base-path``) scraped by a real Prometheus that answers every query of the Grafana
dashboard; a headless run on ``--metrics-port`` that waits for its final scrape
(``--metrics-linger``) and pushes to an OTLP receiver; a distributed run
(``--processes 2``) whose master serves the merged figures. Each time the counts must be
the records of ``requests.jsonl``, per outcome, and the TTFT histogram's count the TTFT
samples. And ``--web-login``: a 401 without credentials, the metrics with them.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import pytest
import yaml
from flask_login import UserMixin
from locust.env import Environment
from prometheus_client.parser import text_string_to_metric_families

from harness import AnthropicUser, HarnessOptions, attach
from harness.core.errors import ConfigError
from harness.core.options import declared
from harness.outputs import live_export
from harness.outputs.live_export import LiveExport, LiveMetricsOptions
from tests.locust_runs import read_jsonl
from tests.metrics_records import synthetic_records
from tests.test_otlp import Receiver, metrics_of
from tests.test_prometheus import (
    DASHBOARD,
    dashboard_queries,
    free_port,
    needs_prometheus,
    prometheus_server,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
HISTOGRAM_KEYS = {
    "llm_ttft_seconds": "ttft_s",
    "llm_time_to_first_text_seconds": "first_text_s",
    "llm_completion_seconds": "completion_s",
    "llm_itl_seconds": "itl_s",
    "llm_tpot_seconds": "tpot_s",
}


@dataclass
class Scrape:
    """One scrape, parsed by prometheus_client's own parser: (sample name, labels, value) per family."""

    families: dict[str, list[tuple[str, dict[str, str], float]]]

    def total(self, name: str, **labels: str) -> float:
        family = name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
        return sum(
            v
            for n, lab, v in self.families.get(family, [])
            if n == name and all(lab.get(k) == x for k, x in labels.items())
        )

    def labels(self, family: str, label: str) -> dict[str, float]:
        return {lab[label]: v for _, lab, v in self.families.get(family, [])}


def scrape(url: str) -> Scrape | None:
    """The metrics at ``url``, or None while nothing answers there."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None
    return Scrape(
        {f.name: [(s.name, s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(text)}
    )


def last_scrape(proc: subprocess.Popen[bytes], url: str) -> Scrape | None:
    """Scrape ``url`` until ``proc`` exits (it lingers until the final figures are scraped); the last answer."""
    final: Scrape | None = None
    while proc.poll() is None:
        final = scrape(url) or final
        time.sleep(0.2)  # a scrape's pace, not a wait for a condition: the loop ends with the process
    return final


def locust(out: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "ANTHROPIC_", "OTEL_"))}
    with open(out / "locust.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", "locustfile.py", "--report-dir", str(out), *args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    out = tmp_path / "out"
    out.mkdir()
    yield out


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        return proc.wait(timeout=30)


def check_counts_equal_the_records(final: Scrape, out: Path) -> list[dict[str, Any]]:
    """Every call of requests.jsonl counted once, per outcome and per series; each histogram's count its samples."""
    records = read_jsonl(out / "requests.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    assert final.total("llm_requests_total") == len(records) > 0
    by_outcome = Counter(r["outcome"] for r in records)
    assert final.labels("llm_requests", "outcome").keys() >= by_outcome.keys()
    for outcome, n in by_outcome.items():
        assert final.total("llm_requests_total", outcome=outcome) == n, outcome
    by_series = Counter((r["scenario"], r["model"], r["outcome"]) for r in records)
    for (scenario, model, outcome), n in by_series.items():
        assert final.total("llm_requests_total", scenario=scenario, model=model, outcome=outcome) == n
    ok = [r for r in records if r["outcome"] == "ok"]
    assert final.total("llm_ttft_seconds_count") == sum(r["ttft_s"] is not None for r in ok) > 0
    for name, key in HISTOGRAM_KEYS.items():
        assert final.total(f"{name}_count") == summary["overall"][key]["count"], name
    assert final.total("llm_ttft_seconds_sum") == pytest.approx(math.fsum(r["ttft_s"] for r in ok if r["ttft_s"]))
    assert final.total("llm_output_tokens_total") == sum(r["output_tokens"] or 0 for r in records)
    return records


# The graph page of the README (docs/live-metrics-prometheus.png) comes from this test's run, refreshed on
# request only, with a longer run of two models so its panels show a shape:
# HARNESS_UPDATE_DOCS=1 python -m pytest tests/test_live_export.py -k web_ui
UPDATE_DOCS = os.environ.get("HARNESS_UPDATE_DOCS") == "1"
DOCS_SCREENSHOT = ROOT / "docs" / "live-metrics-prometheus.png"
STAGES = ("2,4,8,16", "8s", "CompareHaiku", "CompareSonnet") if UPDATE_DOCS else ("2,4", "3s", "ShortChat")
# Injected errors: the "Errors by class" panel needs some in a short run too.
FAULTS = (
    "--fault-overloaded 0.05 --fault-stream-error 0.03"
    if UPDATE_DOCS
    else "--fault-overloaded 0.1 --fault-stream-error 0.1"
)
# The dashboard panels the graph page shows: (panel title, which of its queries).
GRAPH_PANELS = (
    ("Time to first token", 1),
    ("TTFT p95 by scenario", 0),
    ("Requests per second", 0),
    ("Tokens per second", 0),
    ("Errors by class", 0),
    ("In flight and users", 0),
)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def graph_page(prometheus: str, seconds: int, path: Path) -> int:
    """Prometheus's own graph page with some of the dashboard's queries, in Chromium; a screenshot to ``path``.

    Returns how many panels drew a line. (Grafana is not installable here; the queries are the dashboard's.)
    """
    from playwright.sync_api import sync_playwright

    doc = json.loads(DASHBOARD.read_text())
    panels = {p["title"]: p for p in doc["panels"]}
    params: dict[str, str] = {}
    for i, (title, target) in enumerate(GRAPH_PANELS):
        expr = panels[title]["targets"][target]["expr"]
        for name, value in {"$__rate_interval": "5s", "$scenario": ".*", "$model": ".*"}.items():
            expr = expr.replace(name, value)
        params.update({f"g{i}.expr": expr, f"g{i}.tab": "0", f"g{i}.range_input": f"{seconds}s"})
    # Two columns of short graphs, so the page fits a README.
    style = (
        "#graph_container{display:grid;grid-template-columns:1fr 1fr;column-gap:16px}"
        " #graph_container>:not(.graph_wrapper){grid-column:1/-1} .graph{min-height:190px}"
        " .navbar{position:static!important} body{padding-top:0!important}"
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.add_init_script(
                f"document.addEventListener('DOMContentLoaded', () => {{"
                f" const s = document.createElement('style'); s.textContent = {json.dumps(style)};"
                f" document.head.appendChild(s); }})"
            )
            page.goto(f"{prometheus}/classic/graph?{urllib.parse.urlencode(params)}")
            drawn = (
                "() => [...document.querySelectorAll('.graph_wrapper')].filter((w) => w.querySelector('.graph path'))"
            )
            page.wait_for_function(f"{drawn}.length >= {len(GRAPH_PANELS)}", timeout=20_000)
            # Each query box sized to its text once the columns are laid out, no box focused.
            page.evaluate(
                """() => { document.activeElement?.blur();
                    for (const el of document.querySelectorAll('textarea.expression_input')) {
                        el.style.height = 'auto'; el.style.height = el.scrollHeight + 2 + 'px'; } }"""
            )
            page.wait_for_timeout(300)
            page.screenshot(path=str(path), full_page=True)
            return int(page.evaluate(f"() => ({drawn})().length"))
        finally:
            browser.close()


@needs_prometheus
def test_a_web_ui_run_scraped_during_and_after_it_and_every_dashboard_query_answers(run_dir: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/lt"
    stages, stage_duration, *scenarios = STAGES
    labels = {f"u{n}" for n in stages.split(",")}
    with prometheus_server(run_dir.parent, f"127.0.0.1:{port}", "/lt/metrics") as prometheus:
        began = time.time()
        proc = locust(
            run_dir,
            *scenarios,
            *("--web-host", "127.0.0.1", "--web-port", str(port), "--web-base-path", "/lt"),
            *("--autostart", "--run-time", "120s", "--autoquit", "120", "--max-tokens", "40"),
            *("--load-shape", "steps", "--stages", stages, "--stage-duration", stage_duration, "--warmup", "0s"),
            *("--simulator-args", f"--seed 5 --max-batch 4 {FAULTS}"),
        )
        try:
            during = wait_until(
                lambda: (
                    (s := scrape(f"{base}/metrics"))
                    and s.total("llm_users") > 0
                    and s.families["llm_in_flight"]
                    and s.families["llm_generator_cpu_ratio"]  # a row a second
                    and s
                ),
                "a scrape while calls are in flight",
            )
            assert during.labels("llm_stage_info", "stage").keys() <= labels
            assert during.families["llm_generator_cpu_ratio"][0][1] == {"process": "local"}
            wait_until(lambda: (run_dir / "summary.json").exists(), "the run to end", timeout=60)
            final = scrape(f"{base}/metrics")
            assert final is not None
            records = check_counts_equal_the_records(final, run_dir)
            outcomes = {r["outcome"] for r in records}
            assert "ok" in outcomes and outcomes & {"http_529", "stream_overloaded_error"}
            assert final.total("llm_users") == 0 and not final.families["llm_in_flight"]

            # Prometheus has every call, and each panel of the dashboard has data over the run.
            wait_until(lambda: prometheus.scalar("sum(llm_requests_total)") == len(records), "the final scrape")
            ended = time.time()
            queries = dashboard_queries(__rate_interval="4s")  # Grafana's: 4 scrape intervals
            empty = [q for q in queries if not prometheus.query_range(q, began, ended)]
            assert not empty, f"dashboard queries without data: {empty}"
            for q in queries:
                if q.startswith("histogram_quantile"):
                    values = [float(v) for s in prometheus.query_range(q, began, ended) for _, v in s["values"]]
                    assert any(math.isfinite(v) and v > 0 for v in values), q
            stage_series = prometheus.query_range("max by (stage) (llm_stage_info)", began, ended)
            # Each stage lasts 3 s: a loaded machine's slow scrapes (1 s timeout) may miss one of them.
            assert {s["metric"]["stage"] for s in stage_series} <= labels
            errors = prometheus.query("sum by (outcome) (llm_requests_total)")
            assert {e["metric"]["outcome"]: float(e["value"][1]) for e in errors} == Counter(
                r["outcome"] for r in records
            )
            # A person's look: Prometheus's graph page draws the dashboard's queries.
            if Path(CHROMIUM).exists() and importlib.util.find_spec("playwright") is not None:
                shot = DOCS_SCREENSHOT if UPDATE_DOCS else run_dir / "graph.png"
                seconds = math.ceil(ended - began) + 5
                assert graph_page(prometheus.url, seconds, shot) == len(GRAPH_PANELS)
        finally:
            proc.terminate()
            stop(proc)


def test_a_headless_run_on_metrics_port_is_scraped_after_it_and_pushed_over_otlp(run_dir: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    receiver = Receiver()
    try:
        proc = locust(
            run_dir,
            *("--headless", "-u", "6", "-r", "6", "-t", "5s", "--max-tokens", "40"),
            *("--metrics-port", str(port), "--metrics-linger", "60", "--otlp-endpoint", receiver.url),
            *("--simulator-args", "--seed 2 --fault-rate-limit 0.1"),
        )
        during = wait_until(
            lambda: (s := scrape(url)) and s.total("llm_requests_total") > 0 and s.total("llm_in_flight") > 0 and s,
            "a scrape during the run",
        )
        assert during.total("llm_users") == 6
        # After the summary the process waits (--metrics-linger) until the final figures are scraped.
        wait_until(lambda: (run_dir / "summary.json").exists(), "the run to end", timeout=60)
        final = last_scrape(proc, url)
        assert proc.returncode == 1  # some calls failed with 429
        assert final is not None
        records = check_counts_equal_the_records(final, run_dir)
        assert "http_429" in {r["outcome"] for r in records}
        log = (run_dir / "locust.log").read_text()
        assert f"live metrics: {url}" in log

        # The OTLP push after the run (and at exit) carries the same counts.
        last = metrics_of(receiver.requests[-1][2])
        pushed = Counter()
        for point in last["llm_requests_total"].sum.data_points:
            pushed[next(kv.value.string_value for kv in point.attributes if kv.key == "outcome")] += point.as_int
        assert pushed == Counter(r["outcome"] for r in records)
        ttft = sum(p.count for p in last["llm_ttft_seconds"].histogram.data_points)
        assert ttft == final.total("llm_ttft_seconds_count")
    finally:
        receiver.close()


def test_a_master_serves_the_merged_figures_of_its_workers(run_dir: Path) -> None:
    port, master_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    proc = locust(
        run_dir,
        *("--headless", "--processes", "2", "-u", "6", "-r", "6", "-t", "6s", "--max-tokens", "40"),
        # Not Locust's default 5557: another run on this machine may hold it.
        *("--master-bind-port", str(master_port), "--master-port", str(master_port)),
        *("--metrics-port", str(port), "--metrics-linger", "60"),
        *("--simulator-args", "--seed 4 --fault-api-error 0.1"),
    )
    try:
        # The master makes no call: calls in flight and CPU per process come from its workers' reports.
        during = wait_until(
            lambda: (
                (s := scrape(url))
                and s.total("llm_in_flight") > 0
                and len(s.labels("llm_generator_cpu_ratio", "process")) == 3
                and s
            ),
            "a scrape with the workers' figures",
        )
        processes = during.labels("llm_generator_cpu_ratio", "process")
        assert sum(p.startswith("worker ") for p in processes) == 2 and "master" in processes
        assert during.labels("llm_generator_loop_lag_seconds", "process").keys() == processes.keys()
        assert during.total("llm_users") == 6
        wait_until(lambda: (run_dir / "summary.json").exists(), "the run to end", timeout=60)
        final = last_scrape(proc, url)
    finally:
        stop(proc)
    assert final is not None
    records = check_counts_equal_the_records(final, run_dir)
    assert len({r["worker"] for r in records}) == 2
    assert "http_500" in {r["outcome"] for r in records}


class ShortCall(AnthropicUser):
    model = "claude-haiku-4-5"
    max_tokens = 8
    prompt = "hi"


class Prometheus_(UserMixin):
    id = "prometheus"


def test_under_web_login_metrics_asks_for_the_login_and_serves_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["locust"])  # the web UI parses the command line for its start form
    env = Environment(user_classes=[ShortCall], host="http://127.0.0.1:9")
    env.create_local_runner()
    port = free_port()
    web_ui = env.create_web_ui("127.0.0.1", port, web_login=True)
    # A team's auth plugin: Flask-Login with a request loader that accepts a bearer token.
    web_ui.login_manager.user_loader(lambda user_id: None)
    web_ui.login_manager.request_loader(
        lambda request: Prometheus_() if request.headers.get("Authorization") == "Bearer s3cret" else None
    )
    export = attach(env, HarnessOptions()).install(live_export.FEATURE)
    assert isinstance(export, LiveExport)
    for record in synthetic_records(40):
        export.metrics.observe(record)
    gevent.sleep(0.1)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 401
        assert "--metrics-port" in refused.value.read().decode()
        request = urllib.request.Request(url, headers={"Authorization": "Bearer s3cret"})
        with urllib.request.urlopen(request, timeout=10) as response:
            families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
        assert sum(s.value for s in families["llm_requests"].samples) == 40
    finally:
        web_ui.stop()
        env.runner.quit()  # type: ignore[union-attr]


def test_a_bad_option_stops_the_run_with_one_line() -> None:
    command = ["locust", "-f", "locustfile.py", "--headless", "-t", "1s", "--host", "http://127.0.0.1:9"]
    result = subprocess.run(
        [sys.executable, "-m", *command, "--otlp-endpoint", "collector:4318"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith(("LOCUST_", "ANTHROPIC_"))},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "locust: error: --otlp-endpoint 'collector:4318': give the collector's OTLP/HTTP URL" in result.stderr
    for bad, message in (
        ({"metrics_port": 70000}, "--metrics-port 70000: give a TCP port"),
        ({"metrics_host": " "}, "--metrics-host is empty"),
        ({"metrics_linger": -1.0}, "--metrics-linger -1.0: give a number of seconds"),
        ({"otlp_endpoint": "grpc://c:4317"}, "--otlp-endpoint 'grpc://c:4317'"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            LiveMetricsOptions(**bad)  # type: ignore[arg-type]


def test_the_compose_master_sets_only_declared_live_metrics_options() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    env = compose["services"]["master"]["environment"]
    declared_vars = {spec.env_var for _, spec in declared(LiveMetricsOptions)}
    set_here = {k for k in env if k.startswith("LOCUST_METRICS_")}
    assert set_here == {"LOCUST_METRICS_PORT", "LOCUST_METRICS_HOST", "LOCUST_METRICS_LINGER"} <= declared_vars
    assert "LOCUST_METRICS_PORT" not in compose["services"]["worker"].get("environment", {})
    LiveMetricsOptions(
        metrics_port=int(env["LOCUST_METRICS_PORT"]),
        metrics_host=env["LOCUST_METRICS_HOST"],
        metrics_linger=float(env["LOCUST_METRICS_LINGER"]),
    )
