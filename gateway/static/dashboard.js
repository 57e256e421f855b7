// The metrics-mesh dashboard: live over Server-Sent Events, polling every 5 s as a fallback.
// Plain JavaScript modules, no dependencies, no build step: format.js writes figures,
// trends.js draws the sparklines, this one builds the page.
import { age, ago, byUnit, clock, count, el, rate } from "/static/format.js";
import { SVG, drawAxis, drawSpark, hoverable, range, recordSample, series } from "/static/trends.js";

const STREAM_URL = "/api/v1/real-time-metrics/stream";
// The sparklines' past: the gateway's ring (history_size snapshots) replayed once at load,
// only the figures they draw, on a stream of its own that closes once it has caught up.
const HISTORY_URL = STREAM_URL + "?replay=900&fields=events_per_second,error_rate,latency_p95_ms";
const REST_URL = "/api/v1/real-time-metrics";
const POLL_MS = 5000;
const STALE_S = 10;              // a snapshot older than this: say so
const TYPE_ORDER = ["core", "data", "analysis", "ai"];

const $ = (id) => document.getElementById(id);
let lastSequence = 0;
// The real age of the latest snapshot: its age when it arrived plus the time since.
let receivedAt = 0;              // performance.now() when the latest snapshot arrived
let ageAtReceipt = 0;            // its snapshot_age_ms then, in seconds
let source = null;
let pollTimer = null;
let upstreamError = null;        // text of the gateway's last error, null when fine
let mode = "connecting";

function snapshotAge() {
  return receivedAt ? ageAtReceipt + (performance.now() - receivedAt) / 1000 : null;
}

// ---- rendering --------------------------------------------------------------------------

// The table's columns come from the gateway's row schema (GET /api/v1/schema): every row
// figure with a column priority, in the schema's order, with a trend sparkline after the
// rate. Cells are formatted by the figure's unit; a few figures have a renderer of their own.
const SCHEMA_URL = "/api/v1/schema";
const TREND_AFTER = "events_per_second";
let columns = [];                // [{name, label, unit, description}] shown as columns
const rowNodes = new Map();      // service name -> {tr, cells}

const NUMERIC_UNITS = new Set(["1/s", "1/h", "events", "s", "ms", "ratio"]);
// Warning colours: [warn, bad] thresholds of the figures an operator watches first.
const THRESHOLDS = {
  error_rate: [0.01, 0.05],
  latency_p95_ms: [500, 2000],
  latency_p99_ms: [1000, 2000],
};

function level(name, value) {
  const limits = THRESHOLDS[name];
  if (!limits || value === null || value === undefined) return "";
  return value >= limits[1] ? "bad" : value >= limits[0] ? "warn" : "";
}

// Failing and alerting first: error rows, inactive ones, firing alerts, then pending
// alerts and figures over their warning thresholds; the rest by type and name.
function severity(row) {
  if (row.status === "error") return 5;
  if (row.status !== "active") return 4;
  const alert = worstAlerts().get(row.service_name);
  if (alert && alert.state === "firing") return 3;
  if (level("error_rate", row.error_rate) === "bad" || level("latency_p95_ms", row.latency_p95_ms) === "bad") return 2;
  if (alert || level("error_rate", row.error_rate) || level("latency_p95_ms", row.latency_p95_ms)) return 1;
  return 0;
}

// How old a down row's figures are: `seconds_since_seen` at the snapshot's time, counting
// up with the snapshot's age; null when unknown (a gateway without the field).
function seenText(row) {
  if (!("last_seen" in row)) return "";
  if (row.last_seen === null) return "never seen";
  const since = (row.seconds_since_seen || 0) + (snapshotAge() || 0);
  return "last seen " + age(since) + " ago";
}

