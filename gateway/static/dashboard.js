// The metrics-mesh dashboard: live over Server-Sent Events, polling every 5 s as a fallback.
// Plain JavaScript, no dependencies, no build step.
(function () {
  "use strict";

  const STREAM_URL = "/api/v1/real-time-metrics/stream?replay=120";
  const REST_URL = "/api/v1/real-time-metrics";
  const POLL_MS = 5000;
  const STALE_MS = 10000;         // no update for this long: say so
  const HISTORY = 120;             // points per sparkline
  const TYPE_ORDER = ["core", "data", "analysis", "ai"];

  const $ = (id) => document.getElementById(id);
  const history = new Map();       // service name -> {eps: [...], errors: [...], p95: [...]}
  const systemHistory = [];
  let lastSequence = 0;
  let lastUpdate = 0;              // Date.now() of the last snapshot applied
  let source = null;
  let pollTimer = null;
  let upstreamError = null;        // text of the gateway's last error, null when fine
  let mode = "connecting";

  // ---- formatting -----------------------------------------------------------------------

  const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1, minimumFractionDigits: 1 });
  const nf2 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2, minimumFractionDigits: 2 });
  const nf0 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

  function rate(v) { return v >= 100 ? nf1.format(v) : nf2.format(v); }
  function count(v) { return nf0.format(v); }

  function duration(seconds) {
    if (!seconds) return "–";
    const s = Math.floor(seconds);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60), r = s % 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + r + "s";
    return r + "s";
  }

  function ago(iso) {
    if (!iso) return "never";
    const diff = (Date.now() - Date.parse(iso)) / 1000;
    if (diff < 1.5) return "just now";
    if (diff < 60) return Math.round(diff) + " s ago";
    if (diff < 3600) return Math.round(diff / 60) + " min ago";
    return new Date(iso).toLocaleString();
  }

  function millis(v) {
    if (v === null || v === undefined) return "–";
    if (v >= 1000) return nf2.format(v / 1000) + " s";
    if (v >= 100) return nf0.format(v) + " ms";
    return (v >= 10 ? nf1 : nf2).format(v) + " ms";
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // ---- sparklines -------------------------------------------------------------------------

  const SVG = "http://www.w3.org/2000/svg";

  function drawSpark(svg, values, width, height) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    if (values.length < 2) return;
    const max = Math.max(...values, 0.001);
    const step = width / (values.length - 1);   // stretch until the history fills up
    const pts = values.map((v, i) => [i * step, height - 2 - (v / max) * (height - 4)]);
    const line = pts.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" ");
    const area = document.createElementNS(SVG, "polygon");
    area.setAttribute("class", "area");
    area.setAttribute("points", "0," + height + " " + line + " " + width + "," + height);
    const poly = document.createElementNS(SVG, "polyline");
    poly.setAttribute("class", "line");
    poly.setAttribute("points", line);
    svg.appendChild(area);
    svg.appendChild(poly);
  }

  function remember(list, value) {
    list.push(value);
    if (list.length > HISTORY) list.splice(0, list.length - HISTORY);
  }

  // ---- rendering --------------------------------------------------------------------------

  // The table's columns come from the gateway's row schema (GET /api/v1/schema): every row
  // figure with a column priority, in the schema's order, with a trend sparkline after the
  // rate. Cells are formatted by the figure's unit; a few figures have a renderer of their own.
  const SCHEMA_URL = "/api/v1/schema";
  const TREND_AFTER = "events_per_second";
  let columns = [];                // [{name, label, unit, description}] shown as columns
  const rowNodes = new Map();      // service name -> {tr, cells}

  const pct = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });
  const byUnit = {
    "ratio": (v) => (v === null ? "–" : pct.format(v)),
    "1/s": (v) => (v === null ? "–" : rate(v)),
    "1/h": (v) => (v === null ? "–" : count(v)),
    "events": (v) => (v === null ? "–" : count(v)),
    "s": (v) => duration(v),
    "ms": (v) => millis(v),
  };
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

  // Failing first: error rows, then inactive ones, then active ones by error rate.
  function severity(row) {
    if (row.status === "error") return 3;
    if (row.status !== "active") return 2;
    return level("error_rate", row.error_rate) || level("latency_p95_ms", row.latency_p95_ms) ? 1 : 0;
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
    },
    last_activity(td, row) {
      const active = row.status === "active";
      td.textContent = active ? ago(row.last_activity) : "–";
      td.title = active ? row.last_activity || "" : "";
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

  async function loadSchema() {
    const response = await fetch(SCHEMA_URL, { cache: "no-store" });
    const schema = await response.json();
    columns = schema.rows.filter((figure) => figure.column !== null);
    columns.sort((a, b) => a.column - b.column);
    const head = $("head-row");
    head.replaceChildren();
    for (const column of columns) {
      const th = el("th", NUMERIC_UNITS.has(column.unit) ? "num" : "", column.label);
      th.title = column.description;
      th.dataset.field = column.name;
      th.dataset.priority = column.priority;
      head.appendChild(th);
      if (column.name === TREND_AFTER) head.appendChild(el("th", "spark-col", "Trend"));
    }
    const placeholder = $("rows").querySelector(".placeholder td");
    if (placeholder) placeholder.colSpan = columns.length + 1;
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
        const svg = document.createElementNS(SVG, "svg");
        svg.setAttribute("class", "spark row-spark");
        svg.setAttribute("viewBox", "0 0 120 26");
        svg.setAttribute("preserveAspectRatio", "none");
        spark.appendChild(svg);
        cells.svg = svg;
        tr.appendChild(spark);
      }
    }
    return { tr, cells };
  }

  function renderRows(rows) {
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
      const past = history.get(row.service_name);
      if (node.cells.svg) drawSpark(node.cells.svg, past ? past.eps : [], 120, 26);
    });
    for (const [name, node] of rowNodes) {
      if (!seen.has(name)) { node.tr.remove(); rowNodes.delete(name); }
    }
  }

  function allRows(body) {
    const rows = body.active_apis.concat(body.inactive_services || []);
    // Failing services first; otherwise by type (core, data, analysis, ai, others), then name.
    const rank = (type) => { const i = TYPE_ORDER.indexOf(type); return i < 0 ? TYPE_ORDER.length : i; };
    rows.sort((a, b) => severity(b) - severity(a) || rank(a.service_type) - rank(b.service_type) ||
      a.service_type.localeCompare(b.service_type) || a.service_name.localeCompare(b.service_name));
    return rows;
  }

  function record(body) {
    for (const row of allRows(body)) {
      let past = history.get(row.service_name);
      if (!past) { past = { eps: [], errors: [], p95: [] }; history.set(row.service_name, past); }
      const active = row.status === "active";
      remember(past.eps, active ? row.events_per_second : 0);
      remember(past.errors, active && row.error_rate !== null ? row.error_rate * 100 : 0);
      remember(past.p95, active && row.latency_p95_ms !== null ? row.latency_p95_ms : 0);
    }
    remember(systemHistory, body.events_per_second);
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
    $("detail-status").replaceChildren(el("span", "badge badge-" + row.status, row.status));
    const head = el("tr");
    for (const [, label] of KIND_COLUMNS) head.appendChild(el("th", label === "Kind" ? "" : "num", label));
    const body = el("tbody");
    for (const kind of row.kinds || []) {
      const tr = el("tr");
      tr.dataset.kind = kind.kind;
      for (const [name, , format] of KIND_COLUMNS) {
        const td = el("td", name === "kind" ? "name" : "num", format(kind[name] ?? null));
        td.dataset.field = name;
        td.dataset.level = level(name, kind[name]);
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
    const past = history.get(row.service_name) || { eps: [], errors: [], p95: [] };
    drawSpark($("detail-eps"), past.eps, 200, 40);
    drawSpark($("detail-errors"), past.errors, 200, 40);
    drawSpark($("detail-p95"), past.p95, 200, 40);
    $("detail-eps-now").textContent = byUnit["1/s"](row.events_per_second);
    $("detail-errors-now").textContent = byUnit.ratio(row.error_rate ?? null);
    $("detail-p95-now").textContent = byUnit.ms(row.latency_p95_ms ?? null);
  }

  function apply(body, draw) {
    if (typeof body.sequence === "number") {
      if (body.sequence === lastSequence) return;
      lastSequence = body.sequence;
    }
    record(body);
    lastUpdate = Date.now();
    upstreamError = null;
    if (!draw) return;
    const rows = allRows(body);
    $("sys-eps").textContent = rate(body.events_per_second);
    $("sys-eph").textContent = count(body.events_per_hour);
    $("sys-total").textContent = "total " + count(body.total_events || 0) + " events";
    $("sys-active").textContent = body.active_apis.length;
    $("sys-count").textContent = rows.length;
    $("sys-inactive").textContent = body.inactive_apis;
    const chips = $("sys-sources");
    chips.replaceChildren();
    if (!body.data_sources_active.length) chips.appendChild(el("span", "muted", "none"));
    for (const s of body.data_sources_active) chips.appendChild(el("span", "chip", s));
    $("meta-seq").textContent = "snapshot #" + body.sequence;
    $("meta-time").textContent = new Date(body.timestamp).toLocaleTimeString();
    $("meta-round").textContent = "round " + body.collection_time_ms + " ms";
    drawSpark($("sys-spark"), systemHistory, 200, 40);
    latestRows = new Map(rows.map((row) => [row.service_name, row]));
    renderRows(rows);
    markRows();
    renderDetail();
    refreshStatus();
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
    markRows();
  }

  // A row whose service has a pending or firing alert is marked with the worst of them.
  function markRows() {
    const worst = new Map();       // service name -> its most urgent active alert
    for (const { alert } of alerts.values()) {
      if (alert.state !== "firing" && alert.state !== "pending") continue;
      const known = worst.get(alert.service_name);
      if (!known || alertOrder(alert, known) < 0) worst.set(alert.service_name, alert);
    }
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

  function banner(kind, title, text) {
    const b = $("banner");
    if (!kind) { b.hidden = true; return; }
    b.hidden = false;
    b.dataset.kind = kind;
    $("banner-title").textContent = title;
    $("banner-text").textContent = text;
  }

  function refreshStatus() {
    const age = lastUpdate ? Date.now() - lastUpdate : Infinity;
    const stale = upstreamError !== null || age > STALE_MS;
    document.body.classList.toggle("stale", stale && lastUpdate > 0);
    if (upstreamError !== null) {
      setConn("down", "Aggregator unreachable");
      banner("bad", "Metrics unavailable.", upstreamError);
    } else if (mode === "down") {
      setConn("down", "Disconnected");
      banner("bad", "Connection to the gateway lost.", "Retrying; the figures below are from " +
        (lastUpdate ? Math.round(age / 1000) + " s ago." : "no snapshot yet."));
    } else if (stale && lastUpdate) {
      setConn("stale", "Stale");
      banner("warn", "Data is stale.", "No update for " + Math.round(age / 1000) + " s.");
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
    let replaying = true;
    source.addEventListener("open", () => { mode = "live"; stopPolling(); refreshStatus(); });
    source.addEventListener("alert", (event) => applyAlert(JSON.parse(event.data)));
    source.addEventListener("snapshot", (event) => {
      const body = JSON.parse(event.data);
      // Replayed history fills the sparklines; draw once the backlog is through.
      replaying = replaying && body.snapshot_age_ms > 3000;
      apply(body, !replaying);
    });
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
    for (const node of rowNodes.values()) {
      const when = node.cells.last_activity;
      if (when && when.title) when.textContent = ago(when.title);
    }
  }, 1000);
  $("detail-close").addEventListener("click", () => { detailName = null; $("detail").hidden = true; });
  loadSchema().catch(() => {}).finally(() => { loadAlerts(); connect(); });
})();
