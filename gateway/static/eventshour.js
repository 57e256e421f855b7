// The "Events / hour" card: how many events the fleet counted in the last hour, exactly. The
// history's stored counts (`events{service=""}`: the fleet's events per minute, the 1 m
// tier's sums of what the agents reported), 60 whole minutes ending at the last one, added
// up; fetched again once a minute of server time (one fetch at a time). Where the history
// is unavailable, the REST body's events_per_hour (events/s x 3600 of the agents' 1-minute
// window: a projection, not a count), labelled "projected".
import { count, hourMinute } from "/static/format.js";
import { queryRange } from "/static/history.js";

const $ = (id) => document.getElementById(id);
const MINUTE_MS = 60000;
const SETTLE_MS = 3000;    // a minute is counted this long after it ended (its rounds written)
const RETRY_MS = 60000;

export class EventsHourCard {
  constructor() {
    this.minute = 0;           // the end of the hour counted (ms), 0 before the first count
    this.count = null;         // its events
    this.projection = null;    // the latest snapshot's events_per_hour
    this.unavailable = "";     // why the history cannot be read ("" while it can)
    this.busy = false;
    this.retryAt = 0;
  }

  // Each snapshot: its projection, and a new count when a minute has passed (server time).
  update(body) {
    this.projection = body.events_per_hour;
    const now = Date.parse(body.timestamp);
    const minute = Math.floor((now - SETTLE_MS) / MINUTE_MS) * MINUTE_MS;
    if (minute > this.minute && !this.busy && now >= this.retryAt) this.fetch(minute, now);
    this.render();
  }

  async fetch(minute, now) {
    this.busy = true;
    try {
      const series = await queryRange('events{service=""}', minute - 59 * MINUTE_MS, minute, 60);
      const points = (series.find((one) => one.service === "") || { points: [] }).points;
      this.count = points.reduce((sum, p) => sum + p.v, 0);
      this.minute = minute;
      this.unavailable = "";
    } catch (err) {
      this.unavailable = err.message || "history unavailable";
      this.retryAt = now + RETRY_MS;
    }
    this.busy = false;
    this.render();
  }

  render() {
    const value = $("sys-eph"), note = $("sys-eph-note");
    const card = value.closest(".card");
    if (this.unavailable || this.count === null) {
      card.dataset.source = this.unavailable ? "projected" : "";
      value.textContent = this.unavailable && this.projection !== null ? count(this.projection) : "–";
      note.textContent = this.unavailable ? "projected (events/s × 3600): no history" : "counting…";
      note.title = this.unavailable;   // the gateway's words: history off, unreachable, ...
      return;
    }
    card.dataset.source = "stored";
    value.textContent = count(this.count);
    note.textContent = "counted, " + hourMinute(this.minute - 60 * MINUTE_MS) + "–" + hourMinute(this.minute);
    note.title = "The fleet's events stored in the history for that hour: a count, not a rate";
  }
}