const renderers = {
  service_name(td, row) {
    td.textContent = row.service_name;
    td.appendChild(el("span", "port", ":" + row.port));
  },
  service_type(td, row) {
    td.replaceChildren(el("span", "type type-" + row.service_type, row.service_type));
  },
  status(td, row) {
    td.replaceChildren(el("span", "badge badge-" + row.status, row.status));
    const seen = row.status === "active" ? "" : seenText(row);
    if (seen) td.appendChild(el("span", "seen", seen));
  },
  last_activity(td, row) {
    td.textContent = ago(row.last_activity);
    td.title = row.last_activity || "";
  },
  error_message(td, row) {
    const error = row.error_message || "";
    if (td.title === error) return;
    td.title = error;
    td.replaceChildren(error ? el("span", "clamp", error) : "");
  },
};

function renderCell(td, column, row) {
  const own = renderers[column.name];
  if (own) { own(td, row); return; }
  const format = byUnit[column.unit];
  const value = row[column.name];
  td.textContent = format ? format(value === undefined ? null : value) : (value ?? "–");
  td.dataset.level = row.status === "active" ? level(column.name, value) : "";
}

// ---- sorting: click a heading; again to reverse; a third time for the default order ----
// The order stays across updates (and reloads); ties keep the default order (stable), and
// a missing figure sorts last either way.

let sort = (() => {
  try {
    const saved = JSON.parse(localStorage.getItem("metrics-mesh.sort") || "null");
    return saved && typeof saved.key === "string" && (saved.dir === 1 || saved.dir === -1) ? saved : null;
  } catch (err) { return null; }
})();
const STATUS_RANK = { error: 0, inactive: 1, active: 2 };

function sortValue(row, column) {
  const value = row[column.name];
  if (column.name === "status") return STATUS_RANK[value] ?? 3;
  if (column.unit === "time") return value ? Date.parse(value) : null;
  return value === undefined ? null : value;
}

function defaultOrder(a, b) {
  const rank = (type) => { const i = TYPE_ORDER.indexOf(type); return i < 0 ? TYPE_ORDER.length : i; };
  return severity(b) - severity(a) || rank(a.service_type) - rank(b.service_type) ||
    a.service_type.localeCompare(b.service_type) || a.service_name.localeCompare(b.service_name);
}

function ordered(rows) {
  const column = sort && columns.find((c) => c.name === sort.key);
  return rows.slice().sort((a, b) => {
    if (column) {
      const x = sortValue(a, column), y = sortValue(b, column);
      if (x === null && y !== null) return 1;
      if (y === null && x !== null) return -1;
      if (x !== null && y !== null && x !== y) {
        const diff = typeof x === "string" ? x.localeCompare(y) : x - y;
        if (diff) return diff * sort.dir;
      }
    }
    return defaultOrder(a, b);
  });
}

function sortBy(column) {
  const first = NUMERIC_UNITS.has(column.unit) || column.unit === "time" ? -1 : 1;  // biggest, newest first
  if (!sort || sort.key !== column.name) sort = { key: column.name, dir: first };
  else if (sort.dir === first) sort = { key: column.name, dir: -first };
  else sort = null;
  localStorage.setItem("metrics-mesh.sort", JSON.stringify(sort));
  markHeadings();
  renderRows();
}

function markHeadings() {
  for (const th of $("head-row").querySelectorAll("th[data-field]")) {
    const on = sort && sort.key === th.dataset.field;
    th.setAttribute("aria-sort", on ? (sort.dir > 0 ? "ascending" : "descending") : "none");
    th.querySelector(".sort-mark").textContent = on ? (sort.dir > 0 ? "▲" : "▼") : "";
  }
}

async function loadSchema() {
  const response = await fetch(SCHEMA_URL, { cache: "no-store" });
  const schema = await response.json();
  columns = schema.rows.filter((figure) => figure.column !== null);
  columns.sort((a, b) => a.column - b.column);
  const head = $("head-row");
  head.replaceChildren();
  for (const column of columns) {
    const th = el("th", NUMERIC_UNITS.has(column.unit) ? "num sortable" : "sortable");
    const label = el("span", "label", column.label);
    th.appendChild(label);
    th.appendChild(el("span", "sort-mark"));
    th.title = column.description;
    th.dataset.field = column.name;
    th.dataset.priority = column.priority;
    th.tabIndex = 0;
    th.addEventListener("click", () => sortBy(column));
    th.addEventListener("keydown", (event) => { if (event.key === "Enter") sortBy(column); });
    head.appendChild(th);
    if (column.name === TREND_AFTER) {
      const trend = el("th", "spark-col");
      trend.id = "trend-head";
      trend.dataset.priority = TREND_PRIORITY;
      head.appendChild(trend);
    }
  }
  markHeadings();
  trendHeading();
  const placeholder = $("rows").querySelector(".placeholder td");
  if (placeholder) placeholder.colSpan = columns.length + 1;
}

