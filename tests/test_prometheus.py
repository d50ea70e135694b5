"""A real Prometheus scrapes the live metrics; every query of the Grafana dashboard answers.

Debian's ``prometheus`` (``.ci/run`` installs it) runs on a free loopback port with a temp
config and storage, scraping every second a :class:`~harness.outputs.metrics.MetricsServer`
fed with synthetic call records. The deploy files of the compose ``monitoring`` profile are
checked for structure here too (Docker does not run in CI), and with ``promtool``.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.outputs.live_counts import HISTOGRAMS
from harness.outputs.metrics import GAUGES, TOKEN_COUNTERS, LiveMetrics, LiveSources, MetricsServer
from tests.metrics_records import expected_counts, synthetic_records

from .locust_runs import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "llm-loadtest.json"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
# Grafana's variables, as they are with "All" selected and a window of several scrapes.
VARIABLES = {"$__rate_interval": "1m", "$scenario": ".*", "$model": ".*"}

needs_prometheus = pytest.mark.skipif(
    not Path(PROMETHEUS).exists(), reason="prometheus is not installed: apt-get install -y prometheus"
)


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            return json.loads(response.read())

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector (raises on a PromQL error)."""
        answer = self.get("/api/v1/query", query=promql)
        assert answer["status"] == "success", (promql, answer)
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def query_range(self, promql: str, start: float, end: float, step: str = "1s") -> list[dict[str, Any]]:
        """A range query's series, as a dashboard panel asks (raises on a PromQL error)."""
        answer = self.get("/api/v1/query_range", query=promql, start=f"{start:.3f}", end=f"{end:.3f}", step=step)
        assert answer["status"] == "success", (promql, answer)
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            assert self.proc.poll() is None, "prometheus exited"
            return False


@dataclass
class Target:
    metrics: LiveMetrics
    server: MetricsServer


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    sources = LiveSources(
        in_flight=lambda: {"chat": 4, "rag": 1},
        users=lambda: 7,
        stage=lambda: "step-2",
        ratelimit_remaining=lambda: {"requests": 3900, "input_tokens": 380000, "output_tokens": 79000},
        cost_usd=lambda: 0.42,
        loop_lag_s=lambda: {"local": 0.0015},
        cpu_ratio=lambda: {"local": 0.35},
        generator_bound=lambda: False,
    )
    metrics = LiveMetrics(sources)
    server = MetricsServer(metrics, 0)
    yield Target(metrics, server)
    server.close()


