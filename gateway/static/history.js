// The trends' past from the aggregator's history store, through the gateway's Prometheus-style
// range query (GET /api/v1/metrics/query/range). One set of stored points per range: the
// fleet's and every service's events/s, and the open service's error % and p95.
//
// Points sit on a grid of the range's step aligned to the epoch (the coarse tiers' samples
// end on such multiples), each the figure over the step ending at it. After the first fetch
// of a range, each fetch asks only for the steps that closed since (a few seconds after they
// closed, so that their rounds are written), so a refresh costs a few points; the live ring
// (trends.js) draws the time since. Fetches never pile up: one at a time, a range change
// cancels the one in flight. Times are the server's (the latest snapshot's), never the
// browser's clock.
import { authFetch } from "/static/auth.js";

export const RANGES = [   // step: seconds between points, a multiple of the tier holding the range
  { key: "15m", label: "15 min", seconds: 900, step: 5 },
  { key: "1h", label: "1 h", seconds: 3600, step: 15 },
  { key: "6h", label: "6 h", seconds: 21600, step: 120 },
  { key: "24h", label: "24 h", seconds: 86400, step: 300 },
  { key: "7d", label: "7 d", seconds: 604800, step: 3600 },
  { key: "30d", label: "30 d", seconds: 2592000, step: 10800 },
  { key: "90d", label: "90 d", seconds: 7776000, step: 28800 },
];
export const DEFAULT_RANGE = "15m";

const RANGE_URL = "/api/v1/metrics/query/range";
const SETTLE_MS = 3000;     // a step is fetched this long after it closed (its rounds written)
const RETRY_MS = 30000;     // after a failure, the next try (server time)
const FLEET = "";           // the fleet's series: no service label

export function rangeOf(key) {
  return RANGES.find((range) => range.key === key) || RANGES.find((r) => r.key === DEFAULT_RANGE);
}

// Why a query failed, in words for the note beside the range.
export class HistoryError extends Error {
  constructor(message, unavailable) {
    super(message);
    this.unavailable = unavailable;   // history off or unreachable, not a refused query
  }
}

// One range query: [{figure, service, points: [{t, v}]}]; HistoryError when refused.
export async function queryRange(selector, startMs, endMs, stepSeconds, signal) {
  const params = new URLSearchParams({
    query: selector, start: String(startMs / 1000), end: String(endMs / 1000), step: String(stepSeconds),
  });
  let response;
  try {
    response = await authFetch(RANGE_URL + "?" + params, { cache: "no-store", signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new HistoryError("history unreachable", true);
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok || body.status !== "success") {
    const unavailable = body.errorType === "unavailable" || (response.status >= 500 && !body.errorType);
    throw new HistoryError(body.error || "history answered " + response.status, unavailable);
  }
  return body.data.result.map((series) => ({
    figure: series.metric.__name__,
    service: series.metric.service || FLEET,
    points: series.values.map(([t, v]) => ({ t: Math.round(t * 1000), v: Number(v) })),
  }));
}

const KEY_OF = { events_per_second: "eps", error_rate: "err", latency_p95_ms: "p95" };
const SCALE = { err: 100 };   // the error rate is drawn in %

export class StoredTrends {
  // `onChange()` after new points arrived or the state changed.
  constructor({ onChange }) {
    this.onChange = onChange;
    this.range = null;
    this.service = null;           // the service whose detail trends are fetched too
    this.points = new Map();       // "key|service" -> [{t, v}], oldest first
    this.fetched = new Map();      // selector -> the newest step it has been fetched to (ms)
    this.end = 0;                  // the newest step fetched (ms); live points go after it
    this.state = "idle";           // "idle", "loading", "ok", "unavailable", "error"
    this.note = "";                // why the stored points are missing ("" when they are not)
    this.reason = "";              // the gateway's words for it
    this.controller = null;        // the fetch in flight
    this.retryAt = 0;
    this.nowMs = 0;
  }

  // Another range (a RANGES entry): its points are fetched from scratch.
  select(range) {
    this.range = range;
    this.points = new Map();
    this.fetched = new Map();
    this.end = 0;
    this.retryAt = 0;
    this.state = "idle";
    this.cancel();
    this.refresh(this.nowMs);
  }

  // The service whose error % and p95 are wanted too (null: none).
  watch(service) {
    if (service === this.service) return;
    this.service = service;
    for (const id of [...this.points.keys()]) if (!id.startsWith("eps|")) this.points.delete(id);
    const [fleet] = this.selectors();
    for (const selector of [...this.fetched.keys()]) if (selector !== fleet) this.fetched.delete(selector);
    this.cancel();
    this.refresh(this.nowMs);
  }

  cancel() {
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  selectors() {
    const wanted = ['events_per_second{kind=""}'];
    if (this.service) {
      wanted.push('{__name__=~"error_rate|latency_p95_ms", service=' + JSON.stringify(this.service) + ', kind=""}');
    }
    return wanted;
  }

  // The stored points of a series over the range ([] without any); name null: the fleet.
  series(name, key) {
    return this.points.get(key + "|" + (name === null ? FLEET : name)) || [];
  }

  // Called with the server's time (each snapshot's): fetches the steps that closed (and
  // settled) since the last fetch, if any; one fetch at a time.
  refresh(nowMs) {
    if (nowMs) this.nowMs = Math.max(this.nowMs, nowMs);
    const now = this.nowMs;
    if (!this.range || !now || this.controller || now < this.retryAt) return;
    const step = this.range.step * 1000;
    const end = Math.floor((now - SETTLE_MS) / step) * step;
    const first = end - this.range.seconds * 1000;
    const due = this.selectors().filter((selector) => !(this.fetched.get(selector) >= end));
    if (!due.length) return;
    const controller = new AbortController();
    this.controller = controller;
    if (!this.end) { this.state = "loading"; this.onChange(); }
    const fetches = due.map((selector) => {
      const from = Math.max(first, (this.fetched.get(selector) || -Infinity) + step);
      return queryRange(selector, from, end, this.range.step, controller.signal)
        .then((series) => ({ selector, from, series }));
    });
    Promise.all(fetches).then(
      (answers) => { if (this.controller === controller) this.take(answers, first, end); },
      (err) => { if (this.controller === controller) this.failed(err, now); },
    );
  }

  take(answers, first, end) {
    this.controller = null;
    for (const { selector, from, series } of answers) {
      for (const one of series) {
        const key = KEY_OF[one.figure];
        if (!key) continue;
        const id = key + "|" + one.service;
        const scale = SCALE[key] || 1;
        const kept = (this.points.get(id) || []).filter((p) => p.t < from);
        this.points.set(id, kept.concat(one.points.map((p) => ({ t: p.t, v: p.v * scale }))));
      }
      this.fetched.set(selector, end);
    }
    for (const [id, points] of this.points) {
      if (points.length && points[0].t < first) this.points.set(id, points.filter((p) => p.t >= first));
    }
    this.end = end;
    this.state = "ok";
    this.note = this.reason = "";
    this.onChange();
    this.refresh(this.nowMs);   // a snapshot that came meanwhile may have made more due
  }

  failed(err, now) {
    this.controller = null;
    if (err.name === "AbortError") return;
    this.retryAt = now + RETRY_MS;
    this.state = err.unavailable ? "unavailable" : "error";
    this.note = err.unavailable ? "history unavailable: live trend only" : "history: " + err.message;
    this.reason = err.message;
    this.onChange();
  }
}
