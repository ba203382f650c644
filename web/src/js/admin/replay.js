// An attempt's audit replay: quiz draws the attempt's questions again from its stored seed
// and the round's settings, and says whether they are the ones the participant was shown
// (GET /api/admin/attempts/{id}/replay). The id is the one in the participant's result
// address (/ket-qua/<id>).
import { api } from "../api.js";
import { field, h, notice, replace } from "../dom.js";
import { fmtNumber, t } from "../i18n.js";
import { adminNav, showProblem } from "./common.js";

const letters = (list) => (list && list.length ? list.join(", ") : "—");

function report(found) {
  const submitted = found.questions.some((q) => q.chosen !== null);
  return [
    notice(found.matches ? "ok" : "bad", h("strong", { dataset: { testid: "replay-verdict" } },
      found.matches ? t("replay.matches") : t("replay.differs")), found.problem ? [" ", found.problem] : null),
    h("dl", { class: "facts" },
      h("dt", {}, t("replay.attempt_number")), h("dd", {}, fmtNumber(found.attempt_number)),
      h("dt", {}, t("replay.group")), h("dd", {}, found.group || "—"),
      h("dt", {}, t("replay.seed")), h("dd", {}, found.seed),
      h("dt", {}, t("replay.participant")), h("dd", {}, found.participant_id),
      h("dt", {}, t("replay.submitted")), h("dd", { dataset: { testid: "replay-submitted" } },
        submitted ? t("common.yes") : t("replay.not_submitted"))),
    h("div", { class: "table-wrap" }, h("table", { id: "replay-table" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "num" }, "#"), h("th", { scope: "col" }, t("replay.question")),
        h("th", { scope: "col" }, t("replay.options")), h("th", { scope: "col" }, t("replay.correct")),
        submitted ? h("th", { scope: "col" }, t("replay.chosen")) : null)),
      // The id's first 8 characters tell the questions apart; the whole id is in the tooltip.
      h("tbody", {}, found.questions.map((q, i) => h("tr", {}, h("td", { class: "num" }, fmtNumber(i + 1)),
        h("td", {}, h("code", { title: q.id }, q.id.slice(0, 8))), h("td", {}, letters(q.options)),
        h("td", {}, letters(q.correct)), submitted ? h("td", {}, letters(q.chosen)) : null))))),
  ];
}

export async function replay(ctx) {
  ctx.setTitle(t("replay.title"));
  const fields = {
    attempt_id: field({ label: t("replay.attempt_id"), name: "attempt_id", required: true, hint: t("replay.attempt_hint"),
      value: ctx.query.get("id") || "", attrs: { autocapitalize: "off", spellcheck: "false", autocomplete: "off" } }),
  };
  const result = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "submit", class: "btn" }, t("replay.check"));

  async function check(event) {
    if (event) event.preventDefault();
    const id = fields.attempt_id.input.value.trim();
    fields.attempt_id.setError("");
    if (!id) {
      fields.attempt_id.setError(t("form.required"));
      fields.attempt_id.input.focus();
      return;
    }
    history.replaceState(null, "", `${location.pathname}?id=${encodeURIComponent(id)}`);
    button.disabled = true;
    replace(result, h("p", { class: "meta" }, t("common.loading")));
    try {
      const found = await api(`/api/admin/attempts/${encodeURIComponent(id)}/replay`);
      if (ctx.isCurrent()) replace(result, report(found));
    } catch (error) {
      showProblem(error, fields, result);
    } finally {
      button.disabled = false;
    }
  }

  replace(ctx.main, adminNav("/quan-tri/luot-thi"), h("h1", {}, t("replay.title")), h("p", {}, t("replay.intro")),
    h("form", { class: "card", novalidate: true, onsubmit: check }, fields.attempt_id.wrap, h("div", { class: "actions" }, button)),
    result);
  if (fields.attempt_id.input.value) await check();
  return null;
}
