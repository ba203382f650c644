// Collective prizes: the participation rate (participants ÷ headcount) a unit must reach,
// by its size, to be ranked for a collective prize. Scoring keeps the rules per contest
// (GET/PUT /api/admin/contests/{id}/collective-rules); the ranges may not overlap.
import { api } from "../api.js";
import { h, notice, replace } from "../dom.js";
import { showFieldErrors } from "../forms.js";
import { t } from "../i18n.js";
import { adminNav, contestPageError, settingOrNull, showProblem } from "./common.js";
import { editableRows, percentFromRate, rateFromPercent } from "./rows.js";

const url = (contest) => `/api/admin/contests/${contest.id}/collective-rules`;

const asNumber = (text) => (text === "" ? null : Number(text.replace(",", ".")));

export async function collectiveRules(ctx, contest) {
  const base = `/quan-tri/c/${encodeURIComponent(contest.slug)}`;
  ctx.setTitle(`${t("collective.title")} — ${contest.title}`);
  let rules;
  try {
    rules = ((await settingOrNull(url(contest))) || { min_rates: null }).min_rates;
  } catch (error) {
    return contestPageError(ctx, contest, t("collective.title"), error);
  }
  const editor = editableRows({
    name: "min_rates", legend: t("collective.rules"), hint: t("collective.rules_hint"), addLabel: t("collective.add"),
    columns: [
      { name: "min_headcount", label: t("collective.min_headcount"), type: "number", attrs: { min: "0", step: "1", inputmode: "numeric" } },
      { name: "max_headcount", label: t("collective.max_headcount"), type: "number", hint: t("collective.max_hint"),
        attrs: { min: "0", step: "1", inputmode: "numeric" } },
      { name: "min_rate", label: t("collective.min_rate"), type: "number", attrs: { min: "0", max: "100", step: "0.1", inputmode: "decimal" } },
    ],
    rows: (rules || []).map((r) => ({ min_headcount: r.min_headcount, max_headcount: r.max_headcount ?? "", min_rate: percentFromRate(r.min_rate) })),
  });
  if (!rules || !rules.length) editor.addRow();
  const status = h("p", { class: "meta", dataset: { testid: "collective-status" } },
    rules === null ? t("collective.none_yet") : t("collective.stored"));
  const message = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "submit", class: "btn" }, t("common.save"));

  async function save(event) {
    event.preventDefault();
    message.replaceChildren();
    editor.clearErrors();
    const rows = editor.used();
    const fields = editor.fields();
    // What the browser can tell at once; ranges, overlaps and limits are the API's to judge.
    const missing = [];
    rows.forEach((row, i) => {
      const v = row.values();
      for (const name of ["min_headcount", "min_rate"]) {
        if (v[name] === "") missing.push([`min_rates.${i}.${name}`, t("form.required")]);
      }
      for (const [name, text] of Object.entries(v)) {
        if (text !== "" && !Number.isFinite(asNumber(text))) missing.push([`min_rates.${i}.${name}`, t("form.number")]);
      }
    });
    if (missing.length) {
      showFieldErrors({ errors: missing.map(([field, m]) => ({ field, message: m })), problem: {} }, fields);
      return;
    }
    const body = {
      min_rates: rows.map((row) => {
        const v = row.values();
        return { min_headcount: asNumber(v.min_headcount), max_headcount: asNumber(v.max_headcount), min_rate: rateFromPercent(v.min_rate) };
      }),
    };
    button.disabled = true;
    try {
      await api(url(contest), { method: "PUT", json: body });
      replace(status, t("collective.stored"));
      message.replaceChildren(notice("ok", t("common.saved")));
    } catch (error) {
      showProblem(error, fields, message);
    } finally {
      button.disabled = false;
    }
  }

  replace(ctx.main, adminNav(null, contest),
    h("h1", {}, t("collective.title")),
    h("p", {}, h("a", { href: base }, t("common.back"))),
    h("p", {}, t("collective.intro")),
    status,
    h("form", { class: "card", novalidate: true, onsubmit: save }, editor.wrap, message, h("div", { class: "actions" }, button)));
  return null;
}