function trendHeading() {
  const th = $("trend-head");
  if (th) th.textContent = "Trend · " + range.minutes + " min";
}

function makeRow(name) {
  const tr = el("tr");
  tr.dataset.service = name;
  tr.tabIndex = 0;
  tr.addEventListener("click", () => openDetail(name));
  tr.addEventListener("keydown", (event) => { if (event.key === "Enter") openDetail(name); });
  const cells = {};
  for (const column of columns) {
    const td = el("td", NUMERIC_UNITS.has(column.unit) ? "num" : "");
    td.dataset.field = column.name;
    td.dataset.priority = column.priority;
    if (column.name === "service_name") td.className = "name";
    if (column.unit === "time") td.className = "when";
    if (column.name === "error_message") td.className = "err";
    cells[column.name] = td;
    tr.appendChild(td);
    if (column.name === TREND_AFTER) {
      const spark = el("td");
      spark.dataset.field = "trend";
      spark.dataset.priority = TREND_PRIORITY;
      const svg = document.createElementNS(SVG, "svg");
      svg.setAttribute("class", "spark row-spark");
      svg.setAttribute("viewBox", "0 0 120 26");
      svg.setAttribute("preserveAspectRatio", "none");
      hoverable(svg, "1/s");
      spark.appendChild(svg);
      cells.svg = svg;
      tr.appendChild(spark);
    }
  }
  return { tr, cells };
}

function renderRows() {
  const rows = ordered([...latestRows.values()]);
  const body = $("rows");
  const placeholder = body.querySelector(".placeholder");
  if (placeholder && rows.length) placeholder.remove();
  const seen = new Set();
  rows.forEach((row, index) => {
    seen.add(row.service_name);
    let node = rowNodes.get(row.service_name);
    if (!node) {
      node = makeRow(row.service_name);
      rowNodes.set(row.service_name, node);
    }
    if (body.children[index] !== node.tr) body.insertBefore(node.tr, body.children[index] || null);
    node.tr.classList.toggle("down", row.status !== "active");
    for (const column of columns) renderCell(node.cells[column.name], column, row);
    if (node.cells.svg) drawSpark(node.cells.svg, series(row.service_name, "eps"), 120, 26);
  });
  for (const [name, node] of rowNodes) {
    if (!seen.has(name)) { node.tr.remove(); rowNodes.delete(name); }
  }
  // The error column holds why a service is down; while none is, it would only take room.
  $("services").classList.toggle("no-errors", !rows.some((row) => row.error_message));
  markRows();
  fitColumns();
}

// ---- a narrow window: drop the columns of least priority (the schema's) until it fits ---

const TREND_PRIORITY = 4.5;      // the sparkline goes after the error rate, before the rest
const hiding = document.createElement("style");
document.head.appendChild(hiding);

function fitColumns() {
  const wrap = $("table-wrap"), table = $("services");
  const priorities = [...new Set([...$("head-row").children].map((th) => Number(th.dataset.priority)))]
    .filter((p) => p > 2).sort((a, b) => b - a);     // the name and the status always stay
  const hidden = [];
  const apply = () => {
    hiding.textContent = hidden.map((p) => '#services [data-priority="' + p + '"]').join(",") +
      (hidden.length ? " { display: none; }" : "");
  };
  apply();
  for (const priority of priorities) {
    if (table.scrollWidth <= wrap.clientWidth) break;
    hidden.push(priority);
    apply();
  }
  table.dataset.hidden = hidden.join(" ");
}

