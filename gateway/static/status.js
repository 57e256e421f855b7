// How the page's link to the gateway is doing, and how old the figures on screen are: the
// indicator at the top right and the banner. The banner's message is a live region (role
// "alert") written only when it changes, so a screen reader announces each change once;
// its age, counting up every second, sits beside it, outside the region.
import { age } from "/static/format.js";

const $ = (id) => document.getElementById(id);

export class Status {
  // `staleSeconds`: figures older than this are called stale (null: never).
  constructor(staleSeconds) {
    this.staleSeconds = staleSeconds;
    // The connection's state, set by it: "connecting", "live", "polling" or "down".
    this.mode = "connecting";
    this.upstreamError = null;     // text of the gateway's last error, null when fine
    // The real age of the latest snapshot: its age when it arrived plus the time since.
    this.receivedAt = 0;           // performance.now() when the latest snapshot arrived
    this.ageAtReceipt = 0;         // its snapshot_age_ms then, in seconds
    this.message = null;           // the banner's message as shown, null while hidden
  }

  // A snapshot arrived: the gateway is fine again.
  received(body) {
    this.receivedAt = performance.now();
    this.ageAtReceipt = (body.snapshot_age_ms || 0) / 1000;
    this.upstreamError = null;
  }

  // The gateway has no fresh snapshot (its error body, from the stream or a poll).
  failed(body) {
    this.upstreamError = (body && body.error) || "the gateway has no fresh snapshot";
    this.refresh();
  }

  // Seconds since the latest snapshot was taken; null before the first.
  age() {
    return this.receivedAt ? this.ageAtReceipt + (performance.now() - this.receivedAt) / 1000 : null;
  }

  // The banner tells the real age of the figures on screen, counting up every second while
  // nothing new arrives.
  refresh() {
    const seconds = this.age();
    const stale = this.upstreamError !== null ||
      (seconds !== null && this.staleSeconds !== null && seconds > this.staleSeconds);
    document.body.classList.toggle("stale", stale && seconds !== null);
    const old = seconds === null ? "No snapshot yet." : "The figures below are " + age(seconds) + " old.";
    if (this.upstreamError !== null) {
      this.show("down", "Aggregator unreachable", ["bad", "Metrics unavailable.", this.upstreamError], old);
    } else if (this.mode === "down") {
      this.show("down", "Disconnected", ["bad", "Connection to the gateway lost.", "Retrying."], old);
    } else if (stale) {
      this.show("stale", "Stale", ["warn", "Data is stale.", "No new snapshot."], old);
    } else if (this.mode === "polling") {
      this.show("polling", "Polling every 5 s", null);
    } else if (this.mode === "live") {
      this.show("live", "Live", null);
    }
  }

  // The indicator's state and words; the banner's [kind, title, text] (null: no banner) and age.
  show(state, words, message, old) {
    const conn = $("conn");
    if (conn.dataset.state !== state) conn.dataset.state = state;
    const connText = $("conn-text");
    if (connText.textContent !== words) connText.textContent = words;
    const banner = $("banner");
    const key = message && message.join("\n");
    if (key !== this.message) {
      this.message = key;
      if (message) {
        const [kind, title, text] = message;
        banner.dataset.kind = kind;
        $("banner-title").textContent = title;
        $("banner-text").textContent = text;
      }
      banner.hidden = !message;
    }
    const ageNode = $("banner-age");
    if (message && ageNode.textContent !== old) ageNode.textContent = old;
  }
}
