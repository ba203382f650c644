// Participation reminders: an email and an SMS to the coordinators of every unit whose
// participation rate is below a target, now (POST /api/admin/contests/{id}/nudges) or
// every day at set times, Vietnam's clock (PUT /api/admin/contests/{id}/nudge-schedule).
import { api } from "../api.js";
import { field, h, nextId, notice, replace } from "../dom.js";
import { fmtNumber, t } from "../i18n.js";
import { adminNav, contestPageError, settingOrNull, showProblem } from "./common.js";
import { editableRows, percentFromRate, rateFromPercent } from "./rows.js";

const DEFAULT_TARGET = 0.8;

// crypto.randomUUID exists only on https (or localhost); getRandomValues everywhere.
const newIdempotencyKey = () => Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");

function roundSelect(contest, { label, name, anyLabel, chosen }) {
  const id = nextId(name);
  return field({
    label, name,
    control: h("select", { id },
      h("option", { value: "" }, anyLabel),
      (contest.rounds || []).map((r) => h("option", { value: r.id, selected: r.id === chosen }, t("round.name", r)))),
  });
}

function targetField(name, rate) {
  return field({
    label: t("nudge.target"), name, type: "number", required: true, hint: t("nudge.target_hint"),
    value: percentFromRate(rate), attrs: { min: "0", max: "100", step: "0.1", inputmode: "decimal" },
  });
}

function scheduleForm(contest, stored) {
  const schedule = stored || { enabled: true, target_rate: DEFAULT_TARGET, times_local: ["08:00"], round_id: null };
  const enabledId = nextId("enabled");
  const enabled = h("input", { type: "checkbox", id: enabledId, name: "enabled", checked: schedule.enabled });
  const fields = {
    enabled: { wrap: h("label", { class: "check", for: enabledId }, enabled, t("nudge.enabled")), input: enabled, setError() {} },
    target_rate: targetField("target_rate", schedule.target_rate),
    round_id: roundSelect(contest, { label: t("nudge.schedule_round"), name: "round_id", anyLabel: t("nudge.round_open"), chosen: schedule.round_id }),
  };
  const times = editableRows({
    name: "times_local", legend: t("nudge.times"), hint: t("nudge.times_hint"), addLabel: t("nudge.add_time"),
    columns: [{ name: "time", label: t("nudge.time"), type: "time", attrs: { step: "60" } }],
    rows: schedule.times_local.map((time) => ({ time })),
  });
  const status = h("p", { class: "meta", dataset: { testid: "schedule-status" } },
    stored === null ? t("nudge.no_schedule") : stored.enabled ? t("nudge.schedule_on") : t("nudge.schedule_off"));
  const message = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "submit", class: "btn" }, t("common.save"));

  async function save(event) {
    event.preventDefault();
    message.replaceChildren();
    times.clearErrors();
    const targets = { ...fields, ...times.fields() };
    const body = {
      enabled: enabled.checked,
      target_rate: rateFromPercent(fields.target_rate.input.value),
      times_local: times.used().map((row) => row.values().time),
      round_id: fields.round_id.input.value || null,
    };
    button.disabled = true;
    try {
      const saved = await api(`/api/admin/contests/${contest.id}/nudge-schedule`, { method: "PUT", json: body });
      Object.values(targets).forEach((f) => f.setError(""));
      replace(status, saved.enabled ? t("nudge.schedule_on") : t("nudge.schedule_off"));
      message.replaceChildren(notice("ok", t("common.saved")));
    } catch (error) {
      // "times_local.2" names the third time shown; the API numbers the times it was sent.
      showProblem(error, targets, message);
    } finally {
      button.disabled = false;
    }
  }

  return h("section", { "aria-labelledby": "schedule-h" }, h("h2", { id: "schedule-h" }, t("nudge.schedule")), status,
    h("form", { class: "card", novalidate: true, onsubmit: save },
      fields.enabled.wrap, fields.target_rate.wrap, times.wrap, fields.round_id.wrap, message,
      h("div", { class: "actions" }, button)));
}

function sendNowForm(contest) {
  const open = (contest.rounds || []).find((r) => r.status === "open");
  const fields = {
    target_rate: targetField("target_rate", DEFAULT_TARGET),
    round_id: roundSelect(contest, { label: t("nudge.now_round"), name: "round_id", anyLabel: t("nudge.whole_contest"), chosen: open && open.id }),
  };
  // One key per intended reminder: a double tap or a retry after a lost answer sends it once.
  let idempotencyKey = newIdempotencyKey();
  const message = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "submit", class: "btn" }, t("nudge.send"));

  async function send(event) {
    event.preventDefault();
    message.replaceChildren();
    if (!window.confirm(t("nudge.send_confirm"))) return;
    const body = { target_rate: rateFromPercent(fields.target_rate.input.value), round_id: fields.round_id.input.value || null };
    button.disabled = true;
    try {
      const sent = await api(`/api/admin/contests/${contest.id}/nudges`, {
        method: "POST", json: body, headers: { "Idempotency-Key": idempotencyKey },
      });
      idempotencyKey = newIdempotencyKey();
      Object.values(fields).forEach((f) => f.setError(""));
      message.replaceChildren(notice("ok", sent.units ? t("nudge.sent", { n: fmtNumber(sent.units) }) : t("nudge.none_below")));
    } catch (error) {
      showProblem(error, fields, message);
    } finally {
      button.disabled = false;
    }
  }

  return h("section", { "aria-labelledby": "now-h" }, h("h2", { id: "now-h" }, t("nudge.now")),
    h("form", { class: "card", novalidate: true, onsubmit: send },
      fields.target_rate.wrap, fields.round_id.wrap, message, h("div", { class: "actions" }, button)));
}

export async function nudges(ctx, contest) {
  const base = `/quan-tri/c/${encodeURIComponent(contest.slug)}`;
  ctx.setTitle(`${t("nudge.title")} — ${contest.title}`);
  let stored;
  try {
    stored = await settingOrNull(`/api/admin/contests/${contest.id}/nudge-schedule`);
  } catch (error) {
    return contestPageError(ctx, contest, t("nudge.title"), error);
  }
  replace(ctx.main, adminNav(null, contest),
    h("h1", {}, t("nudge.title")),
    h("p", {}, h("a", { href: base }, t("common.back"))),
    h("p", {}, t("nudge.intro")),
    scheduleForm(contest, stored),
    sendNowForm(contest));
  return null;
}
