// Sign-in for participants (phone or email) and organisers (their login).
import { api, isStaff, saveSession } from "../api.js";
import { field, h, notice, replace } from "../dom.js";
import { problemText, t } from "../i18n.js";
import { lastContest } from "../store.js";
import { DEFAULT_SLUG } from "./contest.js";
import { showFieldErrors } from "../forms.js";

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
        const tokens = await api("/api/auth/login", {
          method: "POST", json: { login: login.input.value.trim(), password: password.input.value }, auth: false,
        });
        onDone(saveSession(tokens));
      } catch (error) {
        if (error.errors.length) showFieldErrors(error, { login, password });
        message.replaceChildren(notice("bad", problemText(error)));
        submit.disabled = false;
      }
    },
  }, login.wrap, password.wrap, message, h("div", { class: "actions" }, submit));
  return form;
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
