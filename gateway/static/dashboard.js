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
//   history.js     the trends' past, from the history store (the range query)
//   eventshour.js  the "Events / hour" card: the last hour's count from the history
//   storage.js     what is remembered across reloads and for the tab's session
//   auth.js        the credentials every call carries (login cookie, or token and tickets)
//   signin.js      the sign-in form and the session in the header ([auth] on)
import { AlertStrip } from "/static/alerts.js";
import { Connection, latestSnapshot } from "/static/connection.js";
import { DetailPanel } from "/static/detail.js";
import { EventsHourCard } from "/static/eventshour.js";
import { el } from "/static/format.js";
import { RANGES, StoredTrends } from "/static/history.js";
import { Schema } from "/static/schema.js";
import { SignIn } from "/static/signin.js";
import { Status } from "/static/status.js";
import { load, save } from "/static/storage.js";
import { renderSummary } from "/static/summary.js";
import { ServicesTable } from "/static/table.js";
import { Trends, drawAxis, drawSpark, hoverable } from "/static/trends.js";

const RANGE_KEY = "metrics-mesh.range";
const $ = (id) => document.getElementById(id);

// The range of the sparklines (15 min to 90 days), chosen above the table and remembered;
// `choose(range)` applies one. Returns the function that marks the chosen button.
function rangeSelector(trends, choose) {
  const buttons = RANGES.map((range) => {
    const button = el("button", "", range.label);
    button.type = "button";
    button.dataset.range = range.key;
    button.addEventListener("click", () => choose(range));
    return button;
  });
  $("range").replaceChildren(...buttons);
  const mark = () => {
    for (const button of buttons) button.setAttribute("aria-pressed", String(button.dataset.range === trends.range.key));
  };
  mark();
  return mark;
}

// The fleet's sparkline, every time axis, and the note on the history beside the range.
// Once the range's stored points are in (or the history said why not), the sparkline says
// so (`data-drawn`, for tests) and the page marks it (`trends-drawn`, for the benchmark).
function fleetTrends(trends) {
  const data = trends.series(null, "eps");
  const spark = $("sys-spark");
  drawSpark(spark, data, 200, 40);
  document.querySelectorAll(".axis").forEach((node) => drawAxis(node, data.t0, data.t1));
  const stored = trends.stored;
  const note = $("range-note");
  note.textContent = stored.state === "loading" ? "loading history…" : stored.note;
  note.title = stored.reason;
  note.dataset.state = stored.state;
  const settled = ["ok", "unavailable", "error"].includes(stored.state);
  if (settled && spark.dataset.drawn !== trends.range.key) {
    spark.dataset.drawn = trends.range.key;
    performance.mark("trends-drawn", { detail: trends.range.key });
  } else if (!settled) {
    delete spark.dataset.drawn;
  }
}

async function start() {
  await new SignIn().ready();   // at once without [auth] or with good credentials
  let redraw = () => fleetTrends(trends);   // until the table and the detail exist
  const stored = new StoredTrends({ onChange: () => redraw() });
  const trends = new Trends(load(RANGE_KEY), stored);
  stored.select(trends.range);
  hoverable($("sys-spark"), "1/s");
  hoverable($("detail-eps"), "1/s");
  hoverable($("detail-errors"), "%");
  hoverable($("detail-p95"), "ms");
  const mark = rangeSelector(trends, (range) => {
    performance.mark("range-chosen", { detail: range.key });
    trends.range = range;
    save(RANGE_KEY, range.key);
    mark();
    stored.select(range);
    redraw();
  });
  redraw();
  latestSnapshot().then((body) => { if (body && trends.record(body)) stored.refresh(trends.now()); });
  const schema = await Schema.load();
  const status = new Status(schema.staleSeconds);
  const age = () => status.age();
  const detail = new DetailPanel(schema, trends, { age, watch: (name) => stored.watch(name) });
  const table = new ServicesTable(schema, trends, { age, onOpen: (name) => detail.open(name) });
  const alerts = new AlertStrip({ onChange: (worst) => table.markAlerts(worst) });
  const hour = new EventsHourCard();
  redraw = () => { fleetTrends(trends); table.trendHeading(); table.drawTrends(); detail.render(); };
  const connection = new Connection(status, {
    snapshot(body) {
      trends.record(body);
      stored.refresh(trends.now());
      hour.update(body);
      const rows = body.active_apis.concat(body.inactive_services || []);
      const byName = new Map(rows.map((row) => [row.service_name, row]));
      renderSummary(body, rows, { order: (some) => table.defaultOrdered(some), onOpen: (name) => detail.open(name) });
      fleetTrends(trends);
      table.update(byName);
      detail.update(byName);
    },
    alert: (alert) => alerts.apply(alert),
    poll: () => alerts.load(),
    past: (body) => trends.record(body),
    caughtUp: () => { stored.refresh(trends.now()); redraw(); },
  });
  setInterval(() => { status.refresh(); alerts.tick(); table.tick(); detail.tick(); }, 1000);
  alerts.load();
  connection.start();
}

start();
