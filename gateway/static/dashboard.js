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
  const history = new Map();       // service name -> [eps, ...]
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

  const byUnit = {
    "1/s": (v) => (v === null ? "–" : rate(v)),
    "1/h": (v) => (v === null ? "–" : count(v)),
    "events": (v) => (v === null ? "–" : count(v)),
    "s": (v) => duration(v),
    "ms": (v) => (v === null ? "–" : nf1.format(v) + " ms"),
  };
  const NUMERIC_UNITS = new Set(["1/s", "1/h", "events", "s", "ms"]);

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
  }

  async function loadSchema() {
    const response = await fetch(SCHEMA_URL, { cache: "no-store" });
    const schema = await response.json();
    columns = schema.rows.filter((figure) => figure.column !== null);
    const head = $("head-row");
    head.replaceChildren();
    for (const column of columns) {
      const th = el("th", NUMERIC_UNITS.has(column.unit) ? "num" : "", column.label);
      th.title = column.description;
      th.dataset.field = column.name;
      head.appendChild(th);
      if (column.name === TREND_AFTER) head.appendChild(el("th", "spark-col", "Trend"));
    }
    const placeholder = $("rows").querySelector(".placeholder td");
    if (placeholder) placeholder.colSpan = columns.length + 1;
  }

  function makeRow(name) {
    const tr = el("tr");
    tr.dataset.service = name;
    const cells = {};
    for (const column of columns) {
      const td = el("td", NUMERIC_UNITS.has(column.unit) ? "num" : "");
      td.dataset.field = column.name;
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
      if (node.cells.svg) drawSpark(node.cells.svg, history.get(row.service_name) || [], 120, 26);
    });
    for (const [name, node] of rowNodes) {
      if (!seen.has(name)) { node.tr.remove(); rowNodes.delete(name); }
    }
  }

  function allRows(body) {
    const rows = body.active_apis.concat(body.inactive_services || []);
    // A stable order whatever the statuses: by type (core, data, analysis, ai, others), then name.
    const rank = (type) => { const i = TYPE_ORDER.indexOf(type); return i < 0 ? TYPE_ORDER.length : i; };
    rows.sort((a, b) => rank(a.service_type) - rank(b.service_type) ||
      a.service_type.localeCompare(b.service_type) || a.service_name.localeCompare(b.service_name));
    return rows;
  }

  function record(body) {
    for (const row of allRows(body)) {
      let list = history.get(row.service_name);
      if (!list) { list = []; history.set(row.service_name, list); }
      remember(list, row.status === "active" ? row.events_per_second : 0);
    }
    remember(systemHistory, body.events_per_second);
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
    renderRows(rows);
    refreshStatus();
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
    for (const node of rowNodes.values()) {
      const when = node.cells.last_activity;
      if (when && when.title) when.textContent = ago(when.title);
    }
  }, 1000);
  loadSchema().catch(() => {}).finally(connect);
})();