let fitting = 0;
window.addEventListener("resize", () => {
  cancelAnimationFrame(fitting);
  fitting = requestAnimationFrame(fitColumns);
});

// ---- the range of the sparklines: 1, 5 or 15 minutes ---------------------------------

function setRange(minutes) {
  range.minutes = minutes;
  localStorage.setItem("metrics-mesh.range", String(minutes));
  for (const button of $("range").querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.minutes) === minutes));
  }
  trendHeading();
  drawTrends();
}

function drawTrends() {
  drawSpark($("sys-spark"), series(null, "eps"), 200, 40);
  document.querySelectorAll(".axis").forEach(drawAxis);
  for (const [name, node] of rowNodes) {
    if (node.cells.svg) drawSpark(node.cells.svg, series(name, "eps"), 120, 26);
  }
  renderDetail();
}

// ---- detail panel: one service's kinds and trends -------------------------------------

let detailName = null;
let latestRows = new Map();      // service name -> its latest row

const KIND_COLUMNS = [
  ["kind", "Kind", (v) => v],
  ["events_per_second", "Events/s", byUnit["1/s"]],
  ["error_rate", "Errors", byUnit.ratio],
  ["latency_p50_ms", "p50", byUnit.ms],
  ["latency_p95_ms", "p95", byUnit.ms],
  ["latency_p99_ms", "p99", byUnit.ms],
  ["total_events", "Total", byUnit.events],
];

function openDetail(name) {
  detailName = name;
  $("detail").hidden = false;
  renderDetail();
}

