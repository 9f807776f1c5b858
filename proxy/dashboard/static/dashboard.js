// sprout-proxy dashboard: /admin/timeseries and /admin/keys drawn with uPlot (vendored).
"use strict";
const COLOURS = ["#2e7d32", "#f9a825", "#1565c0", "#c62828", "#6a1b9a", "#00838f", "#8d6e63",
                 "#546e7a"];
const RANGE_LABELS = {"1h": "1 hour", "24h": "24 hours", "7d": "7 days", "30d": "30 days"};
const charts = {};  // id -> uPlot instance (the browser test reads their axes)
window.sproutCharts = charts;
let current = {key: null, range: "24h"};

function scaled(v, steps, unit) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  for (const [factor, prefix] of steps) {
    if (a >= factor) return trim(v / factor) + " " + prefix + unit;
  }
  const [factor, prefix] = steps[steps.length - 1];
  return trim(v / factor) + " " + prefix + unit;
}

function trim(v) {
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toPrecision(2).replace(/\.?0+$/, "");
}

const UNITS = {
  g: (v) => scaled(v, [[1e6, "t"], [1e3, "kg"], [1, "g"], [1e-3, "mg"], [1e-6, "µg"]], "")
    .replace(/ (t|kg|g|mg|µg)$/, " $1CO2e"),
  j: (v) => scaled(v, [[1e9, "G"], [1e6, "M"], [1e3, "k"], [1, ""], [1e-3, "m"]], "J"),
  ci: (v) => v === null || v === undefined ? "–" : trim(v) + " g/kWh",
  share: (v) => v === null || v === undefined ? "–" : (v * 100).toFixed(0) + "%",
};

function fmtTime(seconds) {
  return new Date(seconds * 1000).toLocaleString([], {month: "short", day: "numeric",
                                                      hour: "2-digit", minute: "2-digit"});
}

// Tooltip: the hovered bucket's time and every series' value with its unit.
function tooltipPlugin(format) {
  let tip;
  return {hooks: {
    init: (u) => {
      tip = document.createElement("div");
      tip.className = "tooltip";
      u.over.appendChild(tip);
      u.over.addEventListener("mouseleave", () => { tip.style.display = "none"; });
    },
    setCursor: (u) => {
      const i = u.cursor.idx;
      if (i === null || i === undefined) { tip.style.display = "none"; return; }
      const lines = [fmtTime(u.data[0][i])];
      u.series.forEach((s, k) => {
        if (k === 0 || !s.show || s.tooltip === false) return;
        const raw = s.raw ? s.raw[i] : u.data[k][i];
        lines.push(`<span style="color:${s._stroke || s.stroke}">■</span> ${s.label}: ` +
                   format(raw));
      });
      tip.innerHTML = lines.join("<br>");
      tip.style.display = "block";
      const left = u.cursor.left, top = u.cursor.top;
      tip.style.left = Math.min(left + 12, u.over.clientWidth - tip.offsetWidth) + "px";
      tip.style.top = Math.max(top - tip.offsetHeight - 8, 0) + "px";
    },
  }};
}

// Evaluator runs as dashed vertical lines across the plot.
function runsPlugin(runs) {
  return {hooks: {draw: (u) => {
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = "#6a1b9a";
    ctx.setLineDash([5, 4]);
    ctx.lineWidth = 1.5 * devicePixelRatio;
    let drawn = 0;
    for (const run of runs) {
      const x = u.valToPos(run.started_at, "x", true);
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
      drawn += 1;
    }
    u.sproutRunsDrawn = drawn;
    ctx.restore();
  }}};
}

function plot(id, data, series, yUnit, yLabel, runs, extra) {
  const box = document.getElementById(id);
  if (charts[id]) charts[id].destroy();
  box.innerHTML = "";
  const format = UNITS[yUnit];
  const options = Object.assign({
    width: Math.max(box.clientWidth, 420), height: 240,
    scales: {x: {time: true}},
    series: [{label: "time", value: (u, v) => v === null ? "–" : fmtTime(v)},
             ...series.map((s) => Object.assign({value: (u, v, k, i) =>
                 format(s.raw ? s.raw[i] : v), spanGaps: false, width: 2}, s))],
    axes: [
      {stroke: "#4b5b4e", grid: {stroke: "#eef3ec"}, ticks: {stroke: "#c9d6c6"}},
      {stroke: "#4b5b4e", label: yLabel, labelSize: 16, size: 92,
       grid: {stroke: "#eef3ec"}, ticks: {stroke: "#c9d6c6"},
       values: (u, splits) => splits.map((v) => format(v))},
    ],
    legend: {live: true},
    cursor: {points: {size: 6}},
    plugins: [tooltipPlugin(format), runsPlugin(runs)],
  }, extra || {});
  charts[id] = new uPlot(options, data, box);
  return charts[id];
}

