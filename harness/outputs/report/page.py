"""report.html: one self-contained page (plotly's JS embedded, no network fetch) from runs.

The page holds, besides the charts, the per-stage figures it plots as JSON in
``<script type="application/json" id="report-data">``, so a reader (or a test) can
check every number without parsing the charts.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from harness.core.stages import offered_text
from harness.outputs.report import figures
from harness.outputs.report.data import Run
from harness.outputs.stage_table import describe_knee, describe_sustainable

__all__ = ["compare_page", "run_page"]

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px 32px; color: #222; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.sub { color: #666; margin-bottom: 16px; }
.cards { display: flex; gap: 14px; flex-wrap: wrap; margin: 12px 0 8px; }
.card { border: 1px solid #ddd; border-radius: 8px; padding: 10px 16px; min-width: 190px; background: #fafafa; }
.card .k { color: #666; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .v { font-size: 22px; font-weight: 600; margin-top: 2px; }
.card .n { color: #555; font-size: 12px; margin-top: 2px; max-width: 360px; }
.knee .v, .bound .v { color: #c62828; } .best .v { color: #2e7d32; }
table { border-collapse: collapse; font-size: 12.5px; margin: 6px 0; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 4px 9px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
tr.knee td { background: #fdecea; } tr.breach td { color: #999; }
.config td { text-align: left; } .note { color: #666; font-size: 12px; max-width: 1100px; }
"""


def _fig_html(fig: go.Figure) -> str:
    return str(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))


def _optional(fig: go.Figure | None) -> list[str]:
    return [] if fig is None else [_fig_html(fig)]


def _page(title: str, body: Iterable[str], data: Mapping[str, Any]) -> str:
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{STYLE}</style>",
            f'<script type="text/javascript">{get_plotlyjs()}</script>',
            "</head><body>",
            *body,
            f'<script type="application/json" id="report-data">{payload}</script>',
            "</body></html>",
        ]
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def _card(kind: str, key: str, value: str, note: str = "") -> str:
    return (
        f'<div class="card {kind}"><div class="k">{html.escape(key)}</div><div class="v">{html.escape(value)}</div>'
        f'<div class="n">{html.escape(note)}</div></div>'
    )


def _cards(run: Run) -> str:
    la = run.analysis["load_analysis"]
    rows = run.rows
    knee, best = la.get("knee"), la.get("max_sustainable")
    peak = max(rows, key=lambda r: r["overall"]["output_tokens_per_s"], default=None)
    cards = [
        _card(
            "knee",
            "knee",
            f"{knee['stage']} · {offered_text(knee['kind'], knee['offered'])}" if knee else "not reached",
            describe_knee(knee),
        ),
        _card(
            "best",
            "max sustainable load",
            f"{best['stage']} · {offered_text(best['kind'], best['offered'])}" if best else "none",
            "criteria: " + (", ".join(la.get("criteria", [])) or "none"),
        ),
    ]
    if peak is not None:
        o = peak["overall"]
        cards.append(
            _card(
                "",
                "peak throughput",
                f"{o['output_tokens_per_s']:.0f} tok/s",
                f"{o['requests_per_s']:.2f} req/s at {peak['label']}",
            )
        )
    if best is not None:
        o = run.analysis["stages"][best["stage"]]["overall"]
        cards.append(
            _card(
                "",
                "TTFT p50 / p95 at max sustainable",
                f"{_ms(o['ttft_s']['p50'])} / {_ms(o['ttft_s']['p95'])} ms",
                f"completion p95 {_ms(o['completion_s']['p95'])} ms",
            )
        )
    search = run.summary.get("search")
    if search:
        best = search.get("max_sustainable")
        cards.append(
            _card(
                "best",
                "capacity search",
                "none" if best is None else offered_text(search["kind"], best),
                f"{search['answer']} ({len(search['probes'])} probes, {search['stop_reason']})",
            )
        )
    replay = run.summary.get("replay")
    if replay:
        error = replay.get("start_error_s") or {}
        cards.append(
            _card(
                "",
                "trace replay",
                f"{replay.get('lines', 0)} calls · {replay.get('late', 0)} late · {replay.get('dropped', 0)} dropped",
                f"{replay.get('file')}: start vs schedule p99 {_ms(error.get('p99'))} ms; "
                f"{replay.get('achieved_rate') or 0:.2f} req/s achieved vs "
                f"{replay.get('recorded_rate') or 0:.2f} recorded",
            )
        )
    generator = run.summary.get("generator")
    if generator:
        bound = bool(generator.get("generator_bound"))
        if bound:
            note = "; ".join(generator.get("reasons") or []) + f". Fix: {generator.get('advice')}"
            cards.append(_card("bound", "load generator", "generator-bound", note))
        else:
            cards.append(_card("", "load generator", "ok", str(generator.get("message", ""))))
    return '<div class="cards">' + "".join(cards) + "</div>"


STAGE_COLUMNS = (
    "stage",
    "offered",
    "in flight",
    "req/s",
    "out tok/s",
    "goodput/s",
    "TTFT p50",
    "p95",
    "p99",
    "compl p50",
    "p95",
    "ITL p50",
    "TPOT p50",
    "ok",
    "errors",
    "late",
    "dropped",
    "verdict",
)


