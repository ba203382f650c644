// Sign-up: arriving from a unit's QR code (/dang-ky?unit=CODE) the unit is already chosen.
// Errors come from the API field by field (problem+json `errors`) and are shown next to
// the field they name, in the API's own Vietnamese words.
import { api, signIn } from "../api.js";
import { unitPicker } from "../components/unitpicker.js";
import { field, h, notice, replace } from "../dom.js";
import { problemText, t } from "../i18n.js";
import { showFieldErrors } from "../forms.js";
import { lastContest } from "../store.js";
import { DEFAULT_SLUG } from "./contest.js";

export async function render(ctx) {
  ctx.setTitle(t("signup.title"));
  const next = ctx.query.get("next");
  const unitCode = ctx.query.get("unit");

  const fullName = field({ label: t("signup.full_name"), name: "full_name", required: true, autocomplete: "name" });
  const phone = field({
    label: t("signup.phone"), name: "phone", type: "tel", required: true, autocomplete: "tel", inputmode: "tel",
    hint: t("signup.phone_hint"),
  });
  const email = field({ label: t("signup.email"), name: "email", type: "email", autocomplete: "email", hint: t("common.optional") });
  const unit = unitPicker({ label: t("signup.unit"), required: true });
  const idNumber = field({
    label: t("signup.id_number"), name: "id_number", inputmode: "numeric", hint: t("signup.id_number_hint"),
  });
  const birthDate = field({ label: t("signup.birth_date"), name: "birth_date", type: "date", hint: t("common.optional") });
  const job = field({ label: t("signup.job"), name: "job", autocomplete: "organization-title", hint: t("common.optional") });
  // Shown only when the API asks for them (a contest with an entry password, or sign-up
  // verified by a one-time code): the form learns its rules from the API's field errors.
  const entryPassword = field({ label: t("signup.entry_password"), name: "entry_password", hint: t("signup.entry_password_hint") });
  entryPassword.wrap.hidden = true;
  const code = field({
    label: t("signup.code"), name: "verification_code", inputmode: "numeric", autocomplete: "one-time-code",
    hint: t("signup.code_hint"),
  });
  const codeStatus = h("p", { class: "hint", role: "status" });
  const sendCode = h("button", { type: "button", class: "btn secondary small", onclick: requestCode }, t("signup.code_send"));
  code.wrap.append(h("div", { class: "actions" }, sendCode), codeStatus);
  code.wrap.hidden = true;
  const password = field({
    label: t("signup.password"), name: "password", type: "password", required: true, autocomplete: "new-password",
    hint: t("signup.password_hint"),
  });
  const showPassword = h("input", {
    type: "checkbox", id: "show-password",
    onchange: (e) => { password.input.type = e.target.checked ? "text" : "password"; },
  });
  const groupHolder = h("div");
  let group = null;

  const fields = {
    full_name: fullName, phone, email, unit_id: unit, id_number: idNumber, birth_date: birthDate, job, password,
    entry_password: entryPassword, verification_code: code,
  };
  const details = h("details", {}, h("summary", {}, t("signup.more")), idNumber.wrap, birthDate.wrap, job.wrap);
  const message = h("div");
  const submit = h("button", { type: "submit", class: "btn block" }, t("signup.submit"));
  const form = h("form", { novalidate: true, onsubmit: onSubmit },
    fullName.wrap, phone.wrap, email.wrap, unit.wrap, groupHolder, password.wrap,
    h("label", { class: "check", for: "show-password" }, showPassword, t("signup.show_password")),
    details, entryPassword.wrap, code.wrap,
    message, h("div", { class: "actions" }, submit));

  replace(ctx.main,
    h("h1", {}, t("signup.title")),
    h("p", {}, t("signup.intro")),
    form,
    h("p", {}, t("signup.have_account"), " ",
      h("a", { href: `/dang-nhap${next ? `?next=${encodeURIComponent(next)}` : ""}` }, t("nav.signin"))));

  if (unitCode) unit.selectByCode(unitCode);
  // Contests that rank groups separately (issue 3) ask which group one enters.
  api(`/api/contests/${encodeURIComponent(lastContest() || DEFAULT_SLUG)}`, { auth: false }).then((contest) => {
    if (!ctx.isCurrent() || !Array.isArray(contest.groups) || !contest.groups.length) return;
    group = field({
      label: t("signup.group"), name: "group", required: true,
      control: h("select", { name: "group", required: true },
        h("option", { value: "" }, t("signup.group_pick")),
        contest.groups.map((g) => h("option", { value: g.code }, g.name || g.code))),
    });
    fields.group = group;
    replace(groupHolder, group.wrap);
  }).catch(() => {});

  async function onSubmit(event) {
    event.preventDefault();
    message.replaceChildren();
    const chosen = unit.value();
    const missing = [];
    for (const [name, f] of Object.entries({ full_name: fullName, phone, password })) {
      if (!f.input.value.trim()) missing.push([name, f]);
    }
    Object.values(fields).forEach((f) => f.setError(""));
    if (!chosen) missing.push(["unit_id", unit]);
    if (group && !group.input.value) missing.push(["group", group]);
    if (missing.length) {
      missing.forEach(([name, f]) => f.setError(name === "unit_id" ? t("signup.unit_missing") : t("form.required")));
      missing[0][1].input.focus();
      return;
    }
    const body = {
      full_name: fullName.input.value,
      phone: phone.input.value,
      email: email.input.value,
      id_number: idNumber.input.value,
      birth_date: birthDate.input.value,
      unit_id: chosen.id,
      password: password.input.value,
    };
    if (group) body.group = group.input.value;
    if (job.input.value.trim()) body.job = job.input.value;
    if (unitCode && chosen.code === unitCode) body.entry_code = unitCode;
    if (!entryPassword.wrap.hidden) body.entry_password = entryPassword.input.value;
    if (!code.wrap.hidden) body.verification_code = code.input.value;
    submit.disabled = true;
    submit.textContent = t("signup.sending");
    try {
      await api("/api/auth/register", { method: "POST", json: body, auth: false, headers: { "X-Device-Id": deviceId() } });
      await signIn(phone.input.value, password.input.value);
      ctx.navigate(next && next.startsWith("/") ? next : `/c/${encodeURIComponent(lastContest() || DEFAULT_SLUG)}`);
    } catch (error) {
      for (const e of error.errors) {
        if (e.field === "entry_password") entryPassword.wrap.hidden = false;
        if (e.field === "verification_code") code.wrap.hidden = false;
        if (["id_number", "birth_date", "job"].includes(e.field)) details.open = true;
      }
      const leftover = error.errors.length || error.problem.field ? showFieldErrors(error, fields) : [];
      message.replaceChildren(notice("bad", h("p", {}, problemText(error)),
        leftover.length ? h("ul", {}, leftover.map((m) => h("li", {}, m))) : null));
      submit.disabled = false;
      submit.textContent = t("signup.submit");
    }
  }
  async function requestCode() {
    codeStatus.textContent = t("signup.code_sending");
    try {
      await api("/api/auth/register/code", {
        method: "POST", json: { phone: phone.input.value, email: email.input.value }, auth: false,
      });
      codeStatus.textContent = t("signup.code_sent");
      code.input.focus();
    } catch (error) {
      const leftover = error.errors.length ? showFieldErrors(error, fields) : [];
      codeStatus.textContent = [problemText(error), ...leftover].join(" ");
    }
  }
  return null;
}

/** A random id this browser keeps, so organisers can spot many sign-ups from one device. */
function deviceId() {
  try {
    let id = localStorage.getItem("hoithi.device");
    if (!id) {
      id = (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`.replace(/\./g, ""));
      localStorage.setItem("hoithi.device", id);
    }
    return id;
  } catch {
    return "unknown-device";
  }
}
