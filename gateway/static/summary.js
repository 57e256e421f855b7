// The summary: the fleet's figures, which services are down, the snapshot's identity, and
// the fleet's name in the heading and the tab's title.
import { clock, count, el, rate } from "/static/format.js";

const $ = (id) => document.getElementById(id);

// `rows`: every row of the snapshot `body`; `order(rows)`: them in the table's default
// order; `onOpen(name)`: opens a service's detail (a click on its chip).
export function renderSummary(body, rows, { order, onOpen }) {
  $("sys-eps").textContent = rate(body.events_per_second);
  $("sys-total").textContent = "total " + count(body.total_events || 0) + " events";
  $("sys-active").textContent = body.active_apis.length;
  $("sys-count").textContent = rows.length;
  const down = order(rows.filter((row) => row.status !== "active"));
  const list = $("sys-down");
  if (!down.length) {
    list.replaceChildren(el("span", "all-up", "all services active"));
  } else {
    const chips = down.map((row) => {
      const chip = el("button", "down-chip down-" + row.status, row.service_name);
      chip.type = "button";
      chip.dataset.service = row.service_name;
      chip.title = row.status + (row.error_message ? ": " + row.error_message : "");
      chip.addEventListener("click", () => onOpen(row.service_name));
      return chip;
    });
    list.replaceChildren(el("span", "down-count", down.length + " down:"), ...chips);
  }
  const sources = $("sys-sources");
  sources.replaceChildren();
  if (!body.data_sources_active.length) sources.appendChild(el("span", "muted", "none"));
  for (const s of body.data_sources_active) sources.appendChild(el("span", "chip", s));
  $("meta-seq").textContent = "snapshot #" + body.sequence;
  $("meta-time").textContent = clock.format(new Date(body.timestamp));
  $("meta-round").textContent = "round " + body.collection_time_ms + " ms";
  const fleet = "metrics-mesh — " + rows.length + " services";
  $("fleet-title").textContent = fleet;
  document.title = (down.length ? "(" + down.length + " down) " : "") + fleet;
}