def stage_table(run: Run) -> str:
    la = run.analysis["load_analysis"]
    knee = (la.get("knee") or {}).get("stage")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in STAGE_COLUMNS)
    body = []
    for r in run.rows:
        o = r["overall"]
        errors = ", ".join(f"{k}={v}" for k, v in o["errors"].items()) or "0"
        verdict = ("meets" if r.get("meets_criteria") else "breaches") + (" · knee" if r["label"] == knee else "")
        cells = [
            r["label"],
            offered_text(r["kind"], r["offered"]),
            f"{r['concurrency_mean']:.1f}",
            f"{o['requests_per_s']:.2f}",
            f"{o['output_tokens_per_s']:.0f}",
            f"{o['goodput_per_s']:.2f}",
            _ms(o["ttft_s"]["p50"]),
            _ms(o["ttft_s"]["p95"]),
            _ms(o["ttft_s"]["p99"]),
            _ms(o["completion_s"]["p50"]),
            _ms(o["completion_s"]["p95"]),
            f"{o['itl_s']['p50'] * 1000:.1f}" if o["itl_s"]["p50"] is not None else "-",
            f"{o['tpot_s']['p50'] * 1000:.1f}" if o["tpot_s"]["p50"] is not None else "-",
            str(o["ok"]),
            errors,
            str(r["late"]),
            str(r["dropped"]),
            verdict,
        ]
        cls = "knee" if r["label"] == knee else ("" if r.get("meets_criteria") else "breach")
        body.append(f'<tr class="{cls}">' + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _config_table(run: Run) -> str:
    config = dict(run.summary.get("config") or {})
    options = run.analysis["load_analysis"].get("options")
    if options:
        config["load"] = options
    models = sorted({r.model for r in run.records})
    config.setdefault("models", ", ".join(models))
    config["calls recorded"] = len(run.records)
    config["duration_s"] = round(float(run.summary.get("duration_s", 0.0)), 1)
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_plain(v))}</td></tr>"
        for k, v in config.items()
        if v not in (None, "", [], {})
    )
    return f'<table class="config">{rows}</table>'


def _plain(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items() if v not in (None, "", (), []))
    if isinstance(value, (list, tuple)):
        return ",".join(_plain(v) for v in value)
    return str(value)


_VERDICT_KEYS = ("verdict", "generator_bound", "message", "reasons", "advice", "thresholds")


def _run_data(run: Run) -> dict[str, Any]:
    generator = run.summary.get("generator")
    data = {"name": run.name, "stages": run.rows, "load_analysis": run.analysis["load_analysis"]}
    for section in ("search", "replay"):
        if run.summary.get(section):
            data[section] = run.summary[section]
    if generator:
        data["generator"] = {k: generator.get(k) for k in _VERDICT_KEYS}
    return data


def run_page(run: Run) -> str:
    la = run.analysis["load_analysis"]
    stop = la.get("stop_reason")
    body = [
        f"<h1>Load test report: {html.escape(run.name)}</h1>",
        f'<div class="sub">{len(run.records)} calls · {len(run.rows)} stage(s) · latencies in ms · '
        "each stage's warm-up is left out of its figures</div>",
        _cards(run),
        '<p class="note">Knee rule: ' + html.escape(la.get("knee_rule", "")) + ".</p>",
        '<p class="note">Max sustainable load: ' + html.escape(describe_sustainable(la)) + ".</p>",
        f'<p class="note">Sweep stopped: {html.escape(stop)}.</p>' if stop else "",
        "<h2>Per stage</h2>",
        stage_table(run),
        _fig_html(figures.throughput_latency(run)),
        _fig_html(figures.latency_vs_load(run)),
        _fig_html(figures.cdfs(run)),
        "<h2>Over time</h2>",
        _fig_html(figures.timeline(run)),
        _fig_html(figures.errors_by_class(run)),
        *_optional(figures.generator_health(run)),
        "<h2>Run configuration</h2>",
        _config_table(run),
    ]
    return _page(f"Load test report: {run.name}", body, _run_data(run))


def _compare_table(runs: Sequence[Run]) -> str:
    head = "".join(
        f"<th>{c}</th>"
        for c in (
            "run",
            "stages",
            "calls",
            "peak out tok/s",
            "peak req/s",
            "TTFT p50 (lightest)",
            "TTFT p95 (heaviest)",
            "knee",
            "max sustainable",
        )
    )
    body = []
    for run in runs:
        rows = sorted(run.rows, key=lambda r: r["offered"])
        la = run.analysis["load_analysis"]
        cells = [
            run.name,
            str(len(rows)),
            str(len(run.records)),
            f"{max((r['overall']['output_tokens_per_s'] for r in rows), default=0):.0f}",
            f"{max((r['overall']['requests_per_s'] for r in rows), default=0):.2f}",
            _ms(rows[0]["overall"]["ttft_s"]["p50"]) if rows else "-",
            _ms(rows[-1]["overall"]["ttft_s"]["p95"]) if rows else "-",
            (la.get("knee") or {}).get("stage", "not reached"),
            (la.get("max_sustainable") or {}).get("stage", "none"),
        ]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def compare_page(
    runs: Sequence[Run], intervals: Sequence[str] = (), intervals_data: Mapping[str, Any] | None = None
) -> str:
    """Runs side by side; ``intervals`` (HTML, from the study page) and its document go first when given."""
    names = " vs ".join(run.name for run in runs)
    body = [
        f"<h1>Comparison: {html.escape(names)}</h1>",
        '<div class="sub">latencies in ms · warm-up excluded</div>',
        *intervals,
        _compare_table(runs),
        _fig_html(figures.compare_throughput_latency(runs)),
        _fig_html(figures.compare_latency_vs_load(runs)),
    ]
    for run in runs:
        body += [f"<h2>{html.escape(run.name)}</h2>", stage_table(run)]
    data: dict[str, Any] = {"runs": [_run_data(run) for run in runs]}
    if intervals_data is not None:
        data["intervals"] = intervals_data
    return _page(f"Comparison: {names}", body, data)
