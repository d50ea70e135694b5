"""Flask routes and template arguments that put the LLM tab into Locust's web UI.

``/llm/stats`` is the JSON the tab shows; ``/llm/tab.js`` draws the tab's panels; the
downloads serve the run's files from ``--report-dir``. Routes sit under the same
``--web-base-path`` as Locust's own and honour ``--web-login``.
"""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, make_response, request, send_file, send_from_directory
from locust.web import WebUI

from harness.core.errors import ConfigError
from harness.monitors.live import LiveStats
from harness.runtime.options import HarnessOptions
from harness.runtime.state import harness_of

__all__ = ["TABLE_COLUMNS", "TAB_KEY", "register", "table_rows"]

TAB_KEY = "llm"
STATIC = Path(__file__).parent / "static"
DOWNLOADS = {
    "requests.jsonl": "application/x-ndjson",
    "summary.json": "application/json",
    "report.html": "text/html",
}

# The tab's table: (key, title). Latencies are exact over the run, in ms; rates over the last 30 s.
TABLE_COLUMNS = (
    ("name", "Scenario"),
    ("calls", "# Calls"),
    ("failed", "# Fails"),
    ("in_flight", "In flight"),
    ("rps", "Req/s (30 s)"),
    ("out_tps", "Output tok/s (30 s)"),
    ("ttft_p50", "TTFT p50 (ms)"),
    ("ttft_p95", "TTFT p95 (ms)"),
    ("ttft_p99", "TTFT p99 (ms)"),
    ("first_text_p50", "First text p50 (ms)"),
    ("completion_p50", "Completion p50 (ms)"),
    ("completion_p95", "Completion p95 (ms)"),
    ("itl_p50", "ITL p50 (ms)"),
    ("tpot_p50", "TPOT p50 (ms)"),
)


def _ms(value: float | None) -> float | str:
    return "" if value is None else round(value * 1000.0, 1)


def _table_row(name: str, row: dict[str, Any]) -> dict[str, Any]:
    run, window = row["run"], row["window"]
    return {
        "name": name,
        "calls": run["calls"],
        "failed": run["failed"],
        "in_flight": row["in_flight"],
        "rps": round(window["requests_per_s"], 2),
        "out_tps": round(window["output_tokens_per_s"], 1),
        "ttft_p50": _ms(run["ttft_s"]["p50"]),
        "ttft_p95": _ms(run["ttft_s"]["p95"]),
        "ttft_p99": _ms(run["ttft_s"]["p99"]),
        "first_text_p50": _ms(run["first_text_s"]["p50"]),
        "completion_p50": _ms(run["completion_s"]["p50"]),
        "completion_p95": _ms(run["completion_s"]["p95"]),
        "itl_p50": _ms(run["itl_s"]["p50"]),
        "tpot_p50": _ms(run["tpot_s"]["p50"]),
    }


def table_rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """The tab table's rows for a ``/llm/stats`` document: one per scenario, then the total."""
    rows = [_table_row(name, row) for name, row in stats["scenarios"].items()]
    return [*rows, _table_row("Total", stats["total"])]


def _template_args(web_base_path: str) -> dict[str, Any]:
    base = web_base_path.rstrip("/")
    downloads = [
        {"href": f"{base}/llm/download/requests.jsonl", "title": "Download LLM calls (requests.jsonl)"},
        {"href": f"{base}/llm/download/summary.json", "title": "Download LLM summary (summary.json)"},
        {"href": f"{base}/llm/download/report.html", "title": "Download LLM report (report.html)"},
        {"href": f"{base}/llm/stats", "title": "LLM live figures (JSON)"},
    ]
    return {
        "extended_tabs": [{"title": "LLM", "key": TAB_KEY}],
        "extended_tables": [{"key": TAB_KEY, "structure": [{"key": k, "title": t} for k, t in TABLE_COLUMNS]}],
        "extended_csv_files": downloads,
    }


