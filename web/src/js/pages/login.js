// Sign-in for participants (phone or email) and organisers (their login).
import { api, isStaff, signIn } from "../api.js";
import { field, h, notice, replace } from "../dom.js";
import { problemText, t } from "../i18n.js";
import { lastContest } from "../store.js";
import { DEFAULT_SLUG } from "./contest.js";
import { showFieldErrors } from "../forms.js";

// Problems after which the way in is a new password by one-time code (services/registration/api.py).
const NEEDS_RESET = new Set(["account_locked", "account_protected"]);

/** The sign-in form; `onDone(session)` runs after a successful sign-in. Reused by the organisers' pages. */
export function loginForm({ onDone, staff = false }) {
  const login = field({
    label: staff ? t("login.staff_login") : t("login.login"), name: "login", required: true,
    autocomplete: "username", hint: staff ? null : t("login.login_hint"),
  });
  const password = field({
    label: t("login.password"), name: "password", type: "password", required: true, autocomplete: "current-password",
  });
  const message = h("div");
  const submit = h("button", { type: "submit", class: "btn block" }, t("login.submit"));
  const reset = h("div");
  const openReset = () => {
    if (!reset.firstChild) reset.append(resetForm({ onDone, staff, login: login.input.value.trim() }));
    reset.querySelector("input").focus();
  };
  const form = h("form", {
    novalidate: true,
    onsubmit: async (event) => {
      event.preventDefault();
      message.replaceChildren();
      login.setError(login.input.value.trim() ? "" : t("form.required"));
      password.setError(password.input.value ? "" : t("form.required"));
      if (!login.input.value.trim() || !password.input.value) {
        (login.input.value.trim() ? password : login).input.focus();
        return;
      }
      submit.disabled = true;
      try {
        onDone(await signIn(login.input.value.trim(), password.input.value));
      } catch (error) {
        if (error.errors.length) showFieldErrors(error, { login, password });
        message.replaceChildren(notice("bad", problemText(error)));
        submit.disabled = false;
        if (NEEDS_RESET.has(error.code)) openReset();
      }
    },
  }, login.wrap, password.wrap, message, h("div", { class: "actions" }, submit),
  h("p", {}, h("button", { type: "button", class: "link", onclick: openReset }, t("reset.open"))));
  return h("div", {}, form, reset);
}

/** A new password by one-time code (sent to the account's phone or email), then signed in with it. */
function resetForm({ onDone, staff, login: typed }) {
  const login = field({
    label: staff ? t("login.staff_login") : t("login.login"), name: "reset_login", required: true, autocomplete: "username", value: typed,
  });
  const code = field({
    label: t("reset.code"), name: "code", required: true, autocomplete: "one-time-code", inputmode: "numeric",
  });
  const newPassword = field({
    label: t("reset.new_password"), name: "new_password", type: "password", required: true,
    autocomplete: "new-password", hint: t("reset.new_password_hint"),
  });
  const second = h("div", { hidden: true }, code.wrap, newPassword.wrap);
  const message = h("div");
  const send = h("button", { type: "button", class: "btn secondary" }, t("reset.send"));
  const submit = h("button", { type: "submit", class: "btn block", hidden: true }, t("reset.submit"));
  const fields = { login, code, new_password: newPassword };
  const failed = (error) => {
    const leftover = error.errors.length ? showFieldErrors(error, fields) : [];
    message.replaceChildren(notice("bad", [problemText(error), ...leftover].join(" ")));
  };
  send.addEventListener("click", async () => {
    message.replaceChildren();
    login.setError(login.input.value.trim() ? "" : t("form.required"));
    if (!login.input.value.trim()) return;
    send.disabled = true;
    try {
      await api("/api/auth/password-reset/request", {
        method: "POST", json: { login: login.input.value.trim() }, auth: false,
      });
      message.replaceChildren(notice("ok", t("reset.sent")));
      second.hidden = false;
      submit.hidden = false;
      code.input.focus();
    } catch (error) {
      failed(error);
    } finally {
      send.disabled = false;
    }
  });
  return h("form", {
    novalidate: true,
    "aria-labelledby": "reset-title",
    onsubmit: async (event) => {
      event.preventDefault();
      message.replaceChildren();
      submit.disabled = true;
      try {
        const body = { login: login.input.value.trim(), code: code.input.value.trim(), new_password: newPassword.input.value };
        await api("/api/auth/password-reset/confirm", { method: "POST", json: body, auth: false });
        onDone(await signIn(body.login, body.new_password));
      } catch (error) {
        failed(error);
        submit.disabled = false;
      }
    },
  }, h("h2", { id: "reset-title" }, t("reset.title")), h("p", {}, t("reset.intro")),
  login.wrap, h("div", { class: "actions" }, send), second, message, h("div", { class: "actions" }, submit));
}

export async function render(ctx) {
  ctx.setTitle(t("login.title"));
  const next = ctx.query.get("next");
  const safeNext = next && next.startsWith("/") && !next.startsWith("//") ? next : null;
  replace(ctx.main,
    h("h1", {}, t("login.title")),
    ctx.query.get("expired") ? notice("warn", t("login.expired")) : null,
    loginForm({
      onDone: (who) => {
        if (isStaff(who)) ctx.navigate(safeNext && safeNext.startsWith("/quan-tri") ? safeNext : "/quan-tri");
        else ctx.navigate(safeNext || `/c/${encodeURIComponent(lastContest() || DEFAULT_SLUG)}`);
      },
    }),
    h("p", {}, t("login.no_account"), " ",
      h("a", { href: `/dang-ky${safeNext ? `?next=${encodeURIComponent(safeNext)}` : ""}` }, t("nav.signup"))));
  return null;
}
