// The contest and round forms (create and edit), with every rules setting of the API.
import { field, h, nextId, replace } from "../dom.js";
import { t } from "../i18n.js";
import { DEFAULT_TIE_BREAK, TIE_BREAK, fromLocalInput, toLocalInput } from "./common.js";

/** Rows of small inputs with add/remove (prizes, groups). columns: [{name, label, type, attrs}]. */
function rowsEditor({ legend, columns, rows, addLabel, name }) {
  const body = h("div");
  const errorBox = h("p", { class: "error", id: nextId(`${name}-error`) });
  const addRow = (values = {}) => {
    const inputs = columns.map((c) => {
      const id = nextId(`${name}-${c.name}`);
      return { c, id, input: h("input", { id, type: c.type || "text", value: values[c.name] ?? "", ...(c.attrs || {}) }) };
    });
    const row = h("div", { class: "row", dataset: { row: name } },
      inputs.map(({ c, id, input }) => h("div", {}, h("label", { for: id }, c.label), input)),
      h("div", { class: "end" }, h("button", {
        type: "button", class: "btn secondary small", "aria-label": t("form.remove_row"),
        onclick: () => row.remove(),
      }, t("form.remove"))));
    row.values = () => Object.fromEntries(inputs.map(({ c, input }) => [c.name, input.value.trim()]));
    body.append(row);
    return row;
  };
  (rows || []).forEach(addRow);
  const wrap = h("fieldset", { dataset: { field: name } }, h("legend", {}, legend), body,
    h("button", { type: "button", class: "btn secondary small", onclick: () => addRow().querySelector("input").focus() }, addLabel),
    errorBox);
  return {
    wrap,
    values: () => [...body.children].map((row) => row.values()).filter((v) => Object.values(v).some(Boolean)),
    setError(message) { errorBox.textContent = message || ""; },
    input: null,
  };
}

/** The ordered tie-break criteria: tick the ones used, move them up and down. */
function tieBreakEditor(initial) {
  const chosen = initial && initial.length ? initial : DEFAULT_TIE_BREAK;
  const order = [...chosen, ...TIE_BREAK.filter((c) => !chosen.includes(c))];
  const list = h("ol", { class: "plain" });
  const error = h("p", { class: "error" });
  const render = () => {
    [...list.children].forEach((li, i) => {
      li.querySelector(".up").disabled = i === 0;
      li.querySelector(".down").disabled = i === list.children.length - 1;
    });
  };
  for (const criterion of order) {
    const id = nextId(`tb-${criterion}`);
    const label = t(`tiebreak.${criterion}`);
    const li = h("li", { class: "row middle", dataset: { criterion } },
      h("label", { class: "check wide", for: id },
        h("input", { type: "checkbox", id, checked: chosen.includes(criterion) }), label),
      h("span", { class: "fixed" },
        h("button", {
          type: "button", class: "btn secondary small up", "aria-label": t("tiebreak.up", { name: label }),
          onclick: () => { if (li.previousElementSibling) list.insertBefore(li, li.previousElementSibling); render(); li.querySelector(".up").focus(); },
        }, "↑"), " ",
        h("button", {
          type: "button", class: "btn secondary small down", "aria-label": t("tiebreak.down", { name: label }),
          onclick: () => { if (li.nextElementSibling) list.insertBefore(li.nextElementSibling, li); render(); li.querySelector(".down").focus(); },
        }, "↓")));
    list.append(li);
  }
  render();
  return {
    wrap: h("fieldset", { dataset: { field: "tie_break" } }, h("legend", {}, t("contestform.tie_break")),
      h("p", { class: "hint" }, t("contestform.tie_break_hint")), list, error),
    values: () => [...list.children].filter((li) => li.querySelector("input").checked).map((li) => li.dataset.criterion),
    setError(message) { error.textContent = message || ""; },
    input: null,
  };
}

