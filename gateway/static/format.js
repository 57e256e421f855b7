// How the dashboard writes numbers, spans and times, and builds elements: one place for all.

const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1, minimumFractionDigits: 1 });
const nf2 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2, minimumFractionDigits: 2 });
const nf0 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });

export function rate(v) { return v >= 100 ? nf1.format(v) : nf2.format(v); }
export function count(v) { return nf0.format(v); }

// A span for a table cell: "42s", "3m 5s", "2h 7m", "3d 4h"; "–" without a value (0 is "0s").
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60), r = s % 60;
  if (d) return d + "d " + h + "h";
  if (h) return h + "h " + m + "m";
  if (m) return m + "m " + r + "s";
  return r + "s";
}

export function ago(iso) {
  if (!iso) return "never";
  const diff = (Date.now() - Date.parse(iso)) / 1000;
  if (diff < 1.5) return "just now";
  if (diff < 60) return Math.round(diff) + " s ago";
  if (diff < 3600) return Math.round(diff / 60) + " min ago";
  return new Date(iso).toLocaleString();
}

// A span in words that stays readable as it grows: "7 s", "3 min 05 s", "2 h 10 min".
export function age(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + String(s % 60).padStart(2, "0") + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

// How old a down row's figures are: its `seconds_since_seen` at the snapshot's time plus the
// snapshot's age now (`snapshotAge`, seconds or null); "" for a gateway without the field.
export function seen(row, snapshotAge) {
  if (!("last_seen" in row)) return "";
  if (row.last_seen === null) return "never seen";
  return "last seen " + age((row.seconds_since_seen || 0) + (snapshotAge || 0)) + " ago";
}

export const clock = new Intl.DateTimeFormat(undefined,
  { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });

const hm = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", hour12: false });
const dayHm = new Intl.DateTimeFormat(undefined,
  { weekday: "short", hour: "2-digit", minute: "2-digit", hour12: false });
const day = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const dayTime = new Intl.DateTimeFormat(undefined,
  { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false });
const HOUR_MS = 3600000;

export function hourMinute(t) { return hm.format(new Date(t)); }

// The labels of a time axis from t0 to t1 (ms): its left edge and middle, written to fit
// the span: "17:40" up to 6 h, "Mon 17:40" up to a day, "Dec 1" beyond.
export function axisTimes(t0, t1) {
  const span = t1 - t0;
  const format = span <= 6 * HOUR_MS ? hm : span <= 24 * HOUR_MS ? dayHm : day;
  return [t0, (t0 + t1) / 2].map((t) => format.format(new Date(t)));
}

// The time of a sparkline's point, as precise as its span needs: "17:40:05" up to an hour,
// "Mon 17:40" up to a day, "Dec 1, 17:40" beyond.
export function pointTime(t, span) {
  const format = span <= HOUR_MS ? clock : span <= 24 * HOUR_MS ? dayHm : dayTime;
  return format.format(new Date(t));
}

export function millis(v) {
  if (v === null || v === undefined) return "–";
  if (v >= 1000) return nf2.format(v / 1000) + " s";
  if (v >= 100) return nf0.format(v) + " ms";
  return (v >= 10 ? nf1 : nf2).format(v) + " ms";
}

export function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

// A cell of a figure, by the figure's unit (the row schema's `unit`).
export const pct = new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 });
export const byUnit = {
  "ratio": (v) => (v === null ? "–" : pct.format(v)),
  "1/s": (v) => (v === null ? "–" : rate(v)),
  "1/h": (v) => (v === null ? "–" : count(v)),
  "events": (v) => (v === null ? "–" : count(v)),
  "s": (v) => duration(v),
  "ms": (v) => millis(v),
};
// The tooltip's words for a sparkline's value.
export const UNIT_TEXT = {
  "1/s": (v) => rate(v) + " events/s",
  "%": (v) => nf1.format(v) + " % failed",
  "ms": (v) => millis(v) + " p95",
};
