// The detail panel: one service's kinds of event (the schema's kind columns), its trends and,
// for a service of several instances, each instance (the schema's instance columns).
import { byUnit, duration, el, seen } from "/static/format.js";
import { drawSpark } from "/static/trends.js";

const $ = (id) => document.getElementById(id);

export class DetailPanel {
  // `age()` is the latest snapshot's age now (seconds or null); `watch(name)` asks for the
  // stored trends of the service shown (null: none).
  constructor(schema, trends, { age, watch }) {
    this.schema = schema;
    this.trends = trends;
    this.age = age;
    this.watch = watch;
    this.name = null;              // the service shown, null while closed
    this.rows = new Map();         // service name -> its latest row
    $("detail-close").addEventListener("click", () => this.close());
  }

  open(name) {
    this.name = name;
    $("detail").hidden = false;
    this.watch(name);
    this.render();
  }

  close() {
    this.name = null;
    $("detail").hidden = true;
    this.watch(null);
  }

  // The latest rows (a Map of name -> row).
  update(rows) {
    this.rows = rows;
    this.render();
  }

  render() {
    const row = this.name && this.rows.get(this.name);
    if (!row) return;
    $("detail-title").textContent = row.service_name;
    const status = el("span", "badge badge-" + row.status, row.status);
    const seenText = row.status === "active" ? "" : seen(row, this.age());
    $("detail-status").replaceChildren(status, ...(seenText ? [el("span", "seen", seenText)] : []));
    const thead = el("thead");
    thead.appendChild(this.kindHead());
    $("detail-kinds").replaceChildren(thead, this.kindBody(row));
    $("detail").classList.toggle("down", row.status !== "active");
    this.renderInstances(row);
    drawSpark($("detail-eps"), this.trends.series(row.service_name, "eps"), 200, 40);
    drawSpark($("detail-errors"), this.trends.series(row.service_name, "err"), 200, 40);
    drawSpark($("detail-p95"), this.trends.series(row.service_name, "p95"), 200, 40);
    $("detail-eps-now").textContent = byUnit["1/s"](row.events_per_second ?? null);
    $("detail-errors-now").textContent = byUnit.ratio(row.error_rate ?? null);
    $("detail-p95-now").textContent = byUnit.ms(row.latency_p95_ms ?? null);
  }

  kindHead() {
    const head = el("tr");
    for (const column of this.schema.kindColumns) {
      head.appendChild(el("th", column.unit in byUnit ? "num" : "", column.label));
    }
    return head;
  }

  kindBody(row) {
    const columns = this.schema.kindColumns;
    const body = el("tbody");
    for (const kind of row.kinds || []) {
      const tr = el("tr");
      tr.dataset.kind = kind.kind;
      for (const column of columns) {
        const format = byUnit[column.unit] || ((v) => v ?? "–");
        const value = kind[column.name] ?? null;
        const td = el("td", column.unit in byUnit ? "num" : "name", format(value));
        td.dataset.field = column.name;
        td.dataset.level = row.status === "active" ? this.schema.level(column.name, value) : "";
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    if (!(row.kinds || []).length) {
      const tr = el("tr", "placeholder");
      tr.appendChild(el("td", "", row.status === "active" ? "No events yet." : "No figures: the service is " + row.status + "."));
      tr.firstChild.colSpan = columns.length;
      body.appendChild(tr);
    }
    return body;
  }

  // The instances of a service of several instances ("2 of 3 active"), hidden for one agent.
  renderInstances(row) {
    const instances = row.instances || [];
    $("detail-instances-wrap").hidden = instances.length === 0;
    if (!instances.length) return;
    $("detail-instances-count").textContent =
      (row.instances_up ?? 0) + " of " + (row.instances_total ?? instances.length) + " active";
    const columns = this.schema.instanceColumns;
    const head = el("tr");
    for (const column of columns) {
      head.appendChild(el("th", column.unit in byUnit ? "num" : "", column.label));
    }
    const thead = el("thead");
    thead.appendChild(head);
    const body = el("tbody");
    for (const instance of instances) body.appendChild(this.instanceRow(instance, columns));
    $("detail-instances").replaceChildren(thead, body);
  }

  instanceRow(instance, columns) {
    const tr = el("tr", instance.status === "active" ? "" : "down");
    tr.dataset.instance = instance.address;
    tr.dataset.status = instance.status;
    for (const column of columns) {
      const value = instance[column.name] ?? null;
      const td = el("td", column.unit in byUnit ? "num" : "name");
      td.dataset.field = column.name;
      if (column.name === "status") {
        td.appendChild(el("span", "badge badge-" + value, value));
        if (instance.error_message) td.appendChild(el("span", "instance-error", instance.error_message));
      } else if (column.name === "seconds_since_seen") {
        td.textContent = value === null ? "never" : duration(value + (this.age() || 0));
      } else {
        td.textContent = (byUnit[column.unit] || ((v) => v ?? "–"))(value);
        td.dataset.level = instance.status === "active" ? this.schema.level(column.name, value) : "";
      }
      tr.appendChild(td);
    }
    return tr;
  }

  // Once a second: the shown service's "last seen N s ago".
  tick() {
    const seenNode = $("detail-status").querySelector(".seen");
    const row = this.name && this.rows.get(this.name);
    if (seenNode && row) seenNode.textContent = seen(row, this.age());
  }
}