/** Contest settings. `contest` null: a new contest (with its slug). Returns {form, fields, payload()}. */
export function contestForm(contest, { submitLabel, onSubmit }) {
  const fields = {};
  if (!contest) {
    fields.slug = field({
      label: t("contestform.slug"), name: "slug", required: true, hint: t("contestform.slug_hint"),
      attrs: { pattern: "[a-z0-9-]{2,60}", autocapitalize: "off", spellcheck: "false" },
    });
  }
  fields.title = field({ label: t("contestform.title"), name: "title", required: true, value: contest ? contest.title : "" });
  fields.rules = field({ label: t("contestform.rules"), name: "rules", type: "textarea", hint: t("contestform.rules_hint") });
  fields.rules.input.value = contest ? contest.rules || "" : "";
  fields.tie_break = tieBreakEditor(contest && contest.tie_break);
  const scopeId = nextId("scope");
  fields.prize_scope = field({
    label: t("contestform.prize_scope"), name: "prize_scope",
    control: h("select", { id: scopeId },
      h("option", { value: "round", selected: !contest || contest.prize_scope !== "contest" }, t("contestform.scope_round")),
      h("option", { value: "contest", selected: contest && contest.prize_scope === "contest" }, t("contestform.scope_contest"))),
  });
  const allId = nextId("all");
  const requireAll = h("input", { type: "checkbox", id: allId, checked: Boolean(contest && contest.require_all_answered) });
  fields.require_all_answered = { wrap: h("label", { class: "check", for: allId }, requireAll, t("contestform.require_all")),
    setError() {}, input: requireAll };
  fields.groups = rowsEditor({
    legend: t("contestform.groups"), name: "groups", addLabel: t("contestform.add_group"),
    columns: [
      { name: "code", label: t("contestform.group_code"), attrs: { autocapitalize: "off" } },
      { name: "name", label: t("contestform.group_name") },
      { name: "topics", label: t("contestform.group_topics") },
    ],
    rows: ((contest && contest.groups) || []).map((g) => ({ ...g, topics: (g.topics || []).join(", ") })),
  });

  const payload = () => {
    const body = {
      title: fields.title.input.value.trim(),
      rules: fields.rules.input.value,
      tie_break: fields.tie_break.values(),
      prize_scope: fields.prize_scope.input.value,
    };
    if (!contest) body.slug = fields.slug.input.value.trim();
    const groups = fields.groups.values().map((g) => ({
      code: g.code, name: g.name, topics: g.topics ? g.topics.split(",").map((x) => x.trim()).filter(Boolean) : [],
    }));
    // Sent when set (or when editing a contest that has them), so an API without these fields still takes the rest.
    if (groups.length || (contest && contest.groups && contest.groups.length)) body.groups = groups;
    if (requireAll.checked || (contest && "require_all_answered" in contest)) body.require_all_answered = requireAll.checked;
    return body;
  };

  const message = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "submit", class: "btn" }, submitLabel);
  const form = h("form", {
    novalidate: true,
    onsubmit: async (event) => {
      event.preventDefault();
      button.disabled = true;
      try {
        await onSubmit(payload(), { fields, message });
      } finally {
        button.disabled = false;
      }
    },
  }, Object.values(fields).map((f) => f.wrap), message, h("div", { class: "actions" }, button));
  return { form, fields, message };
}

