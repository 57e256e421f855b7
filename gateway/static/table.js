// The services table: one row per service, its columns from the row schema, sorted by a
// click on a heading, narrowed by dropping the columns of least priority.
import { ago, byUnit, el, seen } from "/static/format.js";
import { load, save } from "/static/storage.js";
import { SVG, drawSpark, hoverable } from "/static/trends.js";

const NUMERIC_UNITS = new Set(["1/s", "1/h", "events", "s", "ms", "ratio"]);
const TYPE_ORDER = ["core", "data", "analysis", "ai"];
const STATUS_RANK = { error: 0, inactive: 1, active: 2 };
const SORT_KEY = "metrics-mesh.sort";
// Every row figure with a column priority, in the schema's order, with a trend sparkline
// after the rate; it goes after the error rate, before the rest, when the table narrows.
const TREND_AFTER = "events_per_second";
const TREND_PRIORITY = 4.5;

function savedSort() {
  try {
    const saved = JSON.parse(load(SORT_KEY) || "null");
    return saved && typeof saved.key === "string" && (saved.dir === 1 || saved.dir === -1) ? saved : null;
  } catch (err) { return null; }
}

function typeRank(type) {
  const i = TYPE_ORDER.indexOf(type);
  return i < 0 ? TYPE_ORDER.length : i;
}

export class ServicesTable {
  // `trends` draws the sparklines; `age()` is the latest snapshot's age now (seconds or
  // null); `onOpen(name)` opens a service's detail.
  constructor(schema, trends, { age, onOpen }) {
    this.schema = schema;
    this.trends = trends;
    this.age = age;
    this.onOpen = onOpen;
    this.columns = schema.columns;
    this.rows = new Map();         // service name -> its latest row
    this.worst = new Map();        // service name -> its most urgent pending or firing alert
    this.nodes = new Map();        // service name -> {tr, cells}
    // Click a heading to sort; again to reverse; a third time for the default order. The
    // order stays across updates (and reloads); ties keep the default order (stable), and
    // a missing figure sorts last either way.
    this.sort = savedSort();
    this.body = document.getElementById("rows");
    this.head = document.getElementById("head-row");
    this.hiding = document.createElement("style");
    document.head.appendChild(this.hiding);
    let fitting = 0;
    window.addEventListener("resize", () => {
      cancelAnimationFrame(fitting);
      fitting = requestAnimationFrame(() => this.fit());
    });
    this.buildHead();
  }

  // The latest rows (a Map of name -> row): drawn in order.
  update(rows) {
    this.rows = rows;
    this.render();
  }

  // The worst alert of each service (a Map): its row is marked, and the order follows.
  markAlerts(worst) {
    this.worst = worst;
    this.render();
  }

  // Failing and alerting first: error rows, inactive ones, firing alerts, then pending
  // alerts and figures over their warning thresholds; the rest by type and name.
  severity(row) {
    if (row.status === "error") return 5;
    if (row.status !== "active") return 4;
    const alert = this.worst.get(row.service_name);
    if (alert && alert.state === "firing") return 3;
    const errors = this.schema.level("error_rate", row.error_rate);
    const slow = this.schema.level("latency_p95_ms", row.latency_p95_ms);
    if (errors === "bad" || slow === "bad") return 2;
    if (alert || errors || slow) return 1;
    return 0;
  }

  // `rows` in the default order (each row's severity computed once per sort).
  defaultOrdered(rows) {
    return this.ordered(rows, null);
  }

  ordered(rows, sort = this.sort) {
    const severity = new Map(rows.map((row) => [row, this.severity(row)]));
    const byDefault = (a, b) => severity.get(b) - severity.get(a) ||
      typeRank(a.service_type) - typeRank(b.service_type) ||
      a.service_type.localeCompare(b.service_type) || a.service_name.localeCompare(b.service_name);
    const column = sort && this.columns.find((c) => c.name === sort.key);
    if (!column) return rows.slice().sort(byDefault);
    const value = new Map(rows.map((row) => [row, sortValue(row, column)]));
    return rows.slice().sort((a, b) => {
      const x = value.get(a), y = value.get(b);
      if (x === null && y !== null) return 1;
      if (y === null && x !== null) return -1;
      if (x !== null && y !== null && x !== y) {
        const diff = typeof x === "string" ? x.localeCompare(y) : x - y;
        if (diff) return diff * sort.dir;
      }
      return byDefault(a, b);
    });
  }

  sortBy(column) {
    const first = NUMERIC_UNITS.has(column.unit) || column.unit === "time" ? -1 : 1;  // biggest, newest first
    const sort = this.sort;
    if (!sort || sort.key !== column.name) this.sort = { key: column.name, dir: first };
    else if (sort.dir === first) this.sort = { key: column.name, dir: -first };
    else this.sort = null;
    save(SORT_KEY, JSON.stringify(this.sort));
    this.markHeadings();
    this.render();
  }

  markHeadings() {
    const sort = this.sort;
    for (const th of this.head.querySelectorAll("th[data-field]")) {
      const on = sort && sort.key === th.dataset.field;
      th.setAttribute("aria-sort", on ? (sort.dir > 0 ? "ascending" : "descending") : "none");
      th.querySelector(".sort-mark").textContent = on ? (sort.dir > 0 ? "▲" : "▼") : "";
    }
  }

