// The LLM tab's panels, drawn under the table Locust renders for the tab (harness/webui).
//
// Locust's extended tab shows one table; this script adds the rest below it while the tab is
// open: percentiles over the run and the recent window, errors by class, rate-limit headroom,
// extra sections (generator health) and charts, from GET ./llm/stats every 2 s. It borrows
// the CSS classes of Locust's own table elements, so it follows Locust's theme, dark or light.
(() => {
  "use strict";
  const TAB = "llm";
  const POLL_MS = 2000;
  const COLORS = ["#ff9f00", "#9966CC", "#00ca5a", "#0099ff", "#ff6d6d"];
  const METRICS = [
    ["ttft_s", "TTFT"],
    ["first_text_s", "Time to first text"],
    ["completion_s", "Completion"],
    ["itl_s", "ITL"],
    ["tpot_s", "TPOT"],
  ];
  const base = (document.currentScript && document.currentScript.src.replace(/\/llm\/tab\.js.*$/, "")) || ".";
  let scenario = "Total";
  let timer = null;

  const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const ms = (s) => (s === null || s === undefined ? "–" : (s * 1000).toFixed(1));
  const num = (v, d = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
  const pct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)}%`);

  function tabOpen() {
    return new URLSearchParams(window.location.search).get("tab") === TAB;
  }

  // Locust's own table for the tab: our panels go right after it, inside the same container.
  function anchor() {
    const head = document.querySelector('th[data-sortkey="ttftP50"]');
    return head ? head.closest(".MuiTableContainer-root") : null;
  }

  function themeOf(table) {
    const cell = table.querySelector("tbody td") || table.querySelector("th");
    const style = getComputedStyle(cell);
    return {
      paper: table.className,
      table: (table.querySelector("table") || {}).className || "",
      th: (table.querySelector("th") || {}).className || "",
      td: (table.querySelector("tbody td") || table.querySelector("th") || {}).className || "",
      text: style.color,
      grid: style.borderBottomColor,
    };
  }

  function table(t, headers, rows) {
    const head = headers.map((h) => `<th class="${t.th}">${esc(h)}</th>`).join("");
    const body = rows
      .map((r) => `<tr>${r.map((c) => `<td class="${t.td}">${c}</td>`).join("")}</tr>`)
      .join("");
    return `<table class="${t.table}"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
  }

  // titleHtml is markup the caller built (and escaped).
  function card(t, titleHtml, inner, id) {
    return `<div class="${t.paper}" data-llm="${id}" style="margin-top:16px;padding:12px 16px;overflow-x:auto">
      <div style="font-size:1.1rem;font-weight:500;margin-bottom:8px">${titleHtml}</div>${inner}</div>`;
  }

  function statusCard(t, s) {
    const items = [
      ["State", s.state],
      ["Stage", s.stage ?? "–"],
      ["Users", s.users],
      ["Calls", s.total.run.calls],
      ["Failed", s.total.run.failed],
      ["In flight", s.total.in_flight],
      ["Elapsed", `${num(s.elapsed_s, 0)} s`],
      ["Window", `last ${num(s.window_s, 0)} s`],
    ];
    const chips = items
      .map(([k, v]) => `<span style="margin-right:24px"><span style="opacity:.7">${esc(k)}</span>
        <b data-llm-field="${esc(k.toLowerCase().replace(" ", "_"))}">${esc(v)}</b></span>`)
      .join("");
    return `<div data-llm="status" style="margin-top:16px;display:flex;flex-wrap:wrap;color:${t.text}">${chips}</div>`;
  }

  // Run-wide percentiles come from the last reduction of the run's spilled samples: say when.
  function runScope(s) {
    const at = s.run_percentiles_at_s;
    if (at === null || at === undefined) return "whole run (percentiles pending)";
    if (s.elapsed_s - at < 1) return "whole run (exact)";
    return `whole run (exact as of ${num(at, 0)} s)`;
  }

  function percentileCard(t, s) {
    const names = ["Total", ...Object.keys(s.scenarios)];
    if (!names.includes(scenario)) scenario = "Total";
    const row = scenario === "Total" ? s.total : s.scenarios[scenario];
    const select = `<select data-llm="scenario" style="margin-left:12px;font:inherit;color:inherit;background:transparent">
      ${names.map((n) => `<option${n === scenario ? " selected" : ""}>${esc(n)}</option>`).join("")}</select>`;
    const rows = METRICS.map(([key, title]) => {
      const run = row.run[key];
      const win = row.window[key];
      return [esc(title), ...["p50", "p90", "p95", "p99", "max"].map((p) => ms(run[p])), run.count,
        ...["p50", "p90", "p95", "p99"].map((p) => ms(win[p])), win.count];
    });
    const w = `${num(s.window_s, 0)} s`;
    const headers = ["ms", "p50", "p90", "p95", "p99", "max", "samples",
      `p50 (${w})`, `p90 (${w})`, `p95 (${w})`, `p99 (${w})`, `samples (${w})`];
    const title = `Latency percentiles: ${runScope(s)} and last ${num(s.window_s, 0)} s ` +
      `(${s.window_exact === false ? "sampled" : "exact"})${select}`;
    return card(t, title, table(t, headers, rows), "percentiles");
  }

  function errorCard(t, s) {
    const run = s.total.run.errors;
    const win = s.total.window.errors;
    const classes = [...new Set([...Object.keys(run), ...Object.keys(win)])].sort();
    const rows = classes.map((c) => [esc(c), run[c] ?? 0, win[c] ?? 0]);
    const inner = rows.length
      ? table(t, ["error class", "run", `last ${num(s.window_s, 0)} s`], rows)
      : `<div style="opacity:.7">no failed calls (error rate ${pct(s.total.run.error_rate)})</div>`;
    return card(t, "Errors by class", inner, "errors");
  }

  function headroomCard(t, s) {
    const rows = [];
    for (const [model, dims] of Object.entries(s.ratelimit || {})) {
      for (const [dim, e] of Object.entries(dims)) {
        const h = e.headroom;
        const bar = h === undefined ? "" : `<div style="width:160px;height:8px;border:1px solid ${t.grid};border-radius:4px">
          <div style="width:${Math.max(0, Math.min(1, h)) * 100}%;height:100%;border-radius:4px;background:${h < 0.1 ? COLORS[4] : h < 0.3 ? COLORS[0] : COLORS[2]}"></div></div>`;
        rows.push([esc(model), esc(dim), `${esc(e.remaining ?? "–")} / ${esc(e.limit ?? "–")}`, pct(h), bar, pct(e.lowest_headroom), esc(e.reset ?? "")]);
      }
    }
    const inner = rows.length
      ? table(t, ["model", "limit", "remaining / limit", "headroom", "", "lowest", "resets"], rows)
      : '<div style="opacity:.7">no anthropic-ratelimit-* headers seen</div>';
    return card(t, "Rate-limit headroom", inner, "ratelimit");
  }

  function sectionCards(t, s) {
    return Object.entries(s.sections || {}).map(([name, doc]) => {
      const rows = Object.entries(doc).map(([k, v]) => [esc(k), esc(typeof v === "object" ? JSON.stringify(v) : v)]);
      return card(t, esc(name.charAt(0).toUpperCase() + name.slice(1)), table(t, ["", ""], rows), `section-${name}`);
    }).join("");
  }

  // A small SVG chart: lines (or points) on linear axes, with stage boundaries.
  function chart(t, { title, xLabel, yLabel, lines, marks = [], scatter = false }) {
    const W = 560, H = 240, L = 56, R = 12, T = 28, B = 36;
    const pts = lines.flatMap((l) => l.points).filter(([, y]) => y !== null && y !== undefined);
    if (!pts.length) return `<div><div style="font-weight:500">${esc(title)}</div><div style="opacity:.7">waiting for data</div></div>`;
    const xMax = Math.max(...pts.map(([x]) => x), 1e-9);
    const xMin = 0;
    const yMax = Math.max(...pts.map(([, y]) => y)) * 1.15 || 1;
    const sx = (x) => L + ((x - xMin) / (xMax - xMin || 1)) * (W - L - R);
    const sy = (y) => H - B - (y / yMax) * (H - T - B);
    let svg = "";
    for (let i = 0; i <= 4; i++) {
      const y = (yMax * i) / 4;
      svg += `<line x1="${L}" x2="${W - R}" y1="${sy(y)}" y2="${sy(y)}" stroke="${t.grid}"/>`;
      svg += `<text x="${L - 6}" y="${sy(y) + 4}" text-anchor="end" font-size="11" fill="${t.text}">${y >= 100 ? y.toFixed(0) : y.toPrecision(2)}</text>`;
    }
    for (let i = 0; i <= 4; i++) {
      const x = xMin + ((xMax - xMin) * i) / 4;
      svg += `<text x="${sx(x)}" y="${H - B + 16}" text-anchor="middle" font-size="11" fill="${t.text}">${x.toFixed(x >= 10 ? 0 : 1)}</text>`;
    }
    for (const m of marks) {
      svg += `<line x1="${sx(m.x)}" x2="${sx(m.x)}" y1="${T}" y2="${H - B}" stroke="${t.text}" stroke-dasharray="4 3" opacity=".6"/>`;
      svg += `<text x="${sx(m.x) + 3}" y="${T + 10}" font-size="10" fill="${t.text}" opacity=".8">${esc(m.label)}</text>`;
    }
    lines.forEach((l, i) => {
      const color = l.color || COLORS[i % COLORS.length];
      const p = l.points.filter(([, y]) => y !== null && y !== undefined);
      svg += `<polyline fill="none" stroke="${color}" stroke-width="2" points="${p.map(([x, y]) => `${sx(x)},${sy(y)}`).join(" ")}"/>`;
      if (scatter) {
        p.forEach(([x, y], j) => {
          svg += `<circle cx="${sx(x)}" cy="${sy(y)}" r="4" fill="${color}"/>`;
          if (l.labels) svg += `<text x="${sx(x) + 6}" y="${sy(y) - 6}" font-size="10" fill="${t.text}">${esc(l.labels[j])}</text>`;
        });
      }
      svg += `<rect x="${L + 8 + i * 130}" y="8" width="10" height="10" fill="${color}"/><text x="${L + 22 + i * 130}" y="17" font-size="11" fill="${t.text}">${esc(l.name)}</text>`;
    });
    svg += `<text x="${(L + W - R) / 2}" y="${H - 4}" text-anchor="middle" font-size="11" fill="${t.text}">${esc(xLabel)}</text>`;
    svg += `<text x="12" y="${(T + H - B) / 2}" transform="rotate(-90 12 ${(T + H - B) / 2})" text-anchor="middle" font-size="11" fill="${t.text}">${esc(yLabel)}</text>`;
    return `<div style="min-width:0"><div style="font-weight:500">${esc(title)}</div>
      <svg viewBox="0 0 ${W} ${H}" style="width:100%;height:auto" role="img" aria-label="${esc(title)}">${svg}</svg></div>`;
  }

  function chartCard(t, s) {
    const series = s.series || [];
    const marks = [];
    series.forEach((p, i) => {
      if (p.stage !== null && (i === 0 || p.stage !== series[i - 1].stage)) marks.push({ x: p.t, label: p.stage });
    });
    const ttft = chart(t, {
      title: "TTFT (ms), last 10 s at each point", xLabel: "seconds", yLabel: "ms", marks,
      lines: [
        { name: "p50", points: series.map((p) => [p.t, p.ttft_p50_s === null ? null : p.ttft_p50_s * 1000]) },
        { name: "p95", points: series.map((p) => [p.t, p.ttft_p95_s === null ? null : p.ttft_p95_s * 1000]) },
      ],
    });
    const tps = chart(t, {
      title: "Output tokens/s, last 10 s at each point", xLabel: "seconds", yLabel: "tokens/s", marks,
      lines: [{ name: "output tok/s", points: series.map((p) => [p.t, p.output_tokens_per_s]) }],
    });
    const rps = chart(t, {
      title: "Calls/s and calls in flight", xLabel: "seconds", yLabel: "", marks,
      lines: [
        { name: "calls/s", points: series.map((p) => [p.t, p.requests_per_s]) },
        { name: "failed/s", color: COLORS[4], points: series.map((p) => [p.t, p.errors_per_s]) },
        { name: "in flight", points: series.map((p) => [p.t, p.in_flight]) },
      ],
    });
    const stages = (s.stages || []).filter((st) => st.output_tokens_per_s !== null && st.ttft_p50_s !== null);
    const knee = stages.length ? chart(t, {
      title: "Throughput vs TTFT per stage", xLabel: "output tokens/s", yLabel: "TTFT ms", scatter: true,
      lines: [
        { name: "TTFT p50", points: stages.map((st) => [st.output_tokens_per_s, st.ttft_p50_s * 1000]), labels: stages.map((st) => st.stage) },
        { name: "TTFT p95", points: stages.map((st) => [st.output_tokens_per_s, st.ttft_p95_s * 1000]) },
      ],
    }) : "";
    return card(t, "Charts", `<div style="display:grid;grid-template-columns:repeat(auto-fill,minmax(440px,1fr));gap:16px">${ttft}${tps}${rps}${knee}</div>`, "charts");
  }

  function downloadsCard(t) {
    const links = [
      ["requests.jsonl", `${base}/llm/download/requests.jsonl`],
      ["summary.json", `${base}/llm/download/summary.json`],
      ["report.html", `${base}/llm/download/report.html`],
      ["/llm/stats (JSON)", `${base}/llm/stats`],
    ];
    return `<div data-llm="downloads" style="margin:16px 0;color:${t.text}">Downloads:
      ${links.map(([n, h]) => `<a href="${h}" style="color:inherit;margin-left:12px">${esc(n)}</a>`).join("")}</div>`;
  }

  function render(s) {
    // Leave an open scenario picker alone; the next poll redraws.
    if (document.activeElement && document.activeElement.matches('[data-llm="scenario"]')) return;
    const table = anchor();
    if (!table) return;
    let panel = document.getElementById("llm-panel");
    if (!panel || panel.previousElementSibling !== table) {
      if (panel) panel.remove();
      panel = document.createElement("div");
      panel.id = "llm-panel";
      table.after(panel);
      panel.addEventListener("change", (e) => {
        if (e.target.matches('[data-llm="scenario"]')) { scenario = e.target.value; refresh(); }
      });
    }
    const t = themeOf(table);
    panel.dataset.state = s.state;
    panel.innerHTML = statusCard(t, s) + percentileCard(t, s) + chartCard(t, s) + errorCard(t, s)
      + headroomCard(t, s) + sectionCards(t, s) + downloadsCard(t);
  }

  async function refresh() {
    if (!tabOpen()) {
      const panel = document.getElementById("llm-panel");
      if (panel) panel.remove();
      return;
    }
    try {
      const response = await fetch(`${base}/llm/stats`, { credentials: "same-origin" });
      if (response.ok) render(await response.json());
    } catch (err) {
      // The next poll tries again; a stopped locust simply leaves the last figures up.
    }
  }

  function start() {
    if (timer) return;
    refresh();
    timer = setInterval(refresh, POLL_MS);
    // Locust switches tabs with history.pushState; redraw at once when the LLM tab opens.
    document.addEventListener("click", (e) => {
      if (e.target.closest && e.target.closest('[role="tab"]')) setTimeout(refresh, 50);
    }, true);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
