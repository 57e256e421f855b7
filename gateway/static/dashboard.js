// The metrics-mesh dashboard: plain JavaScript modules, no dependencies, no build step. This
// one puts the page together; each part is one module owning its state:
//   schema.js      the gateway's figures, columns, thresholds (GET /api/v1/schema)
//   connection.js  snapshots and alerts in: SSE, polling, the replay of the past
//   status.js      the connection indicator and the banner (how old the figures are)
//   table.js       the services table (sorting, narrowing)
//   alerts.js      the alert strip, and the alert each row is marked with
//   detail.js      one service's kinds and trends
//   summary.js     the fleet's figures at the top
//   trends.js      the sparklines' samples and drawing; format.js how figures are written;
//   storage.js     what is remembered across reloads
import { AlertStrip } from "/static/alerts.js";
import { Connection } from "/static/connection.js";
import { DetailPanel } from "/static/detail.js";
import { Schema } from "/static/schema.js";
import { Status } from "/static/status.js";
import { load, save } from "/static/storage.js";
import { renderSummary } from "/static/summary.js";
import { ServicesTable } from "/static/table.js";
import { Trends, drawAxis, drawSpark, hoverable } from "/static/trends.js";

const RANGE_KEY = "metrics-mesh.range";
const $ = (id) => document.getElementById(id);

// The range of the sparklines (1, 5 or 15 minutes), chosen above the table and remembered.
function rangeSelector(trends, redraw) {
  const mark = () => {
    for (const button of $("range").querySelectorAll("button")) {
      button.setAttribute("aria-pressed", String(Number(button.dataset.minutes) === trends.minutes));
    }
  };
  for (const button of $("range").querySelectorAll("button")) {
    button.addEventListener("click", () => {
      trends.minutes = Number(button.dataset.minutes);
      save(RANGE_KEY, String(trends.minutes));
      mark();
      redraw();
    });
  }
  mark();
}

function fleetTrends(trends) {
  drawSpark($("sys-spark"), trends.series(null, "eps"), 200, 40);
  document.querySelectorAll(".axis").forEach((node) => drawAxis(node, trends.minutes));
}

async function start() {
  const trends = new Trends(Number(load(RANGE_KEY)));
  hoverable($("sys-spark"), "1/s");
  hoverable($("detail-eps"), "1/s");
  hoverable($("detail-errors"), "%");
  hoverable($("detail-p95"), "ms");
  let redraw = () => fleetTrends(trends);   // until the table and the detail exist
  rangeSelector(trends, () => redraw());
  redraw();
  const schema = await Schema.load();
  const status = new Status(schema.staleSeconds);
  const age = () => status.age();
  const detail = new DetailPanel(schema, trends, { age });
  const table = new ServicesTable(schema, trends, { age, onOpen: (name) => detail.open(name) });
  const alerts = new AlertStrip({ onChange: (worst) => table.markAlerts(worst) });
  redraw = () => { fleetTrends(trends); table.trendHeading(); table.drawTrends(); detail.render(); };
  const connection = new Connection(status, {
    snapshot(body) {
      trends.record(body);
      const rows = body.active_apis.concat(body.inactive_services || []);
      const byName = new Map(rows.map((row) => [row.service_name, row]));
      renderSummary(body, rows, { order: (some) => table.defaultOrdered(some), onOpen: (name) => detail.open(name) });
      drawSpark($("sys-spark"), trends.series(null, "eps"), 200, 40);
      table.update(byName);
      detail.update(byName);
    },
    alert: (alert) => alerts.apply(alert),
    poll: () => alerts.load(),
    past: (body) => trends.record(body),
    caughtUp: () => redraw(),
  });
  setInterval(() => { status.refresh(); alerts.tick(); table.tick(); detail.tick(); }, 1000);
  alerts.load();
  connection.start();
}

start();
