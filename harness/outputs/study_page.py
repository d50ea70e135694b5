"""A lever study's results: the ``study.json`` document from each arm's calls, and ``study.html``.

:func:`study_document` turns each arm's call records and the levers to judge into one
JSON document (METRICS.md's figures per arm, every comparison with its interval, and the
latency guide's prediction beside what was measured); :func:`study_html` draws that
document as a self-contained page (plotly's JS embedded, no network fetch), one chart per
lever with the 95% intervals as error bars; :func:`compare_runs` gives the same document
for any two finished runs. The terminal table is :mod:`harness.outputs.study_table`.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from harness.core.artefacts import write_atomic, write_json_atomic
from harness.core.compare import RESAMPLES, Comparison, Metric, Verdict, compare, metric_values
from harness.core.measure import CallRecord
from harness.core.schedule import Lever, Pair, ad_hoc_lever, agreement
from harness.core.summary import distribution
from harness.outputs.report.figures import LAYOUT
from harness.outputs.report.page import STYLE

__all__ = ["compare_runs", "intervals_html", "lever_comparisons", "study_document", "study_html", "write_study"]

STUDY_VERSION = 1
MIN_VALUES = 20  # fewer calls than this give no p95 worth an interval
_COLOURS = {Verdict.LOWER.value: "#1f77b4", Verdict.HIGHER.value: "#d62728", Verdict.NO_DIFFERENCE.value: "#7f7f7f"}

BlockOf = Callable[[CallRecord], Hashable]


def arm_figures(records: Sequence[CallRecord]) -> dict[str, Any]:
    """One arm's counts and, per metric, count / p50 / p95 of its successful calls outside warm-ups."""
    measured = [r for r in records if not r.warmup]
    outcomes = Counter(str(r.outcome) for r in measured)
    figures: dict[str, Any] = {
        "calls": len(measured),
        "ok": outcomes.pop("ok", 0),
        "errors": dict(sorted(outcomes.items())),
        "warmup_calls": len(records) - len(measured),
    }
    for metric in Metric:
        values, _ = metric_values(measured, metric)
        d = distribution(values.tolist())
        figures[metric.value] = {"count": d["count"], "p50": d["p50"], "p95": d["p95"]}
    return figures