/** Round rules. `round` null: a new round (`nextNumber` proposed). */
export function roundForm(round, { nextNumber = 1, submitLabel, onSubmit }) {
  const f = {};
  const r = round || {};
  f.number = field({ label: t("roundform.number"), name: "number", type: "number", required: true, value: r.number ?? nextNumber,
    attrs: { min: "1", step: "1" } });
  f.title = field({ label: t("roundform.title"), name: "title", required: true, value: r.title || "" });
  f.opens_at = field({ label: t("roundform.opens_at"), name: "opens_at", type: "datetime-local", required: true,
    value: toLocalInput(r.opens_at), hint: t("common.vn_time") });
  f.closes_at = field({ label: t("roundform.closes_at"), name: "closes_at", type: "datetime-local", required: true,
    value: toLocalInput(r.closes_at), hint: t("common.vn_time") });
  f.question_count = field({ label: t("roundform.question_count"), name: "question_count", type: "number", required: true,
    value: r.question_count ?? 20, attrs: { min: "1", max: "100" } });
  f.time_limit_s = field({ label: t("roundform.time_limit"), name: "time_limit_s", type: "number", required: true,
    value: r.time_limit_s ? Math.round(r.time_limit_s / 60) : 15, attrs: { min: "1", max: "60" }, hint: t("roundform.minutes") });
  f.grace_s = field({ label: t("roundform.grace"), name: "grace_s", type: "number", value: r.grace_s ?? 30,
    attrs: { min: "0", max: "300" }, hint: t("roundform.grace_hint") });
  f.max_attempts = field({ label: t("roundform.max_attempts"), name: "max_attempts", type: "number",
    value: r.max_attempts ?? "", attrs: { min: "1" }, hint: t("roundform.max_attempts_hint") });
  f.freeze_minutes = field({ label: t("roundform.freeze"), name: "freeze_minutes", type: "number",
    value: r.freeze_minutes ?? 0, attrs: { min: "0", max: "1440" }, hint: t("roundform.freeze_hint") });
  f["prediction.text"] = field({ label: t("roundform.prediction"), name: "prediction_text",
    value: (r.prediction && r.prediction.text) || "", hint: t("roundform.prediction_hint") });
  const targetId = nextId("target");
  f["prediction.target"] = field({
    label: t("roundform.prediction_target"), name: "prediction_target",
    control: h("select", { id: targetId },
      h("option", { value: "participants", selected: !r.prediction || r.prediction.target !== "all_correct" }, t("roundform.target_participants")),
      h("option", { value: "all_correct", selected: r.prediction && r.prediction.target === "all_correct" }, t("roundform.target_all_correct"))),
  });
  f.prizes = rowsEditor({
    legend: t("roundform.prizes"), name: "prizes", addLabel: t("roundform.add_prize"),
    columns: [
      { name: "name", label: t("roundform.prize_name") },
      { name: "count", label: t("roundform.prize_count"), type: "number", attrs: { min: "1", inputmode: "numeric" } },
    ],
    rows: r.prizes && r.prizes.length ? r.prizes : (round ? [] : [
      { name: t("roundform.prize_first"), count: 1 }, { name: t("roundform.prize_second"), count: 2 },
      { name: t("roundform.prize_third"), count: 3 }]),
  });

  const num = (input) => (input.value.trim() === "" ? null : Number(input.value));
  const payload = () => {
    const body = {
      number: num(f.number.input),
      title: f.title.input.value.trim(),
      opens_at: fromLocalInput(f.opens_at.input.value),
      closes_at: fromLocalInput(f.closes_at.input.value),
      question_count: num(f.question_count.input),
      time_limit_s: num(f.time_limit_s.input) === null ? null : Math.round(num(f.time_limit_s.input) * 60),
      grace_s: num(f.grace_s.input) ?? 30,
      max_attempts: num(f.max_attempts.input),
      prediction: f["prediction.text"].input.value.trim()
        ? { text: f["prediction.text"].input.value.trim(), target: f["prediction.target"].input.value } : null,
      prizes: f.prizes.values().map((p) => ({ name: p.name, count: Number(p.count) })),
    };
    const freeze = num(f.freeze_minutes.input) || 0;
    if (freeze || (round && "freeze_minutes" in round)) body.freeze_minutes = freeze;
    return body;
  };
  const initial = round ? payload() : null;
  /** For an edit, only what changed (an open round accepts only a later close). */
  const changes = () => {
    const now = payload();
    if (!initial) return now;
    return Object.fromEntries(Object.entries(now).filter(([k, v]) => JSON.stringify(v) !== JSON.stringify(initial[k])));
  };

  const message = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "submit", class: "btn" }, submitLabel);
  const form = h("form", {
    novalidate: true,
    onsubmit: async (event) => {
      event.preventDefault();
      const missing = ["number", "title", "opens_at", "closes_at", "question_count", "time_limit_s"]
        .filter((k) => !f[k].input.value.trim());
      Object.values(f).forEach((x) => x.setError(""));
      if (missing.length) {
        missing.forEach((k) => f[k].setError(t("form.required")));
        f[missing[0]].input.focus();
        return;
      }
      button.disabled = true;
      try {
        await onSubmit(changes(), { fields: f, message });
      } finally {
        button.disabled = false;
      }
    },
  },
  h("div", { class: "row" }, f.number.wrap, f.title.wrap),
  h("div", { class: "row" }, f.opens_at.wrap, f.closes_at.wrap),
  h("div", { class: "row" }, f.question_count.wrap, f.time_limit_s.wrap, f.grace_s.wrap),
  h("div", { class: "row" }, f.max_attempts.wrap, f.freeze_minutes.wrap),
  h("fieldset", {}, h("legend", {}, t("roundform.prediction_legend")), f["prediction.text"].wrap, f["prediction.target"].wrap),
  f.prizes.wrap, message, h("div", { class: "actions" }, button));
  replace(message);
  return { form, fields: f, message };
}