  buildHead() {
    this.head.replaceChildren();
    for (const column of this.columns) {
      const th = el("th", NUMERIC_UNITS.has(column.unit) ? "num sortable" : "sortable");
      th.appendChild(el("span", "label", column.label));
      th.appendChild(el("span", "sort-mark"));
      th.title = column.description;
      th.dataset.field = column.name;
      th.dataset.priority = column.priority;
      th.tabIndex = 0;
      th.addEventListener("click", () => this.sortBy(column));
      th.addEventListener("keydown", (event) => { if (event.key === "Enter") this.sortBy(column); });
      this.head.appendChild(th);
      if (column.name === TREND_AFTER) {
        const trend = el("th", "spark-col");
        trend.id = "trend-head";
        trend.dataset.priority = TREND_PRIORITY;
        this.head.appendChild(trend);
      }
    }
    this.markHeadings();
    this.trendHeading();
    const placeholder = this.body.querySelector(".placeholder td");
    if (placeholder) placeholder.colSpan = this.columns.length + 1;
  }

  trendHeading() {
    const th = document.getElementById("trend-head");
    if (th) th.textContent = "Trend · " + this.trends.range.label;
  }

  makeRow(name) {
    const tr = el("tr");
    tr.dataset.service = name;
    tr.tabIndex = 0;
    tr.addEventListener("click", () => this.onOpen(name));
    tr.addEventListener("keydown", (event) => { if (event.key === "Enter") this.onOpen(name); });
    const cells = {};
    for (const column of this.columns) {
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

  render() {
    const rows = this.ordered([...this.rows.values()]);
    const body = this.body;
    const placeholder = body.querySelector(".placeholder");
    if (placeholder && rows.length) placeholder.remove();
    const shown = new Set();
    rows.forEach((row, index) => {
      shown.add(row.service_name);
      let node = this.nodes.get(row.service_name);
      if (!node) {
        node = this.makeRow(row.service_name);
        this.nodes.set(row.service_name, node);
      }
      if (body.children[index] !== node.tr) body.insertBefore(node.tr, body.children[index] || null);
      node.tr.classList.toggle("down", row.status !== "active");
      for (const column of this.columns) this.renderCell(node.cells[column.name], column, row);
      if (node.cells.svg) drawSpark(node.cells.svg, this.trends.series(row.service_name, "eps"), 120, 26);
    });
    for (const [name, node] of this.nodes) {
      if (!shown.has(name)) { node.tr.remove(); this.nodes.delete(name); }
    }
    // The error column holds why a service is down; while none is, it would only take room.
    document.getElementById("services").classList.toggle("no-errors", !rows.some((row) => row.error_message));
    this.markRows();
    this.fit();
  }

  // A row whose service has a pending or firing alert is marked with the worst of them.
  markRows() {
    for (const [name, node] of this.nodes) {
      const alert = this.worst.get(name);
      node.tr.dataset.alert = alert ? alert.state : "";
      node.tr.dataset.alertSeverity = alert ? alert.severity : "";
      node.tr.title = alert ? alert.name + " (" + alert.severity + ", " + alert.state + ")" : "";
    }
  }

  renderCell(td, column, row) {
    const own = renderers[column.name];
    if (own) { own(td, row, this.age()); return; }
    const format = byUnit[column.unit];
    const value = row[column.name];
    td.textContent = format ? format(value === undefined ? null : value) : (value ?? "–");
    td.dataset.level = row.status === "active" ? this.schema.level(column.name, value) : "";
  }

  // Every row's sparkline again (the range changed, or the past arrived).
  drawTrends() {
    for (const [name, node] of this.nodes) {
      if (node.cells.svg) drawSpark(node.cells.svg, this.trends.series(name, "eps"), 120, 26);
    }
  }

  // Once a second: the times that count up ("12 s ago", "last seen 5 s ago").
  tick() {
    for (const [name, node] of this.nodes) {
      const when = node.cells.last_activity;
      if (when && when.title) when.textContent = ago(when.title);
      const row = this.rows.get(name);
      const seenNode = node.cells.status && node.cells.status.querySelector(".seen");
      if (row && seenNode) seenNode.textContent = seen(row, this.age());
    }
  }

  // A narrow window: drop the columns of least priority (the schema's) until it fits; the
  // name and the status always stay.
  fit() {
    const wrap = document.getElementById("table-wrap"), table = document.getElementById("services");
    const priorities = [...new Set([...this.head.children].map((th) => Number(th.dataset.priority)))]
      .filter((p) => p > 2).sort((a, b) => b - a);
    const hidden = [];
    const apply = () => {
      this.hiding.textContent = hidden.map((p) => '#services [data-priority="' + p + '"]').join(",") +
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
}

function sortValue(row, column) {
  const value = row[column.name];
  if (column.name === "status") return STATUS_RANK[value] ?? 3;
  if (column.unit === "time") return value ? Date.parse(value) : null;
  return value === undefined ? null : value;
}

// The figures with a cell of their own; the others are formatted by their unit.
const renderers = {
  service_name(td, row) {
    td.textContent = row.service_name;
    if (row.port != null) td.appendChild(el("span", "port", ":" + row.port)); // pushed: none
  },
  service_type(td, row) {
    td.replaceChildren(el("span", "type type-" + row.service_type, row.service_type));
  },
  status(td, row, age) {
    td.replaceChildren(el("span", "badge badge-" + row.status, row.status));
    if (row.instances_total > 1) {  // a service of several instances: k of n
      const count = el("span", "instances", row.instances_up + "/" + row.instances_total);
      count.title = "instances active";
      td.appendChild(count);
    }
    const text = row.status === "active" ? "" : seen(row, age);
    if (text) td.appendChild(el("span", "seen", text));
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
