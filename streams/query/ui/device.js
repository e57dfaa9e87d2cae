// One device: latest values, a chart of its window aggregates with live readings on top,
// loss accounting, alerts, presence, and a form to send it a command.

import { $, ApiError, api, chrome, explain, fillRows, follow, number, recentTransitions, say, withLive } from "/ui/static/common.js";
import { drawChart, legend } from "/ui/static/chart.js";

const MINUTE = 60000, HOUR = 3600000;
const HISTORY_SHOWN = 50;
const deviceId = decodeURIComponent(location.pathname.split("/").pop());
const base = "/api/devices/" + encodeURIComponent(deviceId);

let device = null;        // the device's state, kept current by its live readings
const live = {};          // metric -> [{t, v}] readings seen live since the page opened
let transitions = [];
let chartWindow = null;   // {metric, start, end, size, points}

function showPresence() {
  const p = device.presence;
  let text = "presence unknown (no connect seen)";
  if (p.online === true) text = "online, connected since " + p.since;
  else if (p.online === false) text = "offline since " + p.since + (p.reason ? " (" + p.reason + ")" : "");
  $("presence").textContent = text + " · last seen " + (device.last_seen || "–") + " · " + device.count + " readings";
}

function showLatest() {
  const rows = Object.entries(device.metrics).map(([name, m]) => [name, String(m.value), m.ts]);
  fillRows($("latest"), rows, "no metrics yet");
  const metric = $("metric").value;
  const latest = device.metrics[metric];
  if (latest) {
    $("live-value").textContent = String(latest.value);
    $("live-ts").textContent = metric + " at " + latest.ts;
  }
}

function metricOptions() {
  const select = $("metric");
  const names = Object.keys(device.metrics);
  const wanted = new URLSearchParams(location.search).get("metric");
  const chosen = select.value || (names.includes(wanted) ? wanted : names[0]);
  select.replaceChildren(...names.map((n) => new Option(n, n, false, n === chosen)));
}

function draw() {
  if (!chartWindow) return;
  const { metric, start, end, size, points } = chartWindow;
  const middle = (p) => p.start_ms + size / 2;
  const series = [
    { kind: "band", cls: "s1", name: "min – max per window", points: points.map((p) => ({ t: middle(p), low: p.min, high: p.max })) },
    { kind: "line", cls: "s1", name: "average per window", points: points.map((p) => ({ t: middle(p), v: p.mean })) },
    { kind: "dots", cls: "s2", name: "readings received live", points: (live[metric] || []) },
  ];
  drawChart($("chart"), series, { start, end, yLabel: metric, title: metric + " of " + deviceId });
  legend($("chart-legend"), series);
}

async function loadChart() {
  const metric = $("metric").value;
  if (!metric) return;
  const resolution = $("resolution").value;
  const size = resolution === "1h" ? HOUR : MINUTE;
  const range = Math.max(Number($("range").value), size);
  const end = (Math.floor(Math.max(Date.now(), device.last_seen_ms || 0) / size) + 1) * size;
  const start = end - range;
  const params = new URLSearchParams({ metric, resolution, from: String(start), to: String(end) });
  try {
    const answer = await api(base + "/aggregates?" + params);
    chartWindow = { metric, start, end, size, points: answer.points };
    $("position").textContent = answer.points.length + " windows of " + resolution + " from " + answer.from + " to " + answer.to + "; lag " + answer.consistency.lag;
    draw();
  } catch (error) {
    say("status", "chart: " + explain(error), true);
  }
}

async function loadLoss() {
  const loss = await api(base + "/loss");
  const seq = loss.sequence;
  const gaps = seq.gaps.slice(-5).map(([a, b]) => (a === b ? String(a) : a + "–" + b)).join(", ");
  const rows = [
    ["missing (sequence gaps)", String(seq.missing) + (seq.gaps_total ? " in " + seq.gaps_total + " gaps" + (gaps ? ": " + gaps : "") : "")],
    ["sequence restarts", String(seq.resets)],
    ["duplicates absorbed", String(loss.duplicates)],
    ...Object.entries(loss.late).map(([kind, n]) => ["late (" + kind + ")", String(n)]),
    ["out of window (earlier boot)", String(seq.out_of_window)],
    ["written off", String(seq.written_off)],
    ["invalid values", String(loss.invalid_values)],
    ["deleted by retention before applied (partition " + loss.retention_gap.partition + ")", String(loss.retention_gap.records)],
    ["rejected to the DLQ", String(loss.dlq.rejected)],
  ];
  fillRows($("loss"), rows, "nothing");
  fillRows($("dlq"), Object.entries(loss.dlq.by_reason).map(([reason, n]) => [reason, String(n)]),
    loss.dlq.caught_up ? "no rejections" : "still reading the DLQ…");
}

