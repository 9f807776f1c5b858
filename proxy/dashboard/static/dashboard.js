// sprout-proxy dashboard: plots /admin/timeseries as SVG, no libraries.
"use strict";
const COLOURS = ["#2e7d32", "#f9a825", "#1565c0", "#c62828", "#6a1b9a", "#00838f", "#8d6e63"];
const NS = "http://www.w3.org/2000/svg";

function el(name, attrs, parent) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function frame(svg, maxY) {
  svg.innerHTML = "";
  const w = svg.clientWidth || 480, h = svg.clientHeight || 220, pad = 36;
  el("line", {x1: pad, y1: h - pad, x2: w - 8, y2: h - pad, stroke: "#999"}, svg);
  el("line", {x1: pad, y1: 8, x2: pad, y2: h - pad, stroke: "#999"}, svg);
  const label = el("text", {x: 2, y: 16, "font-size": 10, fill: "#555"}, svg);
  label.textContent = formatNumber(maxY);
  return {w, h, pad, x: (i, n) => pad + (n <= 1 ? 0.5 : i / (n - 1)) * (w - pad - 16),
          y: (v) => h - pad - (maxY > 0 ? v / maxY : 0) * (h - pad - 12)};
}

function formatNumber(v) {
  if (v >= 1000) return (v / 1000).toFixed(1) + "k";
  if (v >= 1) return v.toFixed(1);
  return v.toPrecision(2);
}

function legend(id, names) {
  const box = document.getElementById(id);
  box.innerHTML = names.map((n, i) =>
    `<span><i style="background:${COLOURS[i % COLOURS.length]}"></i>${n}</span>`).join("");
}

function lines(svg, series, hours) {
  const values = Object.values(series).flat().filter((v) => v !== null);
  const f = frame(svg, Math.max(1e-9, ...values));
  Object.entries(series).forEach(([name, points], i) => {
    const colour = COLOURS[i % COLOURS.length];
    let d = "";
    points.forEach((v, j) => {
      if (v === null) return;
      d += (d ? " L " : "M ") + f.x(j, hours.length) + " " + f.y(v);
      el("circle", {cx: f.x(j, hours.length), cy: f.y(v), r: 2.5, fill: colour,
                    "data-series": name}, svg);
    });
    if (d) el("path", {d, fill: "none", stroke: colour, "stroke-width": 2,
                       "data-series": name}, svg);
  });
}

function stacked(svg, series, hours) {
  const f = frame(svg, 1);
  const width = Math.max(2, (f.w - f.pad - 16) / Math.max(hours.length, 1) - 2);
  hours.forEach((_, j) => {
    let base = 0;
    Object.entries(series).forEach(([name, shares], i) => {
      const share = shares[j] || 0;
      if (share <= 0) return;
      const top = f.y(base + share), bottom = f.y(base);
      el("rect", {x: f.x(j, hours.length) - width / 2, y: top, width, height: bottom - top,
                  fill: COLOURS[i % COLOURS.length], "data-series": name}, svg);
      base += share;
    });
  });
}

function bars(svg, totals) {
  const names = Object.keys(totals);
  const f = frame(svg, Math.max(1e-9, ...Object.values(totals)));
  const width = (f.w - f.pad - 16) / Math.max(names.length, 1) - 8;
  names.forEach((name, i) => {
    const x = f.pad + 4 + i * (width + 8), top = f.y(totals[name]);
    el("rect", {x, y: top, width, height: f.h - f.pad - top, fill: COLOURS[i % COLOURS.length],
                "data-series": name}, svg);
  });
}

async function show(key) {
  const status = document.getElementById("status");
  status.textContent = "loading...";
  const response = await fetch("/admin/timeseries", {headers: {authorization: "Bearer " + key}});
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    status.textContent = (body.error && body.error.message) || ("HTTP " + response.status);
    return;
  }
  const data = await response.json();
  const hours = data.hours;
  const ci = Object.fromEntries(Object.entries(data.pools).map(([p, s]) => [p, s.ci_g_per_kwh]));
  lines(document.getElementById("chart-ci"), ci, hours);
  legend("legend-ci", Object.keys(ci));
  stacked(document.getElementById("chart-mix"), data.level_mix, hours);
  legend("legend-mix", Object.keys(data.level_mix));
  lines(document.getElementById("chart-carbon"), {
    "gCO2e per request": data.g_co2e_per_request,
    "saved vs L0 per request": data.saved_g_co2e_per_request}, hours);
  legend("legend-carbon", ["gCO2e per request", "saved vs L0 per request"]);
  document.getElementById("method").textContent = "Saved: " + data.saved_method;
  // Joules attributed to each pool's requests, and the idle joules of its devices (metered
  // with no request running): both are energy the fleet drew.
  const energy = {};
  for (const [p, s] of Object.entries(data.pools)) {
    energy[p] = s.energy_j.reduce((a, b) => a + b, 0);
    energy[p + " (idle)"] = (s.idle_j || []).reduce((a, b) => a + b, 0);
  }
  bars(document.getElementById("chart-energy"), energy);
  legend("legend-energy", Object.keys(energy));
  status.textContent = `${hours.length} hours, ${data.requests.reduce((a, b) => a + b, 0)} requests`;
  document.body.dataset.loaded = "true";
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = document.getElementById("key").value;
  sessionStorage.setItem("sprout-admin-key", key);
  show(key);
});
const saved = sessionStorage.getItem("sprout-admin-key");
if (saved) show(saved);
