// What the dashboard remembers across reloads (the sort, the trends' range), in localStorage.
// Guarded: where the browser refuses storage (disabled site data, a sandboxed frame: even
// reading `window.localStorage` throws), nothing is remembered and the page works the same.

export function load(key) {
  try {
    return window.localStorage.getItem(key);
  } catch (err) {
    return null;
  }
}

export function save(key, value) {
  try {
    window.localStorage.setItem(key, value);
  } catch (err) {
    /* not remembered: the page works without it */
  }
}
