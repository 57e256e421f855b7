// The page's link to the gateway: live over Server-Sent Events, polling every 5 s while the
// stream is unavailable, and the past replayed once at load on a stream of its own. With a
// pasted API token each stream opens with a single-use ticket (auth.js): EventSource's own
// reconnect would reuse the spent one, so such a stream is closed on error and opened again
// with a fresh ticket, resuming after its last event (`last_event_id`: a new EventSource
// cannot send the Last-Event-ID header its own reconnect sends).
import { authFetch, streamUrl } from "/static/auth.js";

const STREAM_URL = "/api/v1/real-time-metrics/stream";
// The sparklines' past: the gateway's ring (history_size snapshots) replayed once at load,
// only the figures they draw, on a stream of its own that closes once it has caught up.
const HISTORY_URL = STREAM_URL + "?replay=900&fields=events_per_second,error_rate,latency_p95_ms";
const REST_URL = "/api/v1/real-time-metrics";
const POLL_MS = 5000;
const HISTORY_LIMIT_MS = 30000;  // the replay gives up after this
const RECONNECT_MS = 2000;       // a ticketed stream's reconnect: the gateway's own retry hint

// The latest snapshot, read once (null when there is none to serve): the page reads it beside
// the schema, so that the history's fetch, which needs the server's time, starts before the
// stream's first snapshot comes (bench/bench_dashboard_history.py: the 24 h range query left
// about 340 ms after navigation instead of 660 ms).
export async function latestSnapshot() {
  try {
    const response = await authFetch(REST_URL, { cache: "no-store" });
    return response.ok ? await response.json() : null;
  } catch (err) {
    return null;
  }
}

export class Connection {
  // `status` shows the link's state (its `mode` is set here). The handlers: `snapshot(body)`
  // for each new snapshot, `alert(alert)` for each alert change on the stream, `poll()` at
  // each poll (the alert list), `past(body)` for each replayed snapshot (true when it was
  // new), `caughtUp()` once the replay is over and brought something.
  constructor(status, handlers) {
    this.status = status;
    this.handlers = handlers;
    this.lastSequence = 0;
    this.lastEventId = "";
    this.source = null;
    this.pollTimer = null;
  }

  start() {
    this.connect();
    this.loadHistory();
  }

  // A snapshot from the stream or a poll; one already seen (the other way) is skipped.
  receive(body) {
    if (typeof body.sequence === "number") {
      if (body.sequence === this.lastSequence) return;
      this.lastSequence = body.sequence;
    }
    this.status.received(body);
    this.handlers.snapshot(body);
    this.status.refresh();
  }

  async connect() {
    const status = this.status;
    if (!window.EventSource) { this.startPolling(); return; }
    let url;
    try {
      url = await streamUrl(STREAM_URL);
    } catch (err) {   // no ticket (unreachable, refused): poll, try again later
      this.lost(null, false);
      return;
    }
    const ticketed = url !== STREAM_URL;
    if (ticketed && this.lastEventId) url += "&last_event_id=" + encodeURIComponent(this.lastEventId);
    const source = new EventSource(url);
    this.source = source;
    source.addEventListener("open", () => { status.mode = "live"; this.stopPolling(); status.refresh(); });
    source.addEventListener("alert", (event) => this.handlers.alert(JSON.parse(event.data)));
    source.addEventListener("snapshot", (event) => {
      if (event.lastEventId) this.lastEventId = event.lastEventId;
      this.receive(JSON.parse(event.data));
    });
    source.addEventListener("error", (event) => {
      if (event instanceof MessageEvent && event.data) {
        status.failed(JSON.parse(event.data));   // the gateway's own `event: error`
        return;
      }
      if (ticketed) source.close();   // its ticket is spent: a new one next time
      this.lost(source, ticketed);
    });
  }

  // The stream's connection failed: EventSource retries by itself (the login's cookie);
  // a closed one (or a ticketed one) is opened again later. Polling meanwhile.
  lost(source, ticketed) {
    const status = this.status;
    const closed = !source || source.readyState === EventSource.CLOSED;
    status.mode = closed && !ticketed ? "down" : "polling";
    this.startPolling();
    status.refresh();
    if (closed) setTimeout(() => this.connect(), ticketed ? RECONNECT_MS : POLL_MS);
  }

  async poll() {
    const status = this.status;
    this.handlers.poll();
    try {
      const response = await authFetch(REST_URL, { cache: "no-store" });
      const body = await response.json();
      if (status.mode !== "live") status.mode = "polling";
      if (response.ok) this.receive(body);
      else status.failed(body);
    } catch (err) {
      if (status.mode !== "live") status.mode = "down";
      status.refresh();
    }
  }

  startPolling() {
    if (this.pollTimer) return;
    this.poll();
    this.pollTimer = setInterval(() => this.poll(), POLL_MS);
  }

  stopPolling() {
    if (this.pollTimer) { clearInterval(this.pollTimer); this.pollTimer = null; }
  }

  // The past from the gateway's ring, on a stream of its own that closes when caught up.
  async loadHistory() {
    if (!window.EventSource) return;
    let url;
    try {
      url = await streamUrl(HISTORY_URL);
    } catch (err) {
      return;   // the trends start from the live stream instead
    }
    const past = new EventSource(url);
    let added = 0;
    const done = () => { past.close(); clearTimeout(limit); if (added) this.handlers.caughtUp(); };
    const limit = setTimeout(done, HISTORY_LIMIT_MS);
    past.addEventListener("snapshot", (event) => {
      const body = JSON.parse(event.data);
      if (this.handlers.past(body)) added++;
      if (this.lastSequence && body.sequence >= this.lastSequence) done();   // met the live stream
    });
    past.addEventListener("error", done);
  }
}
