"""The report's charts, as plotly figures built from a :class:`~harness.outputs.report.data.Run`.

Every figure takes plain lists (never numpy arrays), so the plotted numbers appear as
JSON in report.html. Long runs are thinned before plotting (CDFs to at most
:data:`CDF_POINTS` points per curve, the per-call scatter to :data:`SCATTER_POINTS`), so a
report stays a few megabytes whatever the run's length.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from harness.core.stages import offered_text
from harness.outputs.report.data import Run

__all__ = [
    "cdfs",
    "compare_latency_vs_load",
    "compare_throughput_latency",
    "errors_by_class",
    "generator_health",
    "latency_vs_load",
    "throughput_latency",
    "timeline",
]

CDF_POINTS = 400
SCATTER_POINTS = 20_000
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
    "legend": {"orientation": "h", "y": -0.18},
    "font": {"size": 12},
}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 3)


def _load_axis(run: Run) -> dict[str, Any]:
    kind = run.analysis["load_analysis"].get("kind", "users")
    loads = [r["offered"] for r in run.rows if r["offered"] > 0]
    log = len(loads) > 2 and max(loads) / min(loads) >= 8
    title = "offered load (requests/s)" if kind == "rate" else "offered load (users)"
    return {"title": title, "type": "log" if log else "linear"}


def _stage_label(row: dict[str, Any]) -> str:
    return row["label"] if row["offered"] <= 0 else f"{row['label']} ({offered_text(row['kind'], row['offered'])})"


def throughput_latency(run: Run) -> go.Figure:
    """Output tokens/s against TTFT p95, one point per stage; knee and max sustainable load marked."""
    rows = sorted(run.rows, key=lambda r: r["offered"])
    la = run.analysis["load_analysis"]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=[round(r["overall"]["output_tokens_per_s"], 3) for r in rows],
            y=[_ms(r["overall"]["ttft_s"]["p95"]) for r in rows],
            mode="lines+markers+text",
            text=[r["label"] for r in rows],
            textposition="top left",
            name="stages",
            marker={"size": 10, "color": PALETTE[0]},
            hovertext=[_stage_label(r) for r in rows],
        )
    )
    _mark(fig, rows, la.get("knee"), "knee", "#d62728", "star")
    _mark(fig, rows, la.get("max_sustainable"), "max sustainable", "#2ca02c", "circle-open")
    _search_path(fig, run)
    fig.update_layout(
        **LAYOUT,
        title="Throughput vs latency (one point per stage)",
        xaxis_title="output tokens/s",
        yaxis_title="TTFT p95 (ms)",
        height=420,
    )
    return fig


def _search_path(fig: go.Figure, run: Run) -> None:
    """A capacity search's probes in the order it ran them, numbered, breaching ones crossed."""
    probes = (run.summary.get("search") or {}).get("probes") or []
    stages = run.analysis["stages"]
    shown = [(p, stages[p["stage"]]) for p in probes if p.get("stage") in stages]
    if not shown:
        return
    fig.add_trace(
        go.Scatter(
            x=[round(row["overall"]["output_tokens_per_s"], 3) for _, row in shown],
            y=[_ms(row["overall"]["ttft_s"]["p95"]) for _, row in shown],
            mode="lines+markers+text",
            text=[str(p["index"] + 1) for p, _ in shown],
            textposition="bottom right",
            name="search path (probe order)",
            line={"color": "#9467bd", "dash": "dot"},
            marker={
                "size": 9,
                "color": ["#2ca02c" if p["passed"] else "#d62728" for p, _ in shown],
                "symbol": ["circle" if p["passed"] else "x" for p, _ in shown],
            },
            hovertext=[f"probe {p['index'] + 1} ({p['phase']}): {p['stage']}" for p, _ in shown],
        )
    )


def _mark(fig: go.Figure, rows: Sequence[dict[str, Any]], which: Any, name: str, color: str, symbol: str) -> None:
    row = next((r for r in rows if which and r["label"] == which["stage"]), None)
    if row is None:
        return
    fig.add_trace(
        go.Scatter(
            x=[round(row["overall"]["output_tokens_per_s"], 3)],
            y=[_ms(row["overall"]["ttft_s"]["p95"])],
            mode="markers",
            name=f"{name}: {row['label']}",
            marker={"size": 22, "color": color, "symbol": symbol, "line": {"width": 3, "color": color}},
        )
    )


