// Sign in, create an account, and one "Sign in with <provider>" link per configured identity provider.

import { api } from "./api.js";
import { $, h, show } from "./dom.js";

const MESSAGES = {
  conflict: "That username is taken. Try another one.",
  unauthorized: "Wrong username or password.",
  rate_limited: "Too many attempts. Wait a moment and try again.",
};

export class AuthView {
  /** onSignedIn(): called once the session cookie is set. */
  constructor(onSignedIn) {
    this.onSignedIn = onSignedIn;
    this.screen = $("#auth-screen");
    this.notice = $("#auth-notice");
    this.signin = $("#signin-section");
    this.signup = $("#signup-section");
    $("#show-signup").addEventListener("click", () => this.mode("signup"));
    $("#show-signin").addEventListener("click", () => this.mode("signin"));
    this.wire($("#signin-form"), async (u, p) => {
      await api.login(u, p);
    });
    this.wire($("#signup-form"), async (u, p) => {
      await api.register(u, p);
      await api.login(u, p);
    });
  }

  wire(form, action) {
    const error = form.querySelector(".form-error");
    const button = form.querySelector("button[type=submit]");
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      error.textContent = "";
      const username = form.elements.username.value.trim();
      const password = form.elements.password.value;
      const invalid = [...form.elements].find((el) => el.willValidate && !el.checkValidity());
      if (!username || !password || invalid) {
        error.textContent = invalid && invalid.value ? invalid.validationMessage : "Enter a username and a password.";
        (invalid || form.elements.username).focus();
        return;
      }
      button.disabled = true;
      try {
        await action(username, password);
        form.reset();
        await this.onSignedIn();
      } catch (err) {
        error.textContent = MESSAGES[err.code] || err.detail || "Something went wrong. Try again.";
      } finally {
        button.disabled = false;
      }
    });
  }

  setProviders(providers) {
    const list = Array.isArray(providers) ? providers : [];
    const box = $("#provider-buttons");
    box.replaceChildren(
      ...list
        .map((p) => ({ p, href: safeHref(p.login_url || "login") }))
        .filter(({ href }) => href)
        .map(({ p, href }) => h("a", { class: "btn btn-outline btn-block", href }, `Sign in with ${p.name || p.id}`)),
    );
    show($("#providers"), list.length > 0);
  }

  mode(which) {
    show(this.signin, which === "signin");
    show(this.signup, which === "signup");
    for (const el of this.screen.querySelectorAll(".form-error")) el.textContent = "";
    $(which === "signin" ? "#signin-username" : "#signup-username").focus();
  }

  open(notice = "") {
    this.notice.textContent = notice;
    show(this.notice, Boolean(notice));
    show(this.screen, true);
    this.mode("signin");
  }

  close() {
    show(this.screen, false);
  }
}

function safeHref(value) {
  try {
    const u = new URL(String(value), location.href);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch {
    return null;
  }
}
