// Active alerts and recent transitions, live from the alert stream, filtered by device
// (by the API, so a device-scoped token can read its device's alerts) and by rule.

import { $, api, chrome, deviceLink, el, explain, fillRows, follow, number, recentTransitions, say, withLive } from "/ui/static/common.js";

const SHOWN = 100;
const query = new URLSearchParams(location.search);
const device = query.get("device_id") || "";
const rule = query.get("rule") || "";
let transitions = [];
const rules = new Set();

const wanted = (alert) => !rule || alert.rule === rule;
const scope = () => (device ? { device_id: device } : {});

function showRules() {
  $("rules").replaceChildren(...[...rules].sort().map((name) => el("option", { value: name })));
}

function showTransitions() {
  const rows = transitions.filter(wanted).slice(0, SHOWN).map((a) =>
    [a.ts, deviceLink(a.device_id), a.rule, a.state, number(a.value), number(a.threshold)]);
  fillRows($("transitions"), rows, "no transitions");
}

async function loadActive() {
  const found = [];
  let after = null;
  do {
    const params = new URLSearchParams({ ...scope(), limit: "1000" });
    if (after) params.set("after", after);
    const page = await api("/api/alerts?" + params);
    found.push(...page.alerts);
    after = page.next_after;
  } while (after && found.length < 10000);
  for (const a of found) rules.add(a.rule);
  fillRows($("active"), found.filter(wanted).map((a) => [deviceLink(a.device_id), a.rule, a.since, number(a.value)]), "no active alerts");
}

let reload = null;

/** Reads the active alerts again within a second, once however many alerts arrive. */
function reloadActive() {
  reload = reload || setTimeout(() => {
    reload = null;
    loadActive().catch((error) => say("status", explain(error), true));
  }, 1000);
}

function onAlert(event, alert) {
  if (event !== "alert") return;
  transitions.unshift(alert);
  transitions.length = Math.min(transitions.length, 1000);
  rules.add(alert.rule);
  showRules();
  showTransitions();
  reloadActive();
}

async function start() {
  chrome("alerts");
  $("filter-device").value = device;
  $("filter-rule").value = rule;
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    if ($("filter-device").value.trim()) next.set("device_id", $("filter-device").value.trim());
    if ($("filter-rule").value.trim()) next.set("rule", $("filter-rule").value.trim());
    location.assign("/ui/alerts" + (next.toString() ? "?" + next : ""));
  });
  try {
    await loadActive();
    transitions = await recentTransitions(scope());
  } catch (error) {
    say("status", explain(error) + (device ? "" : "; a token for some devices needs a device filter"), true);
    return;
  }
  for (const a of transitions) rules.add(a.rule);
  showRules();
  showTransitions();
  const stream = "/api/alerts/stream" + (device ? "?device_id=" + encodeURIComponent(device) : "");
  follow(stream, onAlert, (text) => {
    say("status", text === "live" ? "live" : text, text !== "live");
    if (text === "live") catchUp().catch(() => {});  // the stream starts at its own now
  }, new AbortController().signal);
}

async function catchUp() {
  transitions = withLive(await recentTransitions(scope()), transitions);
  for (const a of transitions) rules.add(a.rule);
  showRules();
  showTransitions();
  reloadActive();
}

start();