def latency_vs_load(run: Run) -> go.Figure:
    """TTFT and completion percentiles, and throughput, against offered load."""
    rows = sorted(run.rows, key=lambda r: r["offered"])
    x = [r["offered"] for r in rows]
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=("TTFT (ms)", "completion time (ms)", "throughput (per s)"),
        horizontal_spacing=0.07,
    )
    for col, metric in ((1, "ttft_s"), (2, "completion_s")):
        for i, q in enumerate(("p50", "p95", "p99")):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[_ms(r["overall"][metric][q]) for r in rows],
                    mode="lines+markers",
                    name=f"{metric[:-2]} {q}",
                    line={"color": PALETTE[i], "dash": ("solid", "dash", "dot")[i]},
                    legendgroup=q,
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
    for i, (key, name) in enumerate((("requests_per_s", "requests/s"), ("goodput_per_s", "goodput/s"))):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[round(r["overall"][key], 4) for r in rows],
                mode="lines+markers",
                name=name,
                line={"color": PALETTE[3 + i]},
            ),
            row=1,
            col=3,
        )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[round(r["concurrency_mean"], 3) for r in rows],
            mode="lines+markers",
            name="mean calls in flight",
            line={"color": PALETTE[5], "dash": "dot"},
        ),
        row=1,
        col=3,
    )
    knee = run.analysis["load_analysis"].get("knee")
    axis = _load_axis(run)
    for col in (1, 2, 3):
        fig.update_xaxes(**axis, row=1, col=col)
        if knee:
            fig.add_vline(x=knee["offered"], line={"color": "#d62728", "dash": "dash"}, row=1, col=col)
    fig.update_layout(**LAYOUT, title="Latency and throughput vs offered load", height=420)
    return fig


def _cdf(values: Sequence[float]) -> tuple[list[float], list[float]]:
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return [], []
    step = max(1, math.ceil(n / CDF_POINTS))
    idx = [*range(0, n, step)]
    if idx[-1] != n - 1:
        idx.append(n - 1)
    return [round(ordered[i] * 1000.0, 3) for i in idx], [round((i + 1) / n, 5) for i in idx]


def cdfs(run: Run) -> go.Figure:
    """TTFT and completion-time CDFs per stage (ok, non-warm-up calls)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("TTFT CDF", "completion time CDF"))
    for i, row in enumerate(run.rows):
        calls = [r for r in run.records if (r.stage or "all") == row["label"] and r.ok and not r.warmup]
        color = PALETTE[i % len(PALETTE)]
        ttfts = [r.ttft_s for r in calls if r.ttft_s is not None]
        for col, values in ((1, ttfts), (2, [r.completion_s for r in calls])):
            x, y = _cdf(values)
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    mode="lines",
                    name=row["label"],
                    line={"color": color},
                    legendgroup=row["label"],
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title="ms", type="log")
    fig.update_yaxes(title="fraction of calls", range=[0, 1.02])
    fig.update_layout(**LAYOUT, title="Latency distributions per stage", height=400)
    return fig


def timeline(run: Run) -> go.Figure:
    """The run over time: each call's TTFT, completions per second, calls in flight; stages shaded."""
    t0 = run.t0
    fig = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.06,
        subplot_titles=("TTFT of each call, by scheduled time (ms)", "calls finished per second", "calls in flight"),
    )
    records = run.records
    step = max(1, math.ceil(len(records) / SCATTER_POINTS))
    shown = [r for r in records[::step] if r.ttft_s is not None]
    fig.add_trace(
        go.Scattergl(
            x=[round(r.t_scheduled - t0, 3) for r in shown],
            y=[_ms(r.ttft_s) for r in shown],
            mode="markers",
            name="TTFT",
            marker={"size": 4, "color": ["#aaaaaa" if r.warmup else PALETTE[0] for r in shown]},
        ),
        row=1,
        col=1,
    )
    per_second: Counter[int] = Counter(int(r.t_end - t0) for r in records if not r.outcome.cancelled)
    failed: Counter[int] = Counter(int(r.t_end - t0) for r in records if not r.ok and r.outcome != "cancelled")
    seconds = list(range(0, max(per_second, default=0) + 1))
    fig.add_trace(
        go.Bar(x=seconds, y=[per_second[s] - failed[s] for s in seconds], name="ok", marker_color=PALETTE[2]),
        row=2,
        col=1,
    )
    fig.add_trace(
        go.Bar(x=seconds, y=[failed[s] for s in seconds], name="failed", marker_color=PALETTE[3]), row=2, col=1
    )
    xs, ys = _in_flight(run, t0)
    fig.add_trace(
        go.Scatter(x=xs, y=ys, mode="lines", line={"shape": "hv", "color": PALETTE[4]}, name="in flight"),
        row=3,
        col=1,
    )
    for i, row in enumerate(run.rows):
        if row["t_end"] is None:
            continue
        start, measure, end = row["t_start"] - t0, row["t_measure"] - t0, row["t_end"] - t0
        fig.add_vrect(x0=start, x1=measure, fillcolor="#999999", opacity=0.18, line_width=0)
        fig.add_vrect(x0=measure, x1=end, fillcolor=PALETTE[i % len(PALETTE)], opacity=0.06, line_width=0)
        fig.add_vline(x=start, line={"color": "#555555", "width": 1})
        fig.add_annotation(
            x=(start + end) / 2, y=1.045, yref="paper", yanchor="bottom", text=f"<b>{row['label']}</b>", showarrow=False
        )
    fig.update_layout(**{**LAYOUT, "margin": {**LAYOUT["margin"], "t": 80}}, barmode="stack", height=660)
    fig.update_xaxes(title="seconds since the run started (grey: warm-up, left out of the figures)", row=3, col=1)
    return fig


