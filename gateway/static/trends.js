// The dashboard's sparklines: their samples, a time axis, a range, values on hover.
// x is time over the chosen range, ending at the latest snapshot (the server's clock, so a
// skewed browser clock does not shift it). The past comes from the history store
// (history.js: points a step apart); the live ring of snapshots (one sample each, the last
// 15 minutes) draws what came after the newest stored step, or everything when the history
// is unavailable. A null value (the service was down, or had no event) is a gap in the line,
// not a zero; so is a stored step without a point.
import { UNIT_TEXT, axisTimes, el, pointTime } from "/static/format.js";
import { rangeOf } from "/static/history.js";

const LIVE_MS = 15 * 60000;  // the live ring's span
const MAX_SAMPLES = 5000;

export const SVG = "http://www.w3.org/2000/svg";

// The figures the sparklines draw: the live samples, one per snapshot, oldest first; the
// stored points (`stored`, a StoredTrends); and the range shown (a history.js RANGES entry).
export class Trends {
  constructor(rangeKey, stored) {
    this.range = rangeOf(rangeKey);
    this.stored = stored;
    // {t: snapshot time (ms), eps: fleet events/s, rows: Map(name -> {eps, err, p95, status})}
    this.samples = [];
  }

  // Keep a snapshot's figures; false when it has no time or was kept already.
  record(body) {
    const samples = this.samples;
    const t = Date.parse(body.timestamp);
    if (!Number.isFinite(t)) return false;
    let i = samples.length;
    while (i > 0 && samples[i - 1].t > t) i--;
    if (i > 0 && samples[i - 1].t === t) return false;      // seen on the other stream
    const rows = new Map();
    for (const row of body.active_apis.concat(body.inactive_services || [])) {
      const up = row.status === "active";
      const known = (v) => (up && v !== null && v !== undefined ? v : null);
      rows.set(row.service_name, {
        eps: known(row.events_per_second),
        err: known(row.error_rate) === null ? null : row.error_rate * 100,
        p95: known(row.latency_p95_ms),
        status: row.status,
      });
    }
    samples.splice(i, 0, { t, eps: body.events_per_second, rows });
    const newest = samples[samples.length - 1].t;
    let old = 0;
    while (old < samples.length && samples[old].t < newest - LIVE_MS) old++;
    old = Math.max(old, samples.length - MAX_SAMPLES);
    if (old > 0) samples.splice(0, old);
    return true;
  }

  // The server's time now: the latest snapshot's (0 before the first).
  now() {
    return this.samples.length ? this.samples[this.samples.length - 1].t : 0;
  }

  // The points of one series over the current range: {points: [{t, v, status}], t0, t1,
  // stored: how many came from the history}; name null: the fleet.
  series(name, key) {
    const stored = this.stored.series(name, key);
    const end = stored.length ? this.stored.end : -Infinity;
    const t1 = Math.max(this.now(), stored.length ? end : 0);
    if (!t1) return { points: [], t0: 0, t1: 0, stored: 0 };
    const t0 = t1 - this.range.seconds * 1000;
    const step = this.range.step * 1000;
    const points = [];
    let last = null;
    for (const p of stored) {
      if (p.t < t0) continue;
      if (last !== null && p.t - last > step) points.push({ t: last + step, v: null, status: "no data" });
      points.push({ t: p.t, v: p.v, status: "active" });
      last = p.t;
    }
    const count = points.filter((p) => p.v !== null).length;
    for (const sample of this.samples) {
      if (sample.t < t0 || sample.t <= end) continue;
      if (last !== null && sample.t - last > 2 * step) points.push({ t: last + step, v: null, status: "no data" });
      last = sample.t;
      if (name === null) { points.push({ t: sample.t, v: sample.eps, status: "active" }); continue; }
      const row = sample.rows.get(name);
      if (row) points.push({ t: sample.t, v: row[key], status: row.status });
    }
    return { points, t0, t1, stored: count };
  }
}