def _refuse_bad_options(environment: Any) -> Response | None:
    """Check the harness's options of a start from the form; one message if one is bad."""
    parsed = environment.parsed_options
    if parsed is None:
        return None
    candidate = dict(vars(parsed))
    for name in HarnessOptions.__dataclass_fields__:
        if name not in request.form:
            continue
        current, value = candidate.get(name), request.form[name]
        try:
            candidate[name] = value if current is None else type(current)(value)
        except ValueError:
            return _refusal(environment, f"--{name.replace('_', '-')}: {value!r} is not a valid value")
    try:
        HarnessOptions.from_namespace(Namespace(**candidate))
    except ConfigError as exc:
        return _refusal(environment, str(exc))
    return None


def _refusal(environment: Any, message: str) -> Response:
    return jsonify({"success": False, "message": message, "host": environment.host})


def register(web_ui: WebUI, stats: LiveStats) -> None:
    """Add the LLM tab, ``/llm/*`` routes and hooks to a Locust :class:`~locust.web.WebUI`."""
    environment = web_ui.environment
    parsed = environment.parsed_options
    base_path = (getattr(parsed, "web_base_path", None) or "") if parsed is not None else ""
    blueprint = Blueprint("llm", __name__, url_prefix=base_path or None)
    auth = web_ui.auth_required_if_enabled

    @blueprint.route("/llm/stats")
    @auth
    def llm_stats() -> Response:
        return jsonify(stats.snapshot())

    @blueprint.route("/llm/tab.js")
    @auth
    def llm_tab_js() -> Response:
        response = send_from_directory(STATIC, "llm-tab.js", mimetype="application/javascript", max_age=0)
        return response

    @blueprint.route("/llm/download/<name>")
    @auth
    def llm_download(name: str) -> Response:
        return _download(environment, name)

    app = web_ui.app
    assert app is not None, "Locust's WebUI always has a Flask app"
    app.register_blueprint(blueprint)
    web_ui.template_args.update(_template_args(base_path))

    @app.before_request
    def check_swarm_options() -> Response | None:
        if request.endpoint == "locust.swarm" and request.method == "POST":
            return _refuse_bad_options(environment)
        return None

    @app.after_request
    def extend_locust_pages(response: Response) -> Response:
        if request.endpoint == "locust.request_stats" and response.is_json:
            document = response.get_json()
            document["extended_stats"] = [{"key": TAB_KEY, "data": table_rows(stats.snapshot())}]
            response.set_data(json.dumps(document))
        elif request.endpoint == "locust.index" and response.status_code == 200 and response.mimetype == "text/html":
            tag = f'<script src="{base_path.rstrip("/")}/llm/tab.js" defer></script></body>'
            response.set_data(response.get_data(as_text=True).replace("</body>", tag, 1))
        return response


def _download(environment: Any, name: str) -> Response:
    if name not in DOWNLOADS:
        return make_response(f"no such file: {name}", 404)
    harness = harness_of(environment)
    report_dir = harness.options.report_dir
    path = Path(report_dir) / name if report_dir else None
    if name == "summary.json" and (path is None or not path.exists() or _running(environment)):
        # While the run goes on (or with no --report-dir), the summary of the run so far.
        response = make_response(json.dumps(harness.reduce(), indent=2) + "\n")
        response.mimetype = DOWNLOADS[name]
        response.headers["Content-Disposition"] = "attachment; filename=summary.json"
        return response
    if path is None or not path.is_file():
        why = "start locust with --report-dir DIR to keep it" if path is None else "it has not been written yet"
        return make_response(f"no {name}: {why}", 404)
    return send_file(path.resolve(), mimetype=DOWNLOADS[name], as_attachment=name != "report.html", max_age=0)


def _running(environment: Any) -> bool:
    runner = environment.runner
    return runner is not None and runner.state in ("spawning", "running")