def lever_comparisons(
    records_by_arm: Mapping[str, Sequence[CallRecord]],
    levers: Sequence[Lever],
    *,
    block: BlockOf | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[list[tuple[Lever, Pair, Comparison]], list[dict[str, Any]]]:
    """Every lever's pairs compared on its metrics, p50 and p95, and the pairs that could not be.

    ``block`` gives each record's block id (the schedule's round) for the block bootstrap;
    without it calls are resampled. A pair with an arm missing, or with fewer than
    :data:`MIN_VALUES` values of a metric, is returned under the second item with the reason.
    """
    cache: dict[tuple[str, Metric], tuple[Any, list[Hashable] | None]] = {}

    def values(arm: str, metric: Metric) -> tuple[Any, list[Hashable] | None]:
        if (arm, metric) not in cache:
            cache[arm, metric] = metric_values(records_by_arm[arm], metric, block)
        return cache[arm, metric]

    found: list[tuple[Lever, Pair, Comparison]] = []
    skipped: list[dict[str, Any]] = []
    for lever in levers:
        for pair in lever.pairs:
            for metric in lever.metrics:
                where = {"lever": lever.key, "a": pair.a, "b": pair.b, "metric": metric.value}
                missing = [arm for arm in (pair.a, pair.b) if arm not in records_by_arm]
                if missing:
                    skipped.append({**where, "reason": f"{missing[0]} did not run"})
                    continue
                (xa, ba), (xb, bb) = values(pair.a, metric), values(pair.b, metric)
                short = [(arm, len(x)) for arm, x in ((pair.a, xa), (pair.b, xb)) if len(x) < MIN_VALUES]
                if short:
                    arm, n = short[0]
                    skipped.append({**where, "reason": f"{arm} has {n} {metric.value} values (needs {MIN_VALUES})"})
                    continue
                compared = compare(
                    xa,
                    xb,
                    metric=metric,
                    names=(pair.a, pair.b),
                    blocks_a=ba,
                    blocks_b=bb,
                    resamples=resamples,
                    seed=seed,
                )
                found += [(lever, pair, c) for c in compared]
    return found, skipped


def study_document(
    records_by_arm: Mapping[str, Sequence[CallRecord]],
    levers: Sequence[Lever],
    *,
    block: BlockOf | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``study.json`` document: :func:`lever_comparisons` with each arm's figures and the guide's predictions."""
    found, skipped = lever_comparisons(records_by_arm, levers, block=block, resamples=resamples, seed=seed)
    return {
        "version": STUDY_VERSION,
        "confidence": 0.95,
        "resamples": resamples,
        "seed": seed,
        "bootstrap": "blocks" if block is not None else "calls",
        "arms": {arm: arm_figures(records) for arm, records in records_by_arm.items()},
        "levers": [
            {
                "key": lever.key,
                "title": lever.title,
                "guide": lever.guide,
                "pairs": [{"a": p.a, "b": p.b} for p in lever.pairs],
                "metrics": [m.value for m in lever.metrics],
            }
            for lever in levers
        ],
        "comparisons": [_entry(lever, pair.predicted(c.metric), c) for lever, pair, c in found],
        "skipped": skipped,
        **(dict(extra) if extra else {}),
    }


def _entry(lever: Lever, predicted: Any, c: Comparison) -> dict[str, Any]:
    return {
        "lever": lever.key,
        **c.to_dict(),
        "predicted": None if predicted is None else predicted.value,
        "agreement": None if predicted is None else agreement(predicted, c).value,
    }


def compare_runs(
    records: Mapping[str, Sequence[CallRecord]],
    *,
    metrics: Sequence[Metric] = (Metric.TTFT, Metric.COMPLETION, Metric.OUTPUT_TPS),
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """The study document comparing finished runs, each against the first, bootstrapping over calls.

    For ``python -m harness.report compare A B ...``: the same intervals, table and chart as a
    study, from each run's ``requests.jsonl`` (all its scenarios pooled), keyed by run name.
    """
    lever = ad_hoc_lever(list(records), metrics)
    return study_document(records, [lever], resamples=resamples, seed=seed)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def _figure(lever: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    plotted = [r for r in rows if r["relative"] is not None]
    labels = [f"{r['b']['arm']} vs {r['a']['arm']} · {Metric(r['metric']).label} {r['stat']}" for r in plotted]
    x = [round(r["relative"] * 100, 3) for r in plotted]
    lows = [round(r["ci95"]["relative"][0] * 100, 3) for r in plotted]
    highs = [round(r["ci95"]["relative"][1] * 100, 3) for r in plotted]
    fig = go.Figure(
        go.Scatter(
            x=x,
            y=labels,
            mode="markers",
            marker={"size": 10, "color": [_COLOURS[r["verdict"]] for r in plotted]},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [h - v for h, v in zip(highs, x, strict=True)],
                "arrayminus": [v - lo for lo, v in zip(lows, x, strict=True)],
                "thickness": 1.5,
            },
            hovertext=[_hover(r) for r in plotted],
            hoverinfo="text",
            name="b against a",
        )
    )
    fig.add_vline(x=0, line={"color": "#444", "width": 1})
    fig.update_layout(
        **{**LAYOUT, "margin": {"l": 330, "r": 20, "t": 50, "b": 50}},
        title=f"{lever['title']}: b against a, % of a (95% CI)",
        xaxis_title="difference (% of a)",
        yaxis={"autorange": "reversed"},
        height=140 + 34 * len(plotted),
        showlegend=False,
    )
    return fig


def _hover(row: Mapping[str, Any]) -> str:
    text = html.escape(row["sentence"])
    if row["predicted"]:
        text += f"<br>guide: {html.escape(row['predicted'])} ({html.escape(row['agreement'])})"
    return text


def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{c}</th>" for c in ("b vs a", "metric", "a", "b", "measured", "guide predicts", "agreement"))
    body = []
    for r in rows:
        metric = Metric(r["metric"])
        value = _ms if metric.is_time else (lambda v: "-" if v is None else f"{v:.1f}")
        cells = [
            f"{r['b']['arm']} vs {r['a']['arm']}",
            f"{metric.label} {r['stat']}" + (" (ms)" if metric.is_time else ""),
            value(r["a"]["value"]),
            value(r["b"]["value"]),
            r["sentence"],
            r["predicted"] or "-",
            r["agreement"] or "-",
        ]
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _arms_table(arms: Mapping[str, Any]) -> str:
    metrics = [m for m in Metric if any(a[m.value]["count"] for a in arms.values())]
    head = "<th>arm</th><th>calls</th><th>ok</th><th>errors</th>" + "".join(
        f"<th>{html.escape(m.label)} p50 / p95{' (ms)' if m.is_time else ''}</th>" for m in metrics
    )
    body = []
    for name, a in arms.items():
        errors = ", ".join(f"{k}={v}" for k, v in a["errors"].items()) or "0"
        cells = [name, a["calls"], a["ok"], errors]
        for m in metrics:
            d = a[m.value]
            fmt = _ms if m.is_time else (lambda v: "-" if v is None else f"{v:.1f}")
            cells.append(f"{fmt(d['p50'])} / {fmt(d['p95'])}")
        body.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def intervals_html(doc: Mapping[str, Any]) -> list[str]:
    """Per lever: the guide's claim, a chart of the intervals, the table, and what was not compared."""
    body: list[str] = []
    for lever in doc["levers"]:
        rows = [c for c in doc["comparisons"] if c["lever"] == lever["key"]]
        body.append(f"<h2>{html.escape(lever['title'])}</h2>")
        body.append(f'<p class="note">The guide: {html.escape(lever["guide"])}</p>')
        if rows:
            fig = _figure(lever, rows)
            body.append(str(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})))
            body.append(_table(rows))
        for s in (s for s in doc.get("skipped", []) if s["lever"] == lever["key"]):
            body.append(
                f'<p class="note">Not compared: {html.escape(s["b"])} vs {html.escape(s["a"])} '
                f"{html.escape(s['metric'])}: {html.escape(s['reason'])}.</p>"
            )
    return body


