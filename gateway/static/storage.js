// What the dashboard remembers across reloads (the sort, the trends' range), in localStorage.

export function load(key) {
  return window.localStorage.getItem(key);
}

export function save(key, value) {
  window.localStorage.setItem(key, value);
}