def generator_health(run: Run) -> go.Figure | None:
    """Each load-generating process over the run: its worst event-loop lag and its CPU per second.

    ``None`` when the summary holds no generator section (a run of an older version).
    The dashed lines are the verdict's thresholds (its lag test is on the p99 of all
    probes, so a second's worst may pass the line while the run stays ok).
    """
    generator = run.summary.get("generator") or {}
    series = {name: doc["series"] for name, doc in (generator.get("processes") or {}).items() if doc.get("series")}
    if not series:
        return None
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("event-loop lag, worst in each second (ms)", "CPU (% of one core)"),
    )
    for i, (name, values) in enumerate(sorted(series.items())):
        color, t = PALETTE[i % len(PALETTE)], list(values["t_s"])
        lag = [_ms(v) for v in values["loop_lag_max_s"]]
        fig.add_trace(go.Scatter(x=t, y=lag, mode="lines", name=f"{name}: lag", line={"color": color}), row=1, col=1)
        cpu = list(values["cpu_percent"])
        fig.add_trace(
            go.Scatter(x=t, y=cpu, mode="lines", name=f"{name}: CPU", line={"color": color, "dash": "dot"}),
            row=1,
            col=2,
        )
    limits = generator.get("thresholds") or {}
    if limits.get("loop_lag_p99_s") is not None:
        fig.add_hline(y=_ms(limits["loop_lag_p99_s"]), line={"color": PALETTE[3], "dash": "dash"}, row=1, col=1)
    if limits.get("cpu_percent_mean") is not None:
        fig.add_hline(y=limits["cpu_percent_mean"], line={"color": PALETTE[3], "dash": "dash"}, row=1, col=2)
    fig.update_xaxes(title="seconds since the test started")
    title = f"Load generator: {generator.get('message', '')}"
    fig.update_layout(**LAYOUT, title=title, height=380)
    return fig


def _in_flight(run: Run, t0: float) -> tuple[list[float], list[int]]:
    changes = sorted([(r.t_start - r.queue_s - t0, 1) for r in run.records] + [(r.t_end - t0, -1) for r in run.records])
    xs, ys, level = [], [], 0
    step = max(1, math.ceil(len(changes) / SCATTER_POINTS))
    for i, (t, delta) in enumerate(changes):
        level += delta
        if i % step == 0 or i == len(changes) - 1:
            xs.append(round(t, 3))
            ys.append(level)
    return xs, ys


def errors_by_class(run: Run) -> go.Figure:
    """Failed calls per error class and stage (warm-up excluded)."""
    rows = run.rows
    classes = sorted({c for r in rows for c in r["overall"]["errors"]})
    fig = go.Figure()
    for i, cls in enumerate(classes):
        fig.add_trace(
            go.Bar(
                x=[r["label"] for r in rows],
                y=[r["overall"]["errors"].get(cls, 0) for r in rows],
                name=cls,
                marker_color=PALETTE[(i + 3) % len(PALETTE)],
            )
        )
    title = "Errors by class per stage" if classes else "Errors by class per stage: no failed calls"
    fig.update_layout(**LAYOUT, title=title, barmode="stack", height=320, yaxis_title="failed calls")
    return fig


def compare_throughput_latency(runs: Sequence[Run]) -> go.Figure:
    fig = go.Figure()
    for i, run in enumerate(runs):
        rows = sorted(run.rows, key=lambda r: r["offered"])
        fig.add_trace(
            go.Scatter(
                x=[round(r["overall"]["output_tokens_per_s"], 3) for r in rows],
                y=[_ms(r["overall"]["ttft_s"]["p95"]) for r in rows],
                mode="lines+markers+text",
                text=[r["label"] for r in rows],
                textposition="top left",
                name=run.name,
                line={"color": PALETTE[i % len(PALETTE)]},
            )
        )
    fig.update_layout(
        **LAYOUT,
        title="Throughput vs latency",
        xaxis_title="output tokens/s",
        yaxis_title="TTFT p95 (ms)",
        height=420,
    )
    return fig


def compare_latency_vs_load(runs: Sequence[Run]) -> go.Figure:
    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=("TTFT p95 (ms)", "completion p95 (ms)", "output tokens/s"),
        horizontal_spacing=0.07,
    )
    for i, run in enumerate(runs):
        rows = sorted(run.rows, key=lambda r: r["offered"])
        x = [r["offered"] for r in rows]
        values = (
            [_ms(r["overall"]["ttft_s"]["p95"]) for r in rows],
            [_ms(r["overall"]["completion_s"]["p95"]) for r in rows],
            [round(r["overall"]["output_tokens_per_s"], 3) for r in rows],
        )
        for col, y in enumerate(values, start=1):
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    mode="lines+markers",
                    name=run.name,
                    legendgroup=run.name,
                    showlegend=col == 1,
                    line={"color": PALETTE[i % len(PALETTE)]},
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title="offered load")
    fig.update_layout(**LAYOUT, title="Latency and throughput vs offered load", height=420)
    return fig
