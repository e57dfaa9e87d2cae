"""The web page (``/ui``): the devices, a chart of one device's aggregates, live via SSE.

Plain HTML and one inline script (no build step). It reads the same JSON API as any client:
``/api/devices``, the device's 1-minute aggregates over the last hour, then its live readings
as Server-Sent Events resumed from the position the aggregates reflect (so no reading falls
between the snapshot and the stream). The stream is read with ``fetch`` rather than
``EventSource`` so that a bearer token (kept in the browser's localStorage) can be sent.
``/ui?device=ID&metric=NAME`` opens a device directly.

Everything the API returns (device ids, metric names, values) is put into the page as text
(``textContent``, ``new Option``, SVG attributes), never parsed as HTML: the token sits in
localStorage, so injected markup would be a stolen token. The page is served with a
Content-Security-Policy that allows only its own inline script and style (by hash), fetches
to its own origin, and nothing else, as a second line.
"""

from __future__ import annotations

import base64
import hashlib
import re

# ruff: noqa: E501 - the page's script is kept as written for the browser

__all__ = ["page_headers", "page_html"]

_HTML = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>iot-telemetry</title>
<style>
body{font:14px system-ui,sans-serif;margin:0;display:flex;height:100vh}
nav{width:260px;overflow:auto;border-right:1px solid #ccc;padding:8px}
nav li{cursor:pointer;padding:2px 4px;list-style:none}nav li:hover{background:#eef}
nav ul{padding:0}main{flex:1;padding:12px}#live-value{font-size:32px;font-weight:600}
svg{border:1px solid #ddd;background:#fafafa}.muted{color:#777}
</style></head><body>
<nav><label>token <input id="token" size="14" placeholder="(auth off)"></label>
<h3>devices</h3><ul id="devices"></ul></nav>
<main><h2 id="title">pick a device</h2>
<div>metric <select id="metric"></select> <span id="status" class="muted"></span></div>
<div>live: <span id="live-value">-</span> <span id="live-ts" class="muted"></span></div>
<svg id="chart" width="720" height="260"></svg>
<div id="position" class="muted"></div></main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
$("token").value = localStorage.getItem("iot-token") || "";
$("token").onchange = () => { localStorage.setItem("iot-token", $("token").value); load(); };
let stream = null, points = [], current = null;
function headers() {
  const t = $("token").value.trim();
  return t ? {Authorization: "Bearer " + t} : {};
}
async function api(path) {
  const r = await fetch(path, {headers: headers()});
  const body = await r.json();
  if (!r.ok) throw new Error(r.status + " " + (body.reason || body.error));
  return body;
}
function svgEl(name, attrs, text) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}
function draw() {
  const svg = $("chart"), w = svg.width.baseVal.value, h = svg.height.baseVal.value;
  svg.replaceChildren();
  if (!points.length) return;
  const xs = points.map(p => p.t), ys = points.map(p => p.v);
  const x0 = Math.min(...xs), x1 = Math.max(...xs) || x0 + 1;
  const y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = t => 30 + (w - 40) * (t - x0) / ((x1 - x0) || 1);
  const sy = v => h - 20 - (h - 40) * (v - y0) / ((y1 - y0) || 1);
  const d = points.map((p, i) => (i ? "L" : "M") + sx(p.t).toFixed(1) + " " + sy(p.v).toFixed(1)).join(" ");
  svg.append(
    svgEl("path", {d: d, fill: "none", stroke: "#36c", "stroke-width": 2}),
    svgEl("text", {x: 2, y: 14, "font-size": 11}, Number(y1).toFixed(2)),
    svgEl("text", {x: 2, y: h - 6, "font-size": 11}, Number(y0).toFixed(2)));
}
async function follow(device, metric, after) {
  if (stream) stream.abort();
  stream = new AbortController();
  let last = after;
  while (!stream.signal.aborted) {
    try {
      const h = Object.assign({"Last-Event-ID": last}, headers());
      const r = await fetch("/api/devices/" + encodeURIComponent(device) + "/stream", {headers: h, signal: stream.signal});
      const reader = r.body.getReader(), dec = new TextDecoder();
      let buf = "";
      $("status").textContent = "live";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buf += dec.decode(value, {stream: true});
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut); buf = buf.slice(cut + 2);
          let ev = "message", id = null, data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) ev = line.slice(7);
            else if (line.startsWith("id: ")) id = line.slice(4);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (id) last = id;
          if (ev === "reading") {
            const m = JSON.parse(data);
            if (metric in m.metrics) {
              $("live-value").textContent = String(m.metrics[metric]);
              $("live-ts").textContent = m.ts + " @" + m.position;
              points.push({t: m.ts_ms, v: m.metrics[metric]}); draw();
            }
          }
        }
      }
    } catch (e) {
      if (stream.signal.aborted) return;
      $("status").textContent = "reconnecting: " + e.message;
    }
    await new Promise(ok => setTimeout(ok, 1000));
  }
}
async function show(device, metric) {
  current = device;
  $("title").textContent = device;
  const state = await api("/api/devices/" + encodeURIComponent(device));
  const names = Object.keys(state.metrics);
  metric = metric && names.includes(metric) ? metric : names[0];
  $("metric").replaceChildren(...names.map(n => new Option(n, n, false, n === metric)));
  $("metric").onchange = () => show(device, $("metric").value);
  if (!metric) return;
  const latest = state.metrics[metric];
  $("live-value").textContent = String(latest.value);
  const to = latest.ts_ms + 60000, from = to - 3600000;
  const agg = await api("/api/devices/" + encodeURIComponent(device) + "/aggregates?metric=" +
    encodeURIComponent(metric) + "&resolution=1m&from=" + from + "&to=" + to);
  points = agg.points.map(p => ({t: p.start_ms, v: p.mean}));
  draw();
  const applied = agg.consistency.applied, p = Object.keys(applied)[0];
  const position = p + ":" + applied[p];
  $("position").textContent = "as of " + position + ", lag " + agg.consistency.lag;
  follow(device, metric, position);
}
async function load() {
  try {
    const list = await api("/api/devices?limit=200");
    $("devices").replaceChildren();
    for (const d of list.devices) {
      const li = document.createElement("li");
      li.textContent = d.device_id; li.onclick = () => show(d.device_id);
      $("devices").appendChild(li);
    }
  } catch (e) { $("status").textContent = "devices: " + e.message; }
  const wanted = params.get("device");
  if (wanted) show(wanted, params.get("metric")).catch(e => { $("status").textContent = e.message; });
}
load();
</script></body></html>
"""


def page_html() -> str:
    """The page's HTML (static: everything it shows comes from the API)."""
    return _HTML


def _hashes(tag: str) -> str:
    bodies = re.findall(rf"<{tag}>(.*?)</{tag}>", _HTML, re.DOTALL)
    digests = (hashlib.sha256(body.encode()).digest() for body in bodies)
    return " ".join(f"'sha256-{base64.b64encode(d).decode()}'" for d in digests)


_CSP = "; ".join(
    [
        "default-src 'none'",
        f"script-src {_hashes('script')}",
        f"style-src {_hashes('style')}",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)


def page_headers() -> dict[str, str]:
    """Headers of the page's response: the Content-Security-Policy (only the page's own
    inline script and style, by hash; requests to its own origin only) and no sniffing."""
    return {
        "Content-Security-Policy": _CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
