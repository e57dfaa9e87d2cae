// What every page shares: the token, API calls, live streams, the page's header, and DOM
// building. Data from the API only ever becomes text (append, textContent), never markup.

const TOKEN_KEY = "iot-token";

export const $ = (id) => document.getElementById(id);

/** An element with attributes and children; strings become text nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

/** A token given in the address's fragment (#token=...) is kept and taken out of the
 * address, so links can open a page signed in without the token reaching a server log. */
function tokenFromFragment() {
  const found = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (!found) return;
  localStorage.setItem(TOKEN_KEY, decodeURIComponent(found[1]));
  history.replaceState(null, "", location.pathname + location.search);
}

export function authHeaders() {
  const t = token();
  return t ? { Authorization: "Bearer " + t } : {};
}

export class ApiError extends Error {
  constructor(status, body) {
    super(status + " " + ((body && (body.reason || body.error)) || "error"));
    this.status = status;
    this.body = body;
  }
}

/** Fetches a JSON answer; a non-2xx status is an ApiError carrying the answer's reason. */
export async function api(path, init = {}) {
  const response = await fetch(path, { ...init, headers: { ...authHeaders(), ...(init.headers || {}) } });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

/** Why a request failed, in words an operator can act on. */
export function explain(error) {
  if (error instanceof ApiError && error.status === 401) return "Sign in: this page needs a token (" + error.message + ")";
  if (error instanceof ApiError && error.status === 403) return "Not allowed for this token (" + error.message + ")";
  return String(error.message || error);
}

/** Follows a Server-Sent Events stream of the API until `signal` aborts, resuming after the
 * last event's id on every reconnect (fetch, not EventSource: it sends the token).
 * `onEvent(event, data)` gets each event; `onState(text)` says whether the stream is live. */
export async function follow(path, onEvent, onState, signal, after = null) {
  let last = after;
  while (!signal.aborted) {
    try {
      const headers = { ...authHeaders() };
      if (last) headers["Last-Event-ID"] = last;
      const response = await fetch(path, { headers, signal });
      if (!response.ok) {
        let body = null;
        try { body = await response.json(); } catch { body = null; }
        throw new ApiError(response.status, body);
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      onState("live");
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let event = "message", id = null, data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) event = line.slice(7);
            else if (line.startsWith("id: ")) id = line.slice(4);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (id) last = id;
          if (data) onEvent(event, JSON.parse(data));
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
        onState(explain(error));
        return;
      }
      onState("reconnecting: " + explain(error));
    }
    await new Promise((ok) => setTimeout(ok, 1000));
  }
}

/** The header every page starts with: where to go, and the token. */
export function chrome(current) {
  tokenFromFragment();
  const links = [
    ["/ui", "Fleet", "overview"],
    ["/ui/alerts", "Alerts", "alerts"],
  ];
  const nav = el("nav", { "aria-label": "Pages" },
    el("ul", {}, ...links.map(([href, text, name]) =>
      el("li", {}, el("a", { href, "aria-current": name === current ? "page" : null }, text)))));
  const input = el("input", { id: "token", type: "password", autocomplete: "off", size: 24, placeholder: "bearer token" });
  input.value = token();
  const form = el("form", { id: "token-form", class: "token" },
    el("label", { for: "token" }, "Token "), input, " ", el("button", { type: "submit" }, "Use"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(TOKEN_KEY, input.value.trim());
    location.reload();
  });
  const header = $("top");
  header.replaceChildren(el("span", { class: "brand" }, "iot-telemetry"), nav, form);
}

/** Tells the reader (and screen readers, through aria-live) what the page is doing. */
export function say(id, text, problem = false) {
  const node = $(id);
  node.textContent = text;
  node.classList.toggle("problem", problem);
}

/** A number as an operator reads it: integers as they are, others to 3 significant places
 * after the point at most. */
export function number(value) {
  if (value === null || value === undefined) return "–";
  if (Number.isInteger(value)) return String(value);
  return String(Number(value.toPrecision(Math.max(3, Math.ceil(Math.log10(Math.abs(value) + 1)) + 2))));
}

/** A table body's rows from arrays of cells (strings or nodes); an empty list shows `empty`. */
export function fillRows(tbody, rows, empty) {
  if (!rows.length) {
    const columns = tbody.closest("table").querySelectorAll("thead th").length || 1;
    tbody.replaceChildren(el("tr", {}, el("td", { colspan: columns, class: "muted" }, empty)));
    return;
  }
  tbody.replaceChildren(...rows.map((cells) => el("tr", {}, ...cells.map((cell, i) =>
    i === 0 ? el("th", { scope: "row" }, cell) : el("td", {}, cell)))));
}

/** A link to a device's page. */
export function deviceLink(deviceId) {
  return el("a", { href: "/ui/devices/" + encodeURIComponent(deviceId) }, deviceId);
}

/** Alert transitions over the last `days` (newest first), reading on while the history says
 * it stopped early, at most `pages` answers. `query` narrows it (e.g. device_id). */
export async function recentTransitions(query, days = 7, pages = 5) {
  const from = Date.now() - days * 86400000;
  const found = [];
  let after = null;
  for (let page = 0; page < pages; page++) {
    const params = new URLSearchParams({ ...query, from: String(from), limit: "1000" });
    if (after) params.set("after", after);
    const answer = await api("/api/alerts/history?" + params);
    found.push(...answer.alerts);
    if (!answer.truncated || !answer.next_after) break;
    after = answer.next_after;
  }
  return found.sort((a, b) => b.ts_ms - a.ts_ms);
}

// The transitions of a history read together with those the live stream brought meanwhile:
// a history read may have begun before an alert the stream already showed.
export function withLive(history, shown) {
  const seen = new Set(history.map((a) => a.event_id));
  return history.concat(shown.filter((a) => !seen.has(a.event_id))).sort((a, b) => b.ts_ms - a.ts_ms);
}
