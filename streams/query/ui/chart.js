// Time charts drawn as SVG with DOM calls: labelled time and value axes, lines, bands
// (min to max) and dots. No library: a few scales and ticks are all the pages need.

const SVG = "http://www.w3.org/2000/svg";
const MARGIN = { left: 64, right: 16, top: 12, bottom: 44 };

function node(name, attrs, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) element.setAttribute(key, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

/** About `count` round values, the first at or below `low`, the last at or above `high`. */
export function ticks(low, high, count = 5) {
  if (!(high > low)) return [low];
  const raw = (high - low) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const out = [];
  for (let v = Math.floor(low / step) * step; v < high + step * (1 - 1e-9); v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

const MINUTE = 60000, HOUR = 3600000, DAY = 86400000;

function timeTicks(start, end) {
  const span = end - start;
  const step = [MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY]
    .find((s) => span / s <= 6) || 7 * DAY;
  const out = [];
  for (let t = Math.ceil(start / step) * step; t <= end; t += step) out.push(t);
  return out;
}

/** A time tick's label in UTC: the time of day, with the date when the span covers days. */
function timeLabel(ms, span) {
  const iso = new Date(ms).toISOString();
  return span > DAY ? iso.slice(5, 10) + " " + iso.slice(11, 16) : iso.slice(11, 16);
}

function valueLabel(value) {
  return String(Number(value.toPrecision(4)));
}

/**
 * Draws `series` into `svg`, replacing what was there.
 *   series: [{kind: "line"|"band"|"dots", points: [{t, v}] or [{t, low, high}], cls, name}]
 *   options: {start, end (ms), yLabel, title}
 * The SVG gets a title and a description (for screen readers) and a legend of the series.
 */
export function drawChart(svg, series, options) {
  const width = svg.viewBox.baseVal.width || 720;
  const height = svg.viewBox.baseVal.height || 280;
  svg.replaceChildren();
  svg.append(node("title", {}, options.title || ""));
  const values = [];
  for (const s of series) {
    for (const p of s.points) {
      if (s.kind === "band") values.push(p.low, p.high);
      else values.push(p.v);
    }
  }
  const start = options.start, end = options.end;
  const plotW = width - MARGIN.left - MARGIN.right, plotH = height - MARGIN.top - MARGIN.bottom;
  let low = values.length ? Math.min(...values) : 0;
  let high = values.length ? Math.max(...values) : 1;
  if (options.zero) low = Math.min(0, low);
  if (high === low) { high += 1; low -= options.zero && low === 0 ? 0 : 1; }
  const yTicks = ticks(low, high);
  low = yTicks[0];
  high = yTicks[yTicks.length - 1];
  const x = (t) => MARGIN.left + plotW * (t - start) / ((end - start) || 1);
  const y = (v) => MARGIN.top + plotH - plotH * (v - low) / ((high - low) || 1);

  const axes = node("g", { class: "axes" });
  for (const v of yTicks) {
    axes.append(node("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: y(v), y2: y(v), class: "grid" }));
    axes.append(node("text", { x: MARGIN.left - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, valueLabel(v)));
  }
  for (const t of timeTicks(start, end)) {
    axes.append(node("line", { x1: x(t), x2: x(t), y1: MARGIN.top + plotH, y2: MARGIN.top + plotH + 5, class: "axis" }));
    axes.append(node("text", { x: x(t), y: MARGIN.top + plotH + 18, "text-anchor": "middle", class: "tick" }, timeLabel(t, end - start)));
  }
  axes.append(node("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: MARGIN.top + plotH, y2: MARGIN.top + plotH, class: "axis" }));
  axes.append(node("line", { x1: MARGIN.left, x2: MARGIN.left, y1: MARGIN.top, y2: MARGIN.top + plotH, class: "axis" }));
  axes.append(node("text", { x: MARGIN.left + plotW / 2, y: height - 6, "text-anchor": "middle", class: "axis-label x-label" }, "time (UTC)"));
  axes.append(node("text", { x: 14, y: MARGIN.top + plotH / 2, "text-anchor": "middle", class: "axis-label y-label",
    transform: `rotate(-90 14 ${MARGIN.top + plotH / 2})` }, options.yLabel || "value"));
  svg.append(axes);

  const inRange = (p) => p.t >= start && p.t <= end;
  for (const s of series) {
    const points = s.points.filter(inRange);
    if (!points.length) continue;
    if (s.kind === "band") {
      const top = points.map((p) => `${x(p.t).toFixed(1)},${y(p.high).toFixed(1)}`);
      const bottom = points.slice().reverse().map((p) => `${x(p.t).toFixed(1)},${y(p.low).toFixed(1)}`);
      svg.append(node("polygon", { points: top.concat(bottom).join(" "), class: "band " + (s.cls || "") }));
    } else if (s.kind === "dots") {
      const group = node("g", { class: "dots " + (s.cls || "") });
      for (const p of points) group.append(node("circle", { cx: x(p.t).toFixed(1), cy: y(p.v).toFixed(1), r: 3 }));
      svg.append(group);
    } else {
      const d = points.map((p, i) => (i ? "L" : "M") + x(p.t).toFixed(1) + " " + y(p.v).toFixed(1)).join(" ");
      svg.append(node("path", { d, class: "line " + (s.cls || "") }));
    }
  }
  const described = series.filter((s) => s.name).map((s) => s.name + ": " + s.points.length + " points").join("; ");
  svg.append(node("desc", {}, described));
}

/** A legend for a chart's series, as an HTML list (keys coloured by the same classes). */
export function legend(list, series) {
  list.replaceChildren(...series.filter((s) => s.name).map((s) => {
    const item = document.createElement("li");
    const key = document.createElement("span");
    key.className = "key " + s.kind + " " + (s.cls || "");
    key.setAttribute("aria-hidden", "true");
    item.append(key, s.name);
    return item;
  }));
}