def _how(doc: Mapping[str, Any]) -> str:
    method = "blocks (the schedule's rounds)" if doc.get("bootstrap") == "blocks" else "calls"
    text = (
        f"b against a · p50 and p95 · 95% intervals by bootstrap over {method}, "
        f"{doc['resamples']} resamples, seed {doc['seed']} · warm-up calls left out"
    )
    study = doc.get("study")
    if study:
        text += (
            f" · {study['users']} users per block, {study['rounds']} round{'' if study['rounds'] == 1 else 's'} "
            f"of {len(study['arms'])} arms, {study['blocks']} blocks · stopped: {study['stopped']}"
        )
    return html.escape(text)


def study_html(doc: Mapping[str, Any]) -> str:
    """The page of a study document: per lever the guide's claim, a chart of the intervals and a table."""
    body = ["<h1>Lever study</h1>", f'<div class="sub">{_how(doc)}</div>', *intervals_html(doc)]
    body += ["<h2>Arms</h2>", _arms_table(doc["arms"])]
    payload = json.dumps(doc, separators=(",", ":")).replace("</", "<\\/")
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            "<title>Lever study</title>",
            f"<style>{STYLE}</style>",
            f'<script type="text/javascript">{get_plotlyjs()}</script>',
            "</head><body>",
            *body,
            f'<script type="application/json" id="study-data">{payload}</script>',
            "</body></html>",
        ]
    )


def write_study(directory: Path, doc: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``DIR/study.json`` and ``DIR/study.html``; returns their paths."""
    json_path, html_path = Path(directory) / "study.json", Path(directory) / "study.html"
    write_json_atomic(json_path, doc)
    write_atomic(html_path, study_html(doc))
    return json_path, html_path
