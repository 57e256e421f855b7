// What the gateway says about its figures (GET /api/v1/schema): the table's columns, the
// detail panel's kind and instance columns, the warning thresholds and the age from which the figures on
// screen are stale. The thresholds are the CLI's too (mesh_common/thresholds.py): defined
// there, used here as served.
import { authFetch } from "/static/auth.js";

const SCHEMA_URL = "/api/v1/schema";

// The figures with a column position, from left to right.
function columnsOf(figures) {
  return (figures || []).filter((figure) => figure.column !== null && figure.column !== undefined)
    .sort((a, b) => a.column - b.column);
}

export class Schema {
  constructor(body) {
    this.columns = columnsOf(body.rows);          // [{name, label, unit, description, column, priority}]
    this.kindColumns = columnsOf(body.kinds);
    this.instanceColumns = columnsOf(body.instances);
    this.thresholds = body.thresholds || {};     // figure name -> {warn, bad}
    this.staleSeconds = typeof body.stale_seconds === "number" ? body.stale_seconds : null;
  }

  // The gateway's schema; an empty one (no columns, no thresholds) when it cannot be read.
  static async load() {
    try {
      const response = await authFetch(SCHEMA_URL, { cache: "no-store" });
      if (response.ok) return new Schema(await response.json());
    } catch (err) { /* below */ }
    return new Schema({});
  }

  // How worrying a figure's value is: "bad" or "warn" from that threshold up, else "".
  level(name, value) {
    const limits = this.thresholds[name];
    if (!limits || value === null || value === undefined) return "";
    return value >= limits.bad ? "bad" : value >= limits.warn ? "warn" : "";
  }
}