function showTransitions() {
  fillRows($("alert-history"), transitions.slice(0, HISTORY_SHOWN).map((a) =>
    [a.ts, a.rule, a.state, number(a.value), number(a.threshold)]), "no alert transitions in the last 7 days");
}

async function loadAlerts() {
  const states = await api("/api/alerts?active=false&device_id=" + encodeURIComponent(deviceId));
  fillRows($("alert-states"), states.alerts.map((a) => [a.rule, a.active ? "RAISED" : "clear", a.since, number(a.value)]), "no rule has fired for this device");
  transitions = withLive(await recentTransitions({ device_id: deviceId }), transitions);
  showTransitions();
}

function onReading(event, reading) {
  if (event !== "reading") return;
  for (const [name, value] of Object.entries(reading.metrics)) {
    device.metrics[name] = { value, ts: reading.ts, ts_ms: reading.ts_ms };
    (live[name] = live[name] || []).push({ t: reading.ts_ms, v: value });
  }
  if (!device.last_seen_ms || reading.ts_ms >= device.last_seen_ms) {
    device.last_seen = reading.ts;
    device.last_seen_ms = reading.ts_ms;
  }
  device.count += 1;
  if ($("metric").options.length !== Object.keys(device.metrics).length) metricOptions();
  showLatest();
  showPresence();
  draw();
}

let reload = null;

function onAlert(event, alert) {
  if (event !== "alert") return;
  transitions.unshift(alert);
  showTransitions();
  reload = reload || setTimeout(() => {  // once a second at most, however many arrive
    reload = null;
    loadAlerts().catch(() => {});
  }, 1000);
}

function paramsOf(text) {
  const params = {};
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const cut = line.indexOf("=");
    if (cut < 1) throw new Error("parameters: expected key=value, got " + JSON.stringify(line));
    params[line.slice(0, cut).trim()] = line.slice(cut + 1).trim();
  }
  return params;
}

async function sendCommand(event) {
  event.preventDefault();
  try {
    const body = { name: $("command-name").value.trim(), params: paramsOf($("command-params").value) };
    if ($("command-ttl").value) body.ttl_s = Number($("command-ttl").value);
    const answer = await api(base + "/commands", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    say("command-status", "sent " + answer.name + " (" + answer.command_id + ") at " + answer.issued_at +
      (answer.expires_at ? ", expires " + answer.expires_at : ""));
  } catch (error) {
    say("command-status", explain(error), true);
  }
}

async function start() {
  chrome("device");
  $("title").textContent = deviceId;
  document.title = deviceId + " – iot-telemetry";
  $("command-form").addEventListener("submit", sendCommand);
  try {
    device = await api(base);
  } catch (error) {
    const unknown = error instanceof ApiError && error.status === 404;
    say("status", unknown ? "No device " + deviceId + " (no reading applied yet)" : explain(error), true);
    return;
  }
  metricOptions();
  showLatest();
  showPresence();
  for (const id of ["metric", "resolution", "range"]) $(id).addEventListener("change", () => { showLatest(); loadChart(); });
  await loadChart();
  say("status", "connecting…");
  const stop = new AbortController();
  const [partition] = Object.keys(device.consistency.applied);
  const position = partition + ":" + device.consistency.applied[partition];
  follow(base + "/stream", onReading, (text) => say("status", text, text !== "live"), stop.signal, position);
  // The stream starts at its own now: once it is live, what came before it is read again.
  follow("/api/alerts/stream?device_id=" + encodeURIComponent(deviceId), onAlert,
    (text) => { if (text === "live") loadAlerts().catch(() => {}); }, stop.signal);
  await Promise.all([
    loadLoss().catch((error) => say("status", "loss: " + explain(error), true)),
    loadAlerts().catch((error) => fillRows($("alert-history"), [], explain(error))),
  ]);
  setInterval(() => loadLoss().catch(() => {}), 10000);
}

start();
