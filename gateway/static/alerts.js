// The alert strip at the top, and which alert each service's row is marked with.
// Fed by the stream's `event: alert` (every change) and GET /api/v1/alerts/active (at load,
// after a reconnect, and while polling). Firing first, then pending; resolved ones fade out.
import { authFetch } from "/static/auth.js";
import { ago, el } from "/static/format.js";

const ALERTS_URL = "/api/v1/alerts/active";
const FADE_MS = 10000;           // a resolved alert fades out, then leaves the strip
const STATE_RANK = { firing: 0, pending: 1, resolved: 2 };
const SEVERITY_RANK = { critical: 0, high: 1, warning: 2, info: 3 };

const $ = (id) => document.getElementById(id);

function alertOrder(a, b) {
  return (STATE_RANK[a.state] ?? 3) - (STATE_RANK[b.state] ?? 3) ||
    (SEVERITY_RANK[a.severity] ?? 4) - (SEVERITY_RANK[b.severity] ?? 4) ||
    (Date.parse(a.active_time) || 0) - (Date.parse(b.active_time) || 0) || a.id.localeCompare(b.id);
}

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

export class AlertStrip {
  // `onChange(worst)` gets, after every change, the most urgent pending or firing alert of
  // each service (a Map of service name -> alert): the rows to mark and move up.
  constructor({ onChange }) {
    this.onChange = onChange;
    this.entries = new Map();      // alert id -> {alert, node}
  }

  // One alert's change (from the stream).
  apply(alert) {
    this.set(alert);
    this.render();
  }

  // The whole list of pending and firing alerts: drawn once, however many there are.
  replace(list) {
    const fresh = new Set(list.map((alert) => alert.id));
    for (const [id, entry] of this.entries) {
      if (!fresh.has(id) && entry.alert.state !== "resolved") { entry.node.remove(); this.entries.delete(id); }
    }
    for (const alert of list) this.set(alert);
    this.render();
  }

  async load() {
    try {
      const response = await authFetch(ALERTS_URL, { cache: "no-store" });
      if (response.ok) this.replace((await response.json()).alerts);
    } catch (err) { /* the stream or the next poll brings them */ }
  }

  // Keep an alert's latest state, without drawing.
  set(alert) {
    const known = this.entries.get(alert.id);
    if (alert.state === "inactive") {            // a pending alert that was dropped
      if (known) { known.node.remove(); this.entries.delete(alert.id); }
    } else if (known) {
      known.alert = alert;
    } else {
      this.entries.set(alert.id, { alert, node: alertNode(alert) });
    }
    if (alert.state === "resolved") {
      setTimeout(() => {
        const entry = this.entries.get(alert.id);
        if (entry && entry.alert.state === "resolved") { entry.node.remove(); this.entries.delete(alert.id); this.render(); }
      }, FADE_MS);
    }
  }

  render() {
    const list = $("alert-list");
    const entries = [...this.entries.values()].sort((a, b) => alertOrder(a.alert, b.alert));
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
    this.onChange(this.worst());
  }

  // The most urgent pending or firing alert of each service.
  worst() {
    const worst = new Map();
    for (const { alert } of this.entries.values()) {
      if (alert.state !== "firing" && alert.state !== "pending") continue;
      const known = worst.get(alert.service_name);
      if (!known || alertOrder(alert, known) < 0) worst.set(alert.service_name, alert);
    }
    return worst;
  }

  // Once a second: "firing since 12 s ago".
  tick() {
    for (const entry of this.entries.values()) {
      entry.node.querySelector(".alert-since").textContent = alertSince(entry.alert);
    }
  }
}
