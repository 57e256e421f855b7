// The page's credentials, for a gateway with [auth] on (with it off, every call goes as it
// is). Two ways in, both chosen on the sign-in form (signin.js):
//   - a login (POST /auth/login): the gateway sets an HttpOnly, SameSite=Strict cookie this
//     page never sees; GET requests and the streams carry it by themselves, and the page
//     keeps no token (the login's answer holds one: it is dropped);
//   - an API token pasted once: kept in sessionStorage (this tab, until it closes) and sent
//     as `Authorization: Bearer` on every fetch. EventSource and WebSocket cannot send
//     headers, so each stream opens with a single-use ticket (POST /auth/ticket, 30 s) in its
//     URL: the token itself never goes into a URL.
// Writes always need the header: the cookie never authorizes one, so a page of another site
// cannot make this browser write (no CSRF by construction). A 401 on any call is announced
// on `window` as UNAUTHORIZED: the sign-in form comes back.
import { forget, load, save } from "/static/storage.js";

export const UNAUTHORIZED = "metrics-mesh:unauthorized";
const TOKEN_KEY = "metrics-mesh.token";
const IDENTITY_URL = "/auth/identity";
const LOGIN_URL = "/auth/login";
const LOGOUT_URL = "/auth/logout";
const TICKET_URL = "/auth/ticket";

// The pasted API token of this tab, null without one.
export function heldToken() {
  return load(TOKEN_KEY, "session");
}

function withToken(options, token) {
  if (!token) return options;
  const headers = new Headers(options.headers || {});
  headers.set("Authorization", "Bearer " + token);
  return { ...options, headers };
}

// fetch(), with the held token; a 401 answer is announced (UNAUTHORIZED).
export async function authFetch(url, options = {}) {
  const response = await fetch(url, withToken(options, heldToken()));
  if (response.status === 401) window.dispatchEvent(new CustomEvent(UNAUTHORIZED));
  return response;
}

// The URL a stream (EventSource, WebSocket) opens: `url` itself with a login's cookie (or
// no [auth]), with a fresh single-use ticket while a token is held. Throws when no ticket.
export async function streamUrl(url) {
  if (!heldToken()) return url;
  const response = await authFetch(TICKET_URL, { method: "POST", cache: "no-store" });
  if (!response.ok) throw new Error("no stream ticket: the gateway answered " + response.status);
  const { ticket } = await response.json();
  return url + (url.includes("?") ? "&" : "?") + "ticket=" + encodeURIComponent(ticket);
}

// The gateway's words for a refusal, as a sentence ("" when it gave none).
async function refusal(response) {
  const body = await response.json().catch(() => ({}));
  const detail = typeof body.detail === "string" ? body.detail : "";
  if (response.status === 422) return "Enter both a username and a password.";
  if (!detail) return "The gateway answered " + response.status + ".";
  return detail.charAt(0).toUpperCase() + detail.slice(1) + (/[.!?]$/.test(detail) ? "" : ".");
}

// Who the page's credentials speak for: {status, body, error}. Status 0: unreachable.
export async function identify(token = heldToken()) {
  try {
    const response = await fetch(IDENTITY_URL, withToken({ cache: "no-store" }, token));
    if (response.ok) return { status: response.status, body: await response.json(), error: "" };
    return { status: response.status, body: null, error: await refusal(response) };
  } catch (err) {
    return { status: 0, body: null, error: "The gateway cannot be reached." };
  }
}

// A login: "" when it worked (the cookie is set), else why not.
export async function logIn(username, password) {
  let response;
  try {
    response = await fetch(LOGIN_URL, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username, password }),
      cache: "no-store",
    });
  } catch (err) {
    return "The gateway cannot be reached.";
  }
  if (!response.ok) return refusal(response);
  forget(TOKEN_KEY, "session");   // the cookie speaks for the page now
  return "";
}

// A pasted API token, checked with the gateway first: "" when it is good (and now held).
export async function useToken(token) {
  const answer = await identify(token);
  if (answer.status !== 200) return answer.error;
  save(TOKEN_KEY, token, "session");
  return "";
}

// Forget the token and have the gateway clear the login's cookie.
export async function signOut() {
  forget(TOKEN_KEY, "session");
  try {
    await fetch(LOGOUT_URL, { method: "POST", cache: "no-store" });
  } catch (err) { /* the cookie runs out by itself */ }
}

// The token is refused (a 401 with it): it is dropped.
export function dropToken() {
  forget(TOKEN_KEY, "session");
}
