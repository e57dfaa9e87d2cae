// The fleet overview: /api/overview and the first devices, polled every few seconds.

import { $, api, chrome, deviceLink, explain, fillRows, number, say } from "/ui/static/common.js";
import { drawChart, legend } from "/ui/static/chart.js";

const POLL_MS = 5000;
const HOUR = 3600000;
const DEVICES_SHOWN = 25;

function sumReasons(minutes) {
  const totals = {};
  for (const minute of minutes) {
    for (const [reason, count] of Object.entries(minute.by_reason)) totals[reason] = (totals[reason] || 0) + count;
  }
  return totals;
}

function showIngest(overview) {
  const points = overview.ingest;
  const latest = points[points.length - 1];
  $("ingest-rate").textContent = latest ? number(latest.ingest_per_s) : "–";
  $("freshness").textContent = latest ? number(latest.freshness_s) : "–";
  const end = overview.time_ms, start = end - HOUR;
  const series = [
    { kind: "line", cls: "s1", name: "written to the log (acknowledged)", points: points.map((p) => ({ t: p.time_ms, v: p.ingest_per_s })) },
    { kind: "line", cls: "s2", name: "applied", points: points.map((p) => ({ t: p.time_ms, v: p.applied_per_s })) },
  ];
  drawChart($("ingest-chart"), series, { start, end, yLabel: "records / s", title: "Ingest over the last hour", zero: true });
  legend($("ingest-legend"), series);
  const freshness = [{ kind: "line", cls: "s3", name: "freshness", points: points.filter((p) => p.freshness_s !== null).map((p) => ({ t: p.time_ms, v: p.freshness_s })) }];
  drawChart($("freshness-chart"), freshness, { start, end, yLabel: "freshness (s)", title: "Acknowledged-to-applied freshness", zero: true });
}

function showDlq(overview) {
  const minutes = overview.dlq.minutes;
  const end = overview.time_ms, start = end - HOUR;
  const hour = sumReasons(minutes.filter((m) => m.start_ms >= start));
  const recent = sumReasons(minutes.filter((m) => m.start_ms >= end - 10 * 60000));
  fillRows($("dlq"), Object.keys(hour).sort().map((reason) => [reason, String(hour[reason]), String(recent[reason] || 0)]),
    overview.dlq.caught_up ? "no rejections in the last hour" : "still reading the DLQ…");
  const perMinute = minutes.map((m) => ({ t: m.start_ms, v: Object.values(m.by_reason).reduce((a, b) => a + b, 0) }));
  drawChart($("dlq-chart"), [{ kind: "dots", cls: "s4", name: "rejections", points: perMinute }],
    { start, end, yLabel: "rejections / min", title: "DLQ rejections per minute", zero: true });
}

function show(overview) {
  const devices = overview.devices;
  $("devices-total").textContent = String(devices.total);
  $("devices-online").textContent = devices.presence_caught_up ? String(devices.online) : devices.online + " (reading…)";
  $("devices-seen").textContent = String(devices.seen);
  $("alerts-active").textContent = String(overview.alerts.active);
  $("lag").textContent = String(overview.consistency.lag);
  fillRows($("partitions"), overview.partitions.map((p) => [String(p.partition), String(p.applied), String(p.end), String(p.lag)]), "no partitions");
  const workers = overview.workers.map((w) => ["worker (" + w.group + ")", w.ready ? "ready" : "not ready", w.dlq_caught_up ? "DLQ read" : "reading the DLQ"]);
  const others = overview.processes.map((p) => [p.name, p.ready ? "ready" : "not ready", p.problem || ""]);
  fillRows($("workers"), workers.concat(others), "none");
  showIngest(overview);
  showDlq(overview);
}

const pages = [null];  // the `after` of each page of devices shown so far; the last is shown

function showDevices(list) {
  fillRows($("devices"), list.devices.map((d) => [deviceLink(d.device_id), d.last_seen || "–", String(d.count), Object.keys(d.metrics).join(", ")]), "no devices yet");
  $("devices-previous").disabled = pages.length < 2;
  $("devices-next").disabled = !list.next_after;
  $("devices-next").dataset.after = list.next_after || "";
}

function devicesPath() {
  const after = pages[pages.length - 1];
  return "/api/devices?limit=" + DEVICES_SHOWN + (after ? "&after=" + encodeURIComponent(after) : "");
}

async function refresh() {
  const minutes = $("seen-minutes").value;
  try {
    const [overview, list] = await Promise.all([
      api("/api/overview?seen_minutes=" + encodeURIComponent(minutes)),
      api(devicesPath()),
    ]);
    show(overview);
    showDevices(list);
    say("status", "live: updated " + overview.time);
  } catch (error) {
    say("status", explain(error), true);
  }
}

chrome("overview");
$("open-device").addEventListener("submit", (event) => {
  event.preventDefault();
  location.assign("/ui/devices/" + encodeURIComponent($("device-id").value.trim()));
});
$("seen-minutes").addEventListener("change", refresh);
$("devices-next").addEventListener("click", (event) => { pages.push(event.target.dataset.after); refresh(); });
$("devices-previous").addEventListener("click", () => { pages.pop(); refresh(); });
const legacy = new URLSearchParams(location.search).get("device");
if (legacy) location.replace("/ui/devices/" + encodeURIComponent(legacy));
refresh();
setInterval(refresh, POLL_MS);
