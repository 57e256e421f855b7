// The sign-in form and the session in the header, for a gateway with [auth] on. The page asks
// the gateway who it is first (GET /auth/identity): with [auth] off or good credentials it
// goes on at once; on a 401 the form shows, and the page starts once someone signed in,
// with a username and password (a login: the gateway's cookie) or with a pasted API token
// (auth.js). A 401 later on (the login ran out, a token was revoked) brings the form back;
// signing in then reloads the page. The header shows who is signed in, and a sign-out button.
import { UNAUTHORIZED, dropToken, heldToken, identify, logIn, signOut, useToken } from "/static/auth.js";

const $ = (id) => document.getElementById(id);

export class SignIn {
  constructor() {
    this.done = null;            // resolves the sign-in being asked for
    this.started = false;        // the dashboard runs: a later sign-in reloads the page
    $("login-form").addEventListener("submit", (event) => { event.preventDefault(); this.submitLogin(); });
    $("token-form").addEventListener("submit", (event) => { event.preventDefault(); this.submitToken(); });
    $("sign-out").addEventListener("click", async () => { await signOut(); window.location.reload(); });
    window.addEventListener(UNAUTHORIZED, () => {
      if (this.started && !this.done) this.ask("Your session has ended: sign in again.");
    });
  }

  // Resolves once the gateway lets this page read (at once when [auth] is off).
  async ready() {
    for (;;) {
      const answer = await identify();
      if (answer.status !== 401) {   // signed in, [auth] off, or trouble the page shows itself
        if (answer.body) this.showSession(answer.body);
        this.started = true;
        return;
      }
      let note = "This gateway needs you to sign in.";
      if (heldToken()) {
        dropToken();
        note = "The saved API token was refused: " + answer.error;
      }
      await this.ask(note);
    }
  }

  // Shows the form; resolves once a sign-in worked.
  ask(note) {
    $("signin-note").textContent = note;
    this.showError("");
    document.body.classList.add("signing-in");
    $("signin").hidden = false;
    $("login-user").focus();
    return new Promise((resolve) => { this.done = resolve; });
  }

  signedIn() {
    if (this.started) { window.location.reload(); return; }
    $("signin").hidden = true;
    document.body.classList.remove("signing-in");
    $("login-form").reset();
    $("token-form").reset();
    const done = this.done;
    this.done = null;
    if (done) done();
  }

  async submitLogin() {
    const user = $("login-user"), password = $("login-password");
    const error = await this.busy("login-form", () => logIn(user.value, password.value));
    if (!error) { this.signedIn(); return; }
    this.showError(error, [user, password]);
    password.select();
    password.focus();
  }

  async submitToken() {
    const token = $("token-input");
    const error = await this.busy("token-form", () => useToken(token.value.trim()));
    if (!error) { this.signedIn(); return; }
    this.showError(error, [token]);
    token.select();
    token.focus();
  }

  // Runs `work` with the form's button disabled; its answer.
  async busy(formId, work) {
    const button = $(formId).querySelector("button[type=submit]");
    const words = button.textContent;
    button.disabled = true;
    button.textContent = "Checking…";
    try {
      return await work();
    } finally {
      button.disabled = false;
      button.textContent = words;
    }
  }

  // The refusal under the forms ("": none), and the fields it is about.
  showError(text, fields = []) {
    const node = $("signin-error");
    node.textContent = text;
    node.hidden = !text;
    for (const input of document.querySelectorAll("#signin input")) {
      const concerned = fields.includes(input);
      const own = (input.getAttribute("aria-describedby") || "").split(" ")
        .filter((id) => id && id !== "signin-error");
      const described = concerned ? own.concat("signin-error") : own;
      if (described.length) input.setAttribute("aria-describedby", described.join(" "));
      else input.removeAttribute("aria-describedby");
      if (concerned) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
  }

  // Who is signed in, and the sign-out button (nothing with [auth] off).
  showSession(identity) {
    $("session").hidden = !identity.authentication;
    if (!identity.authentication) return;
    const via = heldToken() ? "API token" : "signed in";
    $("session-name").textContent = identity.name;
    $("session-name").title = via + " · scopes: " + identity.scopes.join(", ");
  }
}