function colour(i) { return COLOURS[i % COLOURS.length]; }
function fade(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

function drawGrid(data) {
  const series = [], columns = [data.times];
  const bands = [];
  Object.entries(data.regions).forEach(([region, r], i) => {
    const pools = r.pools.length ? ` (${r.pools.join(", ")})` : "";
    const base = columns.length;
    columns.push(r.ci_g_per_kwh, r.trailing_max, r.trailing_min);
    series.push({label: region + pools, stroke: colour(i)},
                {label: region + " trailing max", stroke: fade(colour(i), 0.5), width: 1,
                 dash: [4, 3]},
                {label: region + " trailing min", stroke: fade(colour(i), 0.5), width: 1,
                 dash: [4, 3]});
    bands.push({series: [base + 1, base + 2], fill: fade(colour(i), 0.12)});
  });
  plot("chart-ci", columns, series, "ci", "gCO2e/kWh", data.evaluations, {bands});
}

function drawMix(data) {
  const levels = Object.keys(data.levels);
  const columns = [data.times], series = [], bands = [];
  const cumulative = data.times.map(() => 0);
  levels.forEach((level, i) => {
    const shares = data.levels[level].map((n, j) => data.requests[j] ?
      n / data.requests[j] : null);
    shares.forEach((s, j) => { if (s !== null) cumulative[j] += s; });
    columns.push(cumulative.map((c, j) => data.requests[j] ? c : null));
    series.push({label: level, stroke: colour(i), fill: fade(colour(i), 0.35), raw: shares,
                 width: 1});
    if (i > 0) bands.push({series: [i + 1, i], fill: fade(colour(i), 0.35)});
  });
  // Stacked: each series is the running total; fill only between neighbours.
  series.forEach((s, i) => { if (i > 0) delete s.fill; });
  plot("chart-mix", columns, series, "share", "share of requests", data.evaluations,
       {bands, scales: {x: {time: true}, y: {range: [0, 1]}}});
  document.getElementById("notes-mix").innerHTML = levels.map((level, i) =>
    `<dt style="color:${colour(i)}">${level}</dt><dd>${data.level_notes[level] ||
      "an operator-defined level"}</dd>`).join("");
}

function drawCarbon(data) {
  const c = data.carbon;
  const anyUnassessed = c.not_assessed_g_co2e.some((v) => v > 0);
  const columns = [data.times, c.emitted_g_co2e, c.saved_g_co2e];
  const series = [{label: "emitted", stroke: colour(3)},
                  {label: "saved vs always-L0", stroke: colour(0)}];
  if (anyUnassessed) {
    columns.push(c.not_assessed_g_co2e);
    series.push({label: "emitted, saving not assessed", stroke: colour(1), dash: [6, 4]});
  }
  plot("chart-carbon", columns, series, "g", "gCO2e per bucket", data.evaluations);
  const rows = data.classes.map((k) => {
    const saved = k.saved_g_co2e === null ? `<span class="nodata">not enough data</span>` :
      UNITS.g(k.saved_g_co2e);
    return `<tr title="${k.detail}"><td>${k.task_class}</td><td class="num">${k.requests}</td>` +
      `<td class="num">${UNITS.g(k.emitted_g_co2e)}</td><td class="num">${saved}</td>` +
      `<td>${k.status}</td></tr>`;
  });
  document.getElementById("table-classes").innerHTML =
    "<tr><th>task class</th><th class='num'>requests</th><th class='num'>emitted</th>" +
    "<th class='num'>saved vs L0</th><th>assessment</th></tr>" + rows.join("");
  document.getElementById("method").textContent = "Method: " + data.saved_method;
}

function drawEnergy(data) {
  const columns = [data.times], series = [];
  Object.entries(data.pools).forEach(([pool, p], i) => {
    columns.push(p.energy_j, p.idle_j);
    series.push({label: pool + " attributed", stroke: colour(i)},
                {label: pool + " idle", stroke: colour(i), dash: [6, 4], width: 1.5});
  });
  plot("chart-energy", columns, series, "j", "joules per bucket", data.evaluations);
}

function drawQuality(data) {
  const table = document.getElementById("table-quality");
  if (!data.quality.length) {
    table.innerHTML = "<tr><td>No evaluation has finished yet: the optimiser keeps every " +
      "class at L0 (cold start).</td></tr>";
  } else {
    table.innerHTML = "<tr><th>task class</th><th>level</th><th class='num'>q</th>" +
      "<th class='num'>95% interval</th><th class='num'>verdicts</th></tr>" +
      data.quality.map((q) => `<tr><td>${q.task_class === "*" ? "all classes" : q.task_class}` +
        `</td><td>${q.level}</td><td class="num">${q.q.toFixed(2)}</td>` +
        `<td class="num">${q.q_low.toFixed(2)}–${q.q_high.toFixed(2)}</td>` +
        `<td class="num">${q.judged}</td></tr>`).join("");
  }
  const runs = data.evaluations.map((r) => `${fmtTime(r.started_at)} ${r.status}` +
    ` (${r.judged_prompts} prompts, ${r.trigger})`);
  document.getElementById("evaluations").textContent = runs.length ?
    "Evaluator runs in this range: " + runs.join("; ") : "No evaluator run in this range.";
}

function limit(used, max, format) {
  if (max === null || max === undefined) return `${format(used)} <span class="note">(no limit)</span>`;
  return `${format(used)} / ${format(max)}`;
}

function drawKeys(keys) {
  const active = keys.filter((k) => !k.revoked_at);
  const count = (v) => trim(v);
  document.getElementById("table-keys").innerHTML = active.length ?
    "<tr><th>key</th><th class='num'>requests/min</th><th class='num'>tokens/min</th>" +
    "<th class='num'>carbon this period</th><th>budget</th></tr>" +
    active.map((k) => {
      const u = k.usage || {};
      const carbon = u.carbon_budget_g_co2e === null || u.carbon_budget_g_co2e === undefined ?
        "–" : `${UNITS.g(u.carbon_g_co2e)} / ${UNITS.g(u.carbon_budget_g_co2e)} per ` +
              u.carbon_budget_period;
      const state = u.budget_state === "none" ? "–" : u.budget_state +
        (u.shortened_to ? ` (≥ ${u.shortened_to})` : "");
      return `<tr><td>${k.name || k.key_id}</td>` +
        `<td class="num">${limit(u.requests_last_minute || 0, u.requests_per_minute, count)}</td>` +
        `<td class="num">${limit(u.tokens_last_minute || 0, u.tokens_per_minute, count)}</td>` +
        `<td class="num">${carbon}</td><td>${state}</td></tr>`;
    }).join("") : "<tr><td>No virtual keys.</td></tr>";
}

async function fetchJson(path, key) {
  const response = await fetch(path, {headers: {authorization: "Bearer " + key}});
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((body.error && body.error.message) ||
                                    ("HTTP " + response.status));
  return body;
}

async function show() {
  const status = document.getElementById("status");
  status.textContent = "loading...";
  document.body.dataset.loaded = "false";
  let data, keys;
  try {
    [data, keys] = await Promise.all([
      fetchJson("/admin/timeseries?range=" + current.range, current.key),
      fetchJson("/admin/keys", current.key)]);
  } catch (error) {
    status.textContent = error.message;
    return;
  }
  drawGrid(data);
  drawMix(data);
  drawCarbon(data);
  drawEnergy(data);
  drawQuality(data);
  drawKeys(keys);
  const total = data.requests.reduce((a, b) => a + b, 0);
  status.textContent = `${RANGE_LABELS[data.range]}, ${total} requests`;
  document.body.dataset.loaded = "true";
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  current.key = document.getElementById("key").value;
  sessionStorage.setItem("sprout-admin-key", current.key);
  show();
});
document.querySelectorAll("#ranges button").forEach((button) => {
  button.addEventListener("click", () => {
    document.querySelectorAll("#ranges button").forEach((b) => b.classList.remove("on"));
    button.classList.add("on");
    current.range = button.dataset.range;
    if (current.key) show();
  });
});
const saved = sessionStorage.getItem("sprout-admin-key");
if (saved) { current.key = saved; show(); }