function renderDetail() {
  const row = detailName && latestRows.get(detailName);
  if (!row) return;
  $("detail-title").textContent = row.service_name;
  const status = el("span", "badge badge-" + row.status, row.status);
  const seen = row.status === "active" ? "" : seenText(row);
  $("detail-status").replaceChildren(status, ...(seen ? [el("span", "seen", seen)] : []));
  const head = el("tr");
  for (const [, label] of KIND_COLUMNS) head.appendChild(el("th", label === "Kind" ? "" : "num", label));
  const body = el("tbody");
  for (const kind of row.kinds || []) {
    const tr = el("tr");
    tr.dataset.kind = kind.kind;
    for (const [name, , format] of KIND_COLUMNS) {
      const td = el("td", name === "kind" ? "name" : "num", format(kind[name] ?? null));
      td.dataset.field = name;
      td.dataset.level = row.status === "active" ? level(name, kind[name]) : "";
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  if (!(row.kinds || []).length) {
    const tr = el("tr", "placeholder");
    tr.appendChild(el("td", "", row.status === "active" ? "No events yet." : "No figures: the service is " + row.status + "."));
    tr.firstChild.colSpan = KIND_COLUMNS.length;
    body.appendChild(tr);
  }
  const thead = el("thead");
  thead.appendChild(head);
  $("detail-kinds").replaceChildren(thead, body);
  $("detail").classList.toggle("down", row.status !== "active");
  drawSpark($("detail-eps"), series(row.service_name, "eps"), 200, 40);
  drawSpark($("detail-errors"), series(row.service_name, "err"), 200, 40);
  drawSpark($("detail-p95"), series(row.service_name, "p95"), 200, 40);
  $("detail-eps-now").textContent = byUnit["1/s"](row.events_per_second ?? null);
  $("detail-errors-now").textContent = byUnit.ratio(row.error_rate ?? null);
  $("detail-p95-now").textContent = byUnit.ms(row.latency_p95_ms ?? null);
}

// ---- the summary: fleet figures, and which services are down --------------------------

function renderSummary(body, rows) {
  $("sys-eps").textContent = rate(body.events_per_second);
  $("sys-eph").textContent = count(body.events_per_hour);
  $("sys-total").textContent = "total " + count(body.total_events || 0) + " events";
  $("sys-active").textContent = body.active_apis.length;
  $("sys-count").textContent = rows.length;
  const down = rows.filter((row) => row.status !== "active")
    .sort((a, b) => defaultOrder(a, b));
  const list = $("sys-down");
  if (!down.length) {
    list.replaceChildren(el("span", "all-up", "all services active"));
  } else {
    const chips = down.map((row) => {
      const chip = el("button", "down-chip down-" + row.status, row.service_name);
      chip.type = "button";
      chip.dataset.service = row.service_name;
      chip.title = row.status + (row.error_message ? ": " + row.error_message : "");
      chip.addEventListener("click", () => openDetail(row.service_name));
      return chip;
    });
    list.replaceChildren(el("span", "down-count", down.length + " down:"), ...chips);
  }
  const chips = $("sys-sources");
  chips.replaceChildren();
  if (!body.data_sources_active.length) chips.appendChild(el("span", "muted", "none"));
  for (const s of body.data_sources_active) chips.appendChild(el("span", "chip", s));
  $("meta-seq").textContent = "snapshot #" + body.sequence;
  $("meta-time").textContent = clock.format(new Date(body.timestamp));
  $("meta-round").textContent = "round " + body.collection_time_ms + " ms";
  // The fleet's name in the title and the heading, with how many are down in the tab.
  const fleet = "metrics-mesh — " + rows.length + " services";
  $("fleet-title").textContent = fleet;
  document.title = (down.length ? "(" + down.length + " down) " : "") + fleet;
}

function apply(body, draw) {
  if (typeof body.sequence === "number") {
    if (body.sequence === lastSequence) return;
    lastSequence = body.sequence;
  }
  recordSample(body);
  receivedAt = performance.now();
  ageAtReceipt = (body.snapshot_age_ms || 0) / 1000;
  upstreamError = null;
  if (!draw) return;
  const rows = body.active_apis.concat(body.inactive_services || []);
  latestRows = new Map(rows.map((row) => [row.service_name, row]));
  renderSummary(body, rows);
  drawSpark($("sys-spark"), series(null, "eps"), 200, 40);
  renderRows();
  renderDetail();
  refreshStatus();
}

// The past from the gateway's ring, on a stream of its own that closes when caught up.
function loadHistory() {
  if (!window.EventSource) return;
  const past = new EventSource(HISTORY_URL);
  let added = 0;
  const done = () => { past.close(); clearTimeout(limit); if (added) drawTrends(); };
  const limit = setTimeout(done, 30000);
  past.addEventListener("snapshot", (event) => {
    const body = JSON.parse(event.data);
    if (recordSample(body)) added++;
    if (lastSequence && body.sequence >= lastSequence) done();   // met the live stream
  });
  past.addEventListener("error", done);
}

// ---- alerts: the strip at the top, and the rows they are about --------------------------
// Fed by the stream's `event: alert` (every change) and GET /api/v1/alerts/active (at load,
// after a reconnect, and while polling). Firing first, then pending; resolved ones fade out.

const ALERTS_URL = "/api/v1/alerts/active";
const FADE_MS = 10000;           // a resolved alert fades out, then leaves the strip
const STATE_RANK = { firing: 0, pending: 1, resolved: 2 };
const SEVERITY_RANK = { critical: 0, high: 1, warning: 2, info: 3 };
const alerts = new Map();        // alert id -> {alert, node}

function alertSince(alert) {
  if (alert.state === "resolved") return "resolved " + ago(alert.resolved_time);
  if (alert.state === "firing") return "firing since " + ago(alert.fired_time || alert.active_time);
  return "pending since " + ago(alert.active_time);
}

function alertNode(alert) {
  const li = el("li", "alert");
  li.dataset.alertId = alert.id;
  li.appendChild(el("span", "sev", alert.severity));
  const what = el("span", "what");
  what.appendChild(el("b", "alert-name", alert.name));
  what.appendChild(el("span", "alert-service", alert.service_name + (alert.kind ? " · " + alert.kind : "")));
  li.appendChild(what);
  li.appendChild(el("span", "alert-summary"));
  li.appendChild(el("span", "alert-since"));
  return li;
}

function fillAlert(node, alert) {
  node.dataset.state = alert.state;
  node.dataset.severity = alert.severity;
  const value = alert.value_text || (alert.value === null ? "" : String(alert.value));
  node.querySelector(".alert-summary").textContent =
    alert.annotations.summary || alert.annotations.description || (value ? "value " + value : "");
  const since = node.querySelector(".alert-since");
  since.textContent = alertSince(alert);
  since.title = alert.fired_time || alert.active_time || "";
}

function applyAlert(alert) {
  const known = alerts.get(alert.id);
  if (alert.state === "inactive") {            // a pending alert that was dropped
    if (known) { known.node.remove(); alerts.delete(alert.id); }
  } else if (known) {
    known.alert = alert;
  } else {
    alerts.set(alert.id, { alert, node: alertNode(alert) });
  }
  if (alert.state === "resolved") {
    setTimeout(() => {
      const entry = alerts.get(alert.id);
      if (entry && entry.alert.state === "resolved") { entry.node.remove(); alerts.delete(alert.id); renderAlerts(); }
    }, FADE_MS);
  }
  renderAlerts();
}

function replaceAlerts(list) {
  const fresh = new Set(list.map((alert) => alert.id));
  for (const [id, entry] of alerts) {
    if (!fresh.has(id) && entry.alert.state !== "resolved") { entry.node.remove(); alerts.delete(id); }
  }
  for (const alert of list) applyAlert(alert);
  renderAlerts();
}

function alertOrder(a, b) {
  return (STATE_RANK[a.state] ?? 3) - (STATE_RANK[b.state] ?? 3) ||
    (SEVERITY_RANK[a.severity] ?? 4) - (SEVERITY_RANK[b.severity] ?? 4) ||
    (Date.parse(a.active_time) || 0) - (Date.parse(b.active_time) || 0) || a.id.localeCompare(b.id);
}

function renderAlerts() {
  const list = $("alert-list");
  const entries = [...alerts.values()].sort((a, b) => alertOrder(a.alert, b.alert));
  entries.forEach((entry, index) => {
    fillAlert(entry.node, entry.alert);
    if (list.children[index] !== entry.node) list.insertBefore(entry.node, list.children[index] || null);
  });
  const firing = entries.filter((entry) => entry.alert.state === "firing").length;
  const pending = entries.filter((entry) => entry.alert.state === "pending").length;
  const strip = $("alerts");
  strip.hidden = entries.length === 0;
  strip.dataset.state = firing ? "firing" : pending ? "pending" : "resolved";
  $("alerts-count").textContent = firing + " firing · " + pending + " pending";
  renderRows();                  // alerting services move up (the default order)
}

// The most urgent pending or firing alert of each service.
function worstAlerts() {
  const worst = new Map();
  for (const { alert } of alerts.values()) {
    if (alert.state !== "firing" && alert.state !== "pending") continue;
    const known = worst.get(alert.service_name);
    if (!known || alertOrder(alert, known) < 0) worst.set(alert.service_name, alert);
  }
  return worst;
}

// A row whose service has a pending or firing alert is marked with the worst of them.
function markRows() {
  const worst = worstAlerts();
  for (const [name, node] of rowNodes) {
    const alert = worst.get(name);
    node.tr.dataset.alert = alert ? alert.state : "";
    node.tr.dataset.alertSeverity = alert ? alert.severity : "";
    node.tr.title = alert ? alert.name + " (" + alert.severity + ", " + alert.state + ")" : "";
  }
}

async function loadAlerts() {
  try {
    const response = await fetch(ALERTS_URL, { cache: "no-store" });
    if (response.ok) replaceAlerts((await response.json()).alerts);
  } catch (err) { /* the stream or the next poll brings them */ }
}

// ---- connection state -------------------------------------------------------------------

function setConn(state, text) {
  const conn = $("conn");
  conn.dataset.state = state;
  $("conn-text").textContent = text;
}

function banner(kind, title, text, old) {
  const b = $("banner");
  if (!kind) { b.hidden = true; return; }
  b.hidden = false;
  b.dataset.kind = kind;
  $("banner-title").textContent = title;
  $("banner-text").textContent = text;
  $("banner-age").textContent = old;
}

// The banner tells the real age of the figures on screen: the latest snapshot's age when
// it arrived plus the time since, counting up every second while nothing new arrives.
function refreshStatus() {
  const seconds = snapshotAge();
  const stale = upstreamError !== null || (seconds !== null && seconds > STALE_S);
  document.body.classList.toggle("stale", stale && seconds !== null);
  const old = seconds === null ? "No snapshot yet." : "The figures below are " + age(seconds) + " old.";
  if (upstreamError !== null) {
    setConn("down", "Aggregator unreachable");
    banner("bad", "Metrics unavailable.", upstreamError, old);
  } else if (mode === "down") {
    setConn("down", "Disconnected");
    banner("bad", "Connection to the gateway lost.", "Retrying.", old);
  } else if (stale) {
    setConn("stale", "Stale");
    banner("warn", "Data is stale.", "No new snapshot.", old);
  } else if (mode === "polling") {
    setConn("polling", "Polling every 5 s");
    banner(null);
  } else if (mode === "live") {
    setConn("live", "Live");
    banner(null);
  }
}

function showUpstreamError(body) {
  upstreamError = (body && body.error) || "the gateway has no fresh snapshot";
  refreshStatus();
}

// ---- polling fallback -------------------------------------------------------------------

async function poll() {
  loadAlerts();
  try {
    const response = await fetch(REST_URL, { cache: "no-store" });
    const body = await response.json();
    if (response.ok) { if (mode !== "live") mode = "polling"; apply(body, true); }
    else { if (mode !== "live") mode = "polling"; showUpstreamError(body); }
  } catch (err) {
    if (mode !== "live") mode = "down";
    refreshStatus();
  }
}

function startPolling() {
  if (pollTimer) return;
  poll();
  pollTimer = setInterval(poll, POLL_MS);
}

function stopPolling() {
  if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
}

// ---- live stream ------------------------------------------------------------------------

function connect() {
  if (!window.EventSource) { startPolling(); return; }
  source = new EventSource(STREAM_URL);
  source.addEventListener("open", () => { mode = "live"; stopPolling(); refreshStatus(); });
  source.addEventListener("alert", (event) => applyAlert(JSON.parse(event.data)));
  source.addEventListener("snapshot", (event) => apply(JSON.parse(event.data), true));
  source.addEventListener("error", (event) => {
    if (event instanceof MessageEvent && event.data) {
      showUpstreamError(JSON.parse(event.data));   // the gateway's own `event: error`
      return;
    }
    // The connection itself failed: EventSource retries; poll meanwhile.
    mode = source.readyState === EventSource.CLOSED ? "down" : "polling";
    startPolling();
    refreshStatus();
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, POLL_MS);
  });
}

setInterval(() => {
  refreshStatus();
  for (const entry of alerts.values()) entry.node.querySelector(".alert-since").textContent = alertSince(entry.alert);
  for (const [name, node] of rowNodes) {
    const when = node.cells.last_activity;
    if (when && when.title) when.textContent = ago(when.title);
    const row = latestRows.get(name);
    const seen = node.cells.status && node.cells.status.querySelector(".seen");
    if (row && seen) seen.textContent = seenText(row);
  }
  const detailSeen = $("detail-status").querySelector(".seen");
  const detailRow = detailName && latestRows.get(detailName);
  if (detailSeen && detailRow) detailSeen.textContent = seenText(detailRow);
}, 1000);
for (const button of $("range").querySelectorAll("button")) {
  button.addEventListener("click", () => setRange(Number(button.dataset.minutes)));
}
setRange(range.minutes);
hoverable($("sys-spark"), "1/s");
hoverable($("detail-eps"), "1/s");
hoverable($("detail-errors"), "%");
hoverable($("detail-p95"), "ms");
$("detail-close").addEventListener("click", () => { detailName = null; $("detail").hidden = true; });
loadSchema().catch(() => {}).finally(() => { loadAlerts(); connect(); loadHistory(); });
