// The console page's script: draws every panel from /panels/{key} (the
// Grafana panel's SQL run by the server) with Chart.js, and refreshes the
// live summary from /summary.json. No framework, no build step.
"use strict";

const range = document.body.dataset.range || "1h";
const charts = {};
const palette = ["#3274d9", "#e0752d", "#37872d", "#c4162a", "#8f3bb8", "#fade2a", "#1f9e89", "#a16b52", "#6e7079", "#ff780a"];

function fmtTime(ms) {
  const d = new Date(ms);
  const long = ["7d", "30d"].includes(range);
  return long ? d.toISOString().slice(5, 10) : d.toISOString().slice(11, 16);
}

// series turns rows of (time, [label,] values...) into Chart.js labels and
// datasets: a text second column names the series (pivot), else every
// numeric column is one.
function series(p) {
  const times = [...new Set(p.rows.map(r => r[0]))].sort((a, b) => a - b);
  const at = new Map(times.map((t, i) => [t, i]));
  const sets = new Map();
  const add = (name, t, v) => {
    if (!sets.has(name)) sets.set(name, new Array(times.length).fill(0));
    sets.get(name)[at.get(t)] += v;
  };
  const pivot = p.rows.length > 0 && typeof p.rows[0][1] === "string";
  for (const r of p.rows) {
    if (pivot) add(r[1], r[0], r[2]);
    else for (let c = 1; c < p.columns.length; c++) add(p.columns[c], r[0], r[c]);
  }
  // A count beside measures (the lag panel's events) gets an axis of its
  // own, as Grafana's field overrides would give it.
  const twoAxes = !pivot && sets.size > 1 && sets.has("events");
  const datasets = [...sets.entries()].map(([label, data], i) => ({
    label, data, borderColor: palette[i % palette.length], backgroundColor: palette[i % palette.length],
    pointRadius: times.length < 3 ? 3 : 0, tension: 0, yAxisID: twoAxes && label === "events" ? "y1" : "y",
  }));
  return { labels: times.map(fmtTime), datasets, twoAxes };
}

function chartConfig(p) {
  const opts = { animation: false, responsive: true, maintainAspectRatio: false, plugins: { legend: { position: "bottom" } } };
  switch (p.kind) {
    case "timeseries": {
      const data = series(p);
      const scales = data.twoAxes ? { y: { position: "left" }, y1: { position: "right", grid: { drawOnChartArea: false } } } : undefined;
      return { type: "line", data, options: { ...opts, scales } };
    }
    case "barchart": {
      const data = series(p);
      return { type: "bar", data, options: opts };
    }
    case "piechart":
      return { type: "doughnut", data: { labels: p.rows.map(r => r[0]), datasets: [{ data: p.rows.map(r => r[1]), backgroundColor: palette }] }, options: opts };
    case "bargauge": {
      const datasets = p.columns.slice(1).map((c, i) => ({ label: c, data: p.rows.map(r => r[i + 1]), backgroundColor: palette[i % palette.length] }));
      return { type: "bar", data: { labels: p.rows.map(r => r[0]), datasets }, options: { ...opts, indexAxis: "y" } };
    }
  }
  return null;
}

function cell(v, col) {
  if (typeof v === "number" && /time|seen|since|updated/.test(col)) return new Date(v).toISOString().replace("T", " ").slice(0, 19);
  return v === null ? "" : String(v);
}

function renderTable(el, p) {
  const t = document.createElement("table");
  t.className = "grid";
  const head = t.insertRow();
  for (const c of p.columns) { const th = document.createElement("th"); th.textContent = c; head.appendChild(th); }
  for (const r of p.rows) {
    const tr = t.insertRow();
    r.forEach((v, i) => { tr.insertCell().textContent = cell(v, p.columns[i]); });
  }
  el.replaceChildren(t);
}

function renderStat(el, p) {
  el.replaceChildren();
  const r = p.rows[0] || [];
  p.columns.forEach((c, i) => {
    const s = document.createElement("span");
    s.className = "stat";
    const b = document.createElement("b");
    b.textContent = r[i] === undefined || r[i] === null ? "–" : String(r[i]);
    s.append(b, c.replaceAll("_", " "));
    el.appendChild(s);
  });
}

async function drawPanel(fig) {
  const key = fig.dataset.key;
  let p;
  try {
    const res = await fetch(`/panels/${key}?range=${encodeURIComponent(range)}`);
    p = await res.json();
    if (!res.ok) throw new Error(p.error || res.statusText);
  } catch (e) {
    fig.dataset.error = String(e.message || e);
    fig.querySelector("figcaption").title = fig.dataset.error;
    return;
  }
  delete fig.dataset.error;
  if (p.kind === "table") renderTable(fig.querySelector(".body"), p);
  else if (p.kind === "stat") renderStat(fig.querySelector(".body"), p);
  else {
    const cfg = chartConfig(p);
    if (charts[key]) charts[key].destroy();
    charts[key] = new Chart(fig.querySelector("canvas"), cfg);
  }
  // For tests and the curious: how many rows the chart drew.
  fig.dataset.points = String(p.rows.length);
}

function drawAll() {
  document.querySelectorAll("figure.panel").forEach(drawPanel);
}

function text(id, v) {
  const el = document.getElementById(id);
  if (el) el.textContent = v;
}

function rows(id, list, cells) {
  const body = document.querySelector(`#${id} tbody`);
  if (!body) return;
  body.replaceChildren(...list.map(x => {
    const tr = document.createElement("tr");
    for (const v of cells(x)) tr.insertCell().textContent = v;
    return tr;
  }));
}

async function refreshSummary() {
  try {
    const s = await (await fetch("/summary.json")).json();
    text("s-events", s.events_in);
    text("s-rate", s.events_per_second.toFixed(1) + "/s");
    text("s-profiles", s.profiles);
    text("s-merges", s.merges);
    text("s-dlq", s.dead_letters);
    text("s-lag", s.lag);
    text("s-warehouse", s.warehouse_events);
    rows("s-processors", s.processors || [], p => [p.name, p.records_per_second.toFixed(1), p.records, p.lag]);
    rows("s-segments", s.segments || [], g => [g.name, g.members]);
    text("s-curl", s.sample_curl || "");
  } catch (e) {
    // The summary is best effort: cdp dev may be stopping.
  }
}

drawAll();
setInterval(drawAll, 10000);
setInterval(refreshSummary, 2000);