@pytest.fixture(scope="module")
def prometheus(target: Target, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    with prometheus_server(tmp_path_factory.mktemp("prometheus"), f"127.0.0.1:{target.server.port}") as server:
        yield server


@contextmanager
def prometheus_server(work: Path, target: str, metrics_path: str = "/metrics") -> Iterator[Prometheus]:
    """A real Prometheus on a free loopback port, scraping ``target`` every second, stopped on exit."""
    job = {"job_name": "llm-loadtest", "metrics_path": metrics_path, "static_configs": [{"targets": [target]}]}
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [job],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (work / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",  # its default is every interface, port 9090
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Prometheus(f"http://127.0.0.1:{port}", proc)
    try:
        wait_until(server.ready, "prometheus to be ready")
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def dashboard_queries(**variables: str) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and annotations, variables filled in."""
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in doc["panels"] for t in panel.get("targets", [])]
    exprs += [a["expr"] for a in doc["annotations"]["list"] if "expr" in a]
    filled = []
    for expr in exprs:
        for name, value in {**VARIABLES, **{f"${k}": v for k, v in variables.items()}}.items():
            expr = expr.replace(name, value)
        assert "$" not in expr, f"an unknown variable in {expr}"
        filled.append(expr)
    return filled


@needs_prometheus
def test_prometheus_scrapes_every_call_and_sample_and_every_dashboard_query_answers(
    target: Target, prometheus: Prometheus
) -> None:
    records = synthetic_records(960)
    outcomes, samples = expected_counts(records)
    half = len(records) // 2
    # Two scrapes with calls in between, so that rate() has an increase to show.
    for r in records[:half]:
        target.metrics.observe(r)
    wait_until(lambda: prometheus.scalar("sum(llm_requests_total)") == half, "the first half to be scraped")
    for r in records[half:]:
        target.metrics.observe(r)
    wait_until(lambda: prometheus.scalar("sum(llm_requests_total)") == len(records), "every call to be scraped")

    assert prometheus.scalar('up{job="llm-loadtest"}') == 1
    by_outcome = {
        s["metric"]["outcome"]: float(s["value"][1]) for s in prometheus.query("sum by (outcome) (llm_requests_total)")
    }
    assert by_outcome == {outcome: float(n) for outcome, n in outcomes.items()}
    assert len(by_outcome) == 7
    assert prometheus.scalar("sum(llm_ttft_seconds_count)") == samples["ttft"]
    assert prometheus.scalar('sum(llm_ttft_seconds_bucket{le="+Inf"})') == samples["ttft"]
    assert prometheus.scalar("sum(llm_itl_seconds_count)") == samples["itl"]
    assert prometheus.scalar("sum(llm_completion_seconds_count)") == samples["completion"]
    assert prometheus.scalar("count(llm_ttft_seconds_count)") == 8  # 4 scenarios x 2 models
    assert prometheus.scalar("llm_users") == 7

    queries = dashboard_queries()
    assert len(queries) >= 25
    empty = [q for q in queries if not prometheus.query(q)]
    assert not empty, f"dashboard queries without data: {empty}"
    for q in queries:
        if q.startswith("histogram_quantile"):
            values = [float(s["value"][1]) for s in prometheus.query(q)]
            assert any(math.isfinite(v) and v > 0 for v in values), (q, values)
    p50 = prometheus.scalar(
        'histogram_quantile(0.5, sum by (le) (rate(llm_ttft_seconds_bucket{scenario=~".*",model=~".*"}[1m])))'
    )
    assert p50 is not None and 0.05 < p50 < 1.0  # the synthetic TTFTs' median is ~0.2 s
    for variable in ("scenario", "model"):
        answer = prometheus.get(f"/api/v1/label/{variable}/values", **{"match[]": "llm_requests_total"})
        assert len(answer["data"]) == {"scenario": 4, "model": 2}[variable]


def test_the_dashboard_is_wired_to_a_datasource_variable_and_the_live_metrics() -> None:
    doc = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert doc["uid"] == "llm-loadtest"
    titles = {p["title"] for p in doc["panels"]}
    assert {"Time to first token", "Completion time", "Errors by class", "Rate-limit headroom"} <= titles
    for panel in doc["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    used = set(re.findall(r"\bllm_[a-z_]+", " ".join(dashboard_queries())))
    used = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    assert used >= {
        "llm_requests_total",
        "llm_ttft_seconds",
        "llm_completion_seconds",
        "llm_output_tokens_total",
        "llm_in_flight",
        "llm_users",
        "llm_ratelimit_remaining",
        "llm_generator_loop_lag_seconds",
        "llm_generator_cpu_ratio",
        "llm_generator_bound",
        "llm_stage_info",
    }


def test_the_compose_monitoring_profile_is_wired_to_the_dashboard() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"], name
    assert "profiles" not in services["master"] and "profiles" not in services["worker"]
    master_env = services["master"]["environment"]
    port = master_env["LOCUST_METRICS_PORT"]

    prom_mounts = dict(v.rsplit(":", 2)[:2] for v in services["prometheus"]["volumes"] if v.startswith("./"))
    prom_config = prom_mounts["./prometheus/prometheus.yml"]
    assert f"--config.file={prom_config}" in services["prometheus"]["command"]
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in scrape["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == [f"master:{port}"]

    grafana_mounts = dict(v.rsplit(":", 2)[:2] for v in services["grafana"]["volumes"])
    assert grafana_mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboards = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "llm-loadtest.yml").read_text())
    folder = dashboards["providers"][0]["options"]["path"]
    assert grafana_mounts["./grafana/llm-loadtest.json"] == f"{folder}/llm-loadtest.json"
    datasources = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090" and source["isDefault"]


def test_docs_give_the_promql_of_every_panel_and_every_metric() -> None:
    doc = (ROOT / "docs" / "live-metrics.md").read_text().replace("\\|", "|")
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        assert f"| {panel['title']}" in doc, panel["title"]
        for target in panel["targets"]:
            # Quantiles past the first are written "the same with 0.95" in the doc.
            expr = target["expr"]
            assert expr in doc or re.sub(r"histogram_quantile\(0\.\d+", "histogram_quantile(0.5", expr) in doc, expr
    names = [spec.name for spec in HISTOGRAMS] + [spec.name + ("_total" if spec.counter else "") for spec in GAUGES]
    names += ["llm_requests_total"] + [f"{name}_total" for name, _ in TOKEN_COUNTERS]
    for name in names:
        assert f"| `{name}` |" in doc, name


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed: apt-get install -y prometheus")
def test_promtool_accepts_the_compose_prometheus_config() -> None:
    config = DEPLOY / "prometheus" / "prometheus.yml"
    result = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
