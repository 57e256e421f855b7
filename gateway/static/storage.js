// What the dashboard remembers: across reloads in localStorage (the sort, the trends' range),
// for the tab's session in sessionStorage (a pasted API token: gone when the tab closes).
// Guarded: where the browser refuses storage (disabled site data, a sandboxed frame: even
// reading `window.localStorage` throws), nothing is remembered and the page works the same.

function stored(kind) {
  try {
    return kind === "session" ? window.sessionStorage : window.localStorage;
  } catch (err) {
    return null;
  }
}

export function load(key, kind = "local") {
  try {
    const storage = stored(kind);
    return storage ? storage.getItem(key) : null;
  } catch (err) {
    return null;
  }
}

export function save(key, value, kind = "local") {
  try {
    const storage = stored(kind);
    if (storage) storage.setItem(key, value);
  } catch (err) {
    /* not remembered: the page works without it */
  }
}

export function forget(key, kind = "local") {
  try {
    const storage = stored(kind);
    if (storage) storage.removeItem(key);
  } catch (err) {
    /* nothing was remembered */
  }
}