export function drawSpark(svg, data, width, height) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  svg.spark = data;
  const { points, t0, t1 } = data;
  const span = Math.max(1, t1 - t0);
  const stride = Math.max(1, Math.floor(points.length / (2 * width)));
  const drawn = points.filter((p, i) => i % stride === 0 || i === points.length - 1);
  const max = Math.max(0.001, ...drawn.map((p) => p.v || 0));
  const x = (p) => ((p.t - t0) / span) * width;
  const y = (p) => height - 2 - (p.v / max) * (height - 4);
  let segment = [];
  const flush = () => {
    if (!segment.length) return;
    const line = segment.map((p) => x(p).toFixed(1) + "," + y(p).toFixed(1)).join(" ");
    const first = x(segment[0]).toFixed(1), last = x(segment[segment.length - 1]).toFixed(1);
    const area = document.createElementNS(SVG, "polygon");
    area.setAttribute("class", "area");
    area.setAttribute("points", first + "," + height + " " + line + " " + last + "," + height);
    const poly = document.createElementNS(SVG, "polyline");
    poly.setAttribute("class", "line");
    poly.setAttribute("points", segment.length > 1 ? line : line + " " + (x(segment[0]) + 0.5).toFixed(1) + "," + y(segment[0]).toFixed(1));
    svg.appendChild(area);
    svg.appendChild(poly);
    segment = [];
  };
  for (const p of drawn) { if (p.v === null || p.v === undefined) flush(); else segment.push(p); }
  flush();
  const cursor = document.createElementNS(SVG, "line");
  cursor.setAttribute("class", "cursor");
  cursor.setAttribute("y1", "0");
  cursor.setAttribute("y2", String(height));
  cursor.style.display = "none";
  svg.appendChild(cursor);
  svg.dataset.width = String(width);
  svg.dataset.points = String(points.filter((p) => p.v !== null && p.v !== undefined).length);
  svg.dataset.stored = String(data.stored || 0);
  if (svg.hoverX !== undefined) showTip(svg, svg.hoverX);   // a redraw under the pointer
}

// The tooltip of every sparkline (one per page): the sample nearest the pointer, its time
// and value.
function tooltip() {
  let tip = document.getElementById("spark-tip");
  if (!tip) {
    tip = el("div", "spark-tip");
    tip.id = "spark-tip";
    tip.setAttribute("role", "tooltip");
    tip.hidden = true;
    document.body.appendChild(tip);
  }
  return tip;
}

function nearest(points, t) {
  let lo = 0, hi = points.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (points[mid].t < t) lo = mid + 1; else hi = mid;
  }
  if (lo > 0 && t - points[lo - 1].t < points[lo].t - t) lo--;
  return points[lo];
}

function showTip(svg, clientX) {
  svg.hoverX = clientX;
  const tip = tooltip();
  const data = svg.spark;
  if (!data || !data.points.length) { tip.hidden = true; return; }
  const box = svg.getBoundingClientRect();
  const f = Math.min(1, Math.max(0, (clientX - box.left) / box.width));
  const p = nearest(data.points, data.t0 + f * (data.t1 - data.t0));
  const format = UNIT_TEXT[svg.dataset.unit] || ((v) => String(v));
  const value = p.v === null || p.v === undefined
    ? (p.status !== "active" ? p.status : "no events") : format(p.v);
  tip.textContent = pointTime(p.t, data.t1 - data.t0) + " · " + value;
  tip.hidden = false;
  const width = Number(svg.dataset.width);
  const cursor = svg.querySelector(".cursor");
  const cx = ((p.t - data.t0) / Math.max(1, data.t1 - data.t0)) * width;
  cursor.setAttribute("x1", cx.toFixed(1));
  cursor.setAttribute("x2", cx.toFixed(1));
  cursor.style.display = "";
  const left = Math.min(window.innerWidth - tip.offsetWidth - 4, Math.max(4, clientX - tip.offsetWidth / 2));
  tip.style.left = left + "px";
  tip.style.top = Math.max(4, box.top - tip.offsetHeight - 6) + "px";
}

function hideTip(svg) {
  svg.hoverX = undefined;
  tooltip().hidden = true;
  const cursor = svg.querySelector(".cursor");
  if (cursor) cursor.style.display = "none";
}

export function hoverable(svg, unit) {
  tooltip();
  svg.dataset.unit = unit;
  svg.addEventListener("pointermove", (event) => showTip(svg, event.clientX));
  svg.addEventListener("pointerleave", () => hideTip(svg));
}

// Labels under a large sparkline: the times of its left edge and middle (clock times for
// the short ranges, days for the long ones), and "now".
export function drawAxis(node, t0, t1) {
  const labels = t1 ? [...axisTimes(t0, t1), "now"] : ["", "", "now"];
  node.replaceChildren(...labels.map((text) => el("span", "", text)));
}
