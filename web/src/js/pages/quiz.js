// The quiz. Three promises to the participant:
// - the timer is the server's: it counts down to the attempt's `deadline_at` on the
//   server's clock (estimated from the answers' Date headers and the attempt's own start),
//   never on the phone's clock alone;
// - nothing typed is lost: every change goes to localStorage at once and to the server
//   (autosave, debounced); a reload or a dropped connection resumes the same attempt;
// - a submit is kept in the browser until the server has answered 202, and retried with
//   growing pauses (honouring Retry-After) while the server is busy or unreachable.
import { api, isStaff, observeServerTime, serverNow, session, syncClock } from "../api.js";
import { announce, debounce, field, h, notice, replace } from "../dom.js";
import { fmtClock, fmtNumber, fmtTime, problemText, t } from "../i18n.js";
import {
  draftOf, dropDraft, dropPending, pendingForRound, remember, roundInfo, saveDraft, savePending, saveRoundInfo,
} from "../store.js";

const LETTERS = "ABCDEF";
const AUTOSAVE_DELAY_MS = 700;
const BACKOFF_S = [1, 2, 4, 8, 16, 30];
const WARN_AT_S = [300, 60];

/** The pause before retry number `tries` (1-based): 1, 2, 4, 8… s capped at 30, at least Retry-After, ±20 % jitter. */
export function retryDelayMs(tries, retryAfterS) {
  const base = BACKOFF_S[Math.min(tries - 1, BACKOFF_S.length - 1)];
  const jittered = base * (0.8 + Math.random() * 0.4);
  return Math.round(Math.max(jittered, retryAfterS || 0) * 1000);
}

/** The round's titles and rules (time limit, all-answered rule) as the contest page gave them, else asked for. */
async function findRound(roundId) {
  const known = roundInfo(roundId);
  if (known && known.time_limit_s !== undefined) return known;
  try {
    let slug = known && known.contest_slug;
    if (!slug) {
      const contests = await api("/api/contests", { auth: false });
      const owner = contests.find((c) => (c.rounds || []).some((r) => r.id === roundId));
      slug = owner && owner.slug;
    }
    if (slug) {
      const contest = await api(`/api/contests/${encodeURIComponent(slug)}`, { auth: false });
      const r = (contest.rounds || []).find((x) => x.id === roundId);
      if (r) {
        const info = {
          contest_slug: contest.slug, contest_title: contest.title, contest_id: contest.id, number: r.number,
          title: r.title, closes_at: r.closes_at, status: r.status, time_limit_s: r.time_limit_s || null,
          max_attempts: "max_attempts" in r ? r.max_attempts : undefined,
          require_all_answered: Boolean(contest.require_all_answered || r.require_all_answered),
        };
        saveRoundInfo(roundId, info);
        return info;
      }
    }
  } catch {
    // the quiz works without the titles
  }
  return known || {};
}

/** What the participant chose, without empty questions (the API wants only answered ones). */
function cleanAnswers(answers) {
  const out = {};
  for (const [qid, ids] of Object.entries(answers)) if (ids && ids.length) out[qid] = [...ids].sort();
  return out;
}

export async function render(ctx) {
  const roundId = ctx.params.roundId;
  const who = session();
  if (!who) {
    ctx.navigate(`/dang-nhap?next=${encodeURIComponent(`/thi/${roundId}`)}`, { replace: true });
    return null;
  }
  ctx.setTitle(t("quiz.title"));
  if (isStaff(who)) {
    replace(ctx.main, h("h1", {}, t("quiz.title")), notice("warn", t("quiz.staff")));
    return null;
  }
  replace(ctx.main, h("p", { class: "loading", role: "status" }, t("quiz.starting")));
  // The titles and rules load alongside the attempt, not before it (slow connections).
  const infoLoading = findRound(roundId);
  const stops = [];
  const cleanup = () => stops.forEach((stop) => stop());

  // A submit the server never acknowledged comes first: starting again could open a new attempt.
  const pending = pendingForRound(roundId, who.id);
  const attemptLoading = pending ? null : api(`/api/rounds/${roundId}/attempts`, { method: "POST" }).then(
    (attempt) => ({ attempt }), (error) => ({ error }));
  const info = await infoLoading;
  if (!ctx.isCurrent()) return null;
  const heading = h("h1", {}, info.contest_title || t("quiz.title"));
  const subtitle = info.number ? h("p", { class: "meta" }, t("round.name", info)) : null;

  if (pending) {
    const status = h("div", { "aria-live": "polite" });
    replace(ctx.main, heading, subtitle, status);
    stops.push(submitLoop({
      ctx, who, roundId, info, attemptId: pending.attemptId,
      payload: { answers: pending.answers, prediction: pending.prediction }, status,
    }));
    return cleanup;
  }

  replace(ctx.main, heading, subtitle, h("p", { class: "loading", role: "status" }, t("quiz.starting")));
  const { attempt, error: startError } = await attemptLoading;
  if (!ctx.isCurrent()) return null;
  if (startError) {
    renderStartError(ctx, startError, heading, subtitle, roundId, info);
    return null;
  }
  if (attempt.$http && attempt.$http.status === 201 && info.time_limit_s) {
    // A new attempt starts at the gateway's arrival stamp, between our send and receive.
    const started = Date.parse(attempt.deadline_at) - info.time_limit_s * 1000;
    observeServerTime(started, started, attempt.$http.sent, attempt.$http.received);
  }

  const attemptId = attempt.attempt_id;
  const deadline = Date.parse(attempt.deadline_at);
  const draft = draftOf(attemptId);
  // The browser's copy is written on every change, so it is never older than the server's.
  const answers = { ...(attempt.answers || {}), ...((draft && draft.answers) || {}) };
  const serverHasAll = JSON.stringify(cleanAnswers(attempt.answers || {})) === JSON.stringify(cleanAnswers(answers));
  let prediction = draft && draft.prediction !== undefined && draft.prediction !== null ? String(draft.prediction) : "";
  let finished = false;
  const total = attempt.questions.length;

  // --- the top bar: timer, progress, save state ----------------------------------------
  const timer = h("span", { class: "timer", role: "timer", "aria-label": t("quiz.time_left") });
  const progress = h("span", { class: "meta" });
  const saveState = h("span", { class: "savestate", role: "status" });
  const bar = h("div", { class: "timerbar" },
    h("span", {}, h("span", { class: "visually-hidden" }, t("quiz.time_left"), " "), timer), progress, saveState);

  const answeredCount = () => attempt.questions.filter((q) => (answers[q.id] || []).length).length;
  const showProgress = () => { progress.textContent = t("quiz.progress", { n: answeredCount(), total }); };

  const keepLocal = () => saveDraft(attemptId, { round_id: roundId, answers, prediction });

  // --- autosave ---------------------------------------------------------------------------
  let saving = false;
  let dirty = false;
  let failures = 0;
  let retryTimer = null;
  const setSaveState = (kind, text) => {
    saveState.className = `savestate ${kind === "bad" ? "bad" : ""}`.trim();
    saveState.textContent = text;
  };
  async function saveNow() {
    if (finished) return;
    if (saving) {
      dirty = true;
      return;
    }
    saving = true;
    dirty = false;
    clearTimeout(retryTimer);
    setSaveState("", t("quiz.saving"));
    try {
      const saved = await api(`/api/attempts/${attemptId}/answers`, { method: "PUT", json: { answers: cleanAnswers(answers) } });
      failures = 0;
      if (!finished) setSaveState("", t("quiz.saved_at", { time: fmtTime(saved.saved_at || serverNow()) }));
    } catch (error) {
      if (finished) return;
      if (error.code === "deadline_passed" || error.code === "already_submitted") {
        setSaveState("bad", problemText(error));
      } else if (error.status === 401) {
        setSaveState("bad", t("quiz.save_auth"));
      } else if (error.status === 422) {
        setSaveState("bad", problemText(error));
      } else {
        failures += 1;
        setSaveState("bad", t("quiz.save_retry"));
        retryTimer = setTimeout(saveNow, retryDelayMs(failures, error.retryAfterS));
      }
    } finally {
      saving = false;
      if (dirty && !finished) saveNow();
    }
  }
  const autosave = debounce(saveNow, AUTOSAVE_DELAY_MS);
  stops.push(() => {
    autosave.cancel();
    clearTimeout(retryTimer);
  });

  // --- the questions --------------------------------------------------------------------
  const questionEls = attempt.questions.map((q, index) => {
    const kindId = `kind-${q.id}`;
    const chosen = new Set(answers[q.id] || []);
    const inputs = q.options.map((o, i) => h("label", { class: "option" },
      h("input", {
        type: q.multiple ? "checkbox" : "radio", name: `q-${q.id}`, value: o.id, checked: chosen.has(o.id),
        onchange: () => {
          answers[q.id] = [...fieldset.querySelectorAll("input:checked")].map((x) => x.value);
          fieldset.classList.remove("unanswered-flag");
          keepLocal();
          showProgress();
          autosave();
        },
      }),
      h("span", {}, h("span", { class: "letter" }, `${LETTERS[i]}. `), o.text)));
    const fieldset = h("fieldset", {
      class: "question", id: `q-${q.id}`, "aria-describedby": kindId, dataset: { questionId: q.id, multiple: q.multiple ? "1" : "0" },
    },
    h("legend", {}, t("quiz.question_n", { n: index + 1, total }), " ", q.text),
    h("span", { class: `kind ${q.multiple ? "multiple" : "single"}`, id: kindId },
      q.multiple ? t("quiz.kind_multiple") : t("quiz.kind_single")),
    inputs);
    return fieldset;
  });

  let predictionField = null;
  if (attempt.prediction) {
    predictionField = field({
      label: attempt.prediction.text, name: "prediction", type: "number", required: true, inputmode: "numeric",
      value: prediction, hint: t("quiz.prediction_hint"), attrs: { min: "0", step: "1" },
    });
    predictionField.input.addEventListener("input", () => {
      prediction = predictionField.input.value;
      predictionField.setError("");
      keepLocal();
    });
  }

  const submitMessage = h("div", { "aria-live": "polite" });
  const submitButton = h("button", { type: "submit", class: "btn block" }, t("quiz.submit"));
  const form = h("form", { novalidate: true, onsubmit: (event) => { event.preventDefault(); askToSubmit(); } },
    questionEls,
    predictionField ? h("fieldset", { class: "question prediction" }, h("legend", {}, t("quiz.prediction")), predictionField.wrap) : null,
    submitMessage, h("div", { class: "actions" }, submitButton));

  // --- confirmation ---------------------------------------------------------------------
  const dialogTitle = h("h2", { id: "confirm-title" }, t("quiz.confirm_title"));
  const dialogBody = h("div");
  const confirmButton = h("button", { type: "button", class: "btn", onclick: () => { dialog.close(); startSubmit(false); } },
    t("quiz.confirm_yes"));
  const dialog = h("dialog", { "aria-labelledby": "confirm-title" }, dialogTitle, dialogBody, h("div", { class: "actions" },
    confirmButton, h("button", { type: "button", class: "btn secondary", onclick: () => dialog.close() }, t("quiz.confirm_no"))));

  function askToSubmit() {
    submitMessage.replaceChildren();
    const unanswered = attempt.questions.map((q, i) => ((answers[q.id] || []).length ? null : i + 1)).filter(Boolean);
    if (predictionField && !/^\d+$/.test(predictionField.input.value.trim())) {
      predictionField.setError(t("quiz.prediction_missing"));
      predictionField.input.focus();
      return;
    }
    if (unanswered.length && info.require_all_answered) {
      unanswered.forEach((n) => questionEls[n - 1].classList.add("unanswered-flag"));
      submitMessage.replaceChildren(notice("bad", t("quiz.all_required", { list: unanswered.join(", ") })));
      questionEls[unanswered[0] - 1].querySelector("input").focus();
      return;
    }
    replace(dialogBody,
      h("p", {}, t("quiz.confirm_answered", { n: total - unanswered.length, total })),
      unanswered.length ? h("p", { class: "notice warn" }, t("quiz.confirm_unanswered", { list: unanswered.join(", ") })) : null,
      predictionField ? h("p", {}, t("quiz.confirm_prediction", { value: fmtNumber(Number(predictionField.input.value)) })) : null,
      h("p", {}, t("quiz.confirm_final")));
    dialog.showModal();
    confirmButton.focus();
  }

  function startSubmit(automatic) {
    if (finished) return;
    finished = true;
    autosave.cancel();
    clearTimeout(retryTimer);
    if (dialog.open) dialog.close();
    let value = predictionField ? predictionField.input.value.trim() : "";
    // Out of time with no prediction: 0 keeps the entry valid rather than losing it.
    if (predictionField && !/^\d+$/.test(value)) value = "0";
    const payload = { answers: cleanAnswers(answers), prediction: predictionField ? Number(value) : null };
    savePending(attemptId, {
      round_id: roundId, participant_id: who.id, answers: payload.answers, prediction: payload.prediction,
      attempt_number: attempt.attempt_number, queued_at: new Date().toISOString(),
    });
    form.querySelectorAll("input, button").forEach((el) => { el.disabled = true; });
    const status = h("div", { "aria-live": "polite" });
    replace(submitMessage, automatic ? notice("warn", t("quiz.time_up")) : null, status);
    stops.push(submitLoop({ ctx, who, roundId, info, attemptId, payload, status, attempt }));
    status.scrollIntoView({ block: "center" });
  }

  // --- the timer ------------------------------------------------------------------------
  const warned = new Set();
  const tick = () => {
    const left = deadline - serverNow();
    timer.textContent = fmtClock(left);
    timer.classList.toggle("low", left < 60_000);
    for (const s of WARN_AT_S) {
      if (left <= s * 1000 && left > (s - 5) * 1000 && !warned.has(s)) {
        warned.add(s);
        announce(t("quiz.minutes_left", { n: s / 60 }));
      }
    }
    if (left <= 0 && !finished) startSubmit(true);
  };
  const interval = setInterval(tick, 250);
  stops.push(() => clearInterval(interval));
  const onVisible = () => {
    if (document.visibilityState === "visible") syncClock().then(tick);
  };
  document.addEventListener("visibilitychange", onVisible);
  stops.push(() => document.removeEventListener("visibilitychange", onVisible));

  replace(ctx.main,
    heading, subtitle,
    attempt.$http && attempt.$http.status === 200 ? notice("", t("quiz.resumed")) : null,
    bar,
    h("p", { class: "meta" }, t("quiz.intro", { total })),
    form, dialog);
  showProgress();
  tick();
  if (draft) setSaveState("", t("quiz.restored"));
  // What only this browser had (typed while offline, or just before a reload) goes to the server now.
  if (!serverHasAll) saveNow();
  return cleanup;
}

function renderStartError(ctx, error, heading, subtitle, roundId, info) {
  const back = info.contest_slug ? `/c/${encodeURIComponent(info.contest_slug)}` : "/";
  if (error.status === 401) {
    ctx.navigate(`/dang-nhap?expired=1&next=${encodeURIComponent(`/thi/${roundId}`)}`, { replace: true });
    return;
  }
  let text = problemText(error);
  if (error.code === "round_not_open") {
    text = t(`quiz.round_${error.problem.round_status || "closed"}`);
  }
  replace(ctx.main, heading, subtitle, notice(error.transient ? "warn" : "bad", text),
    h("div", { class: "actions" },
      error.transient
        ? h("button", { type: "button", class: "btn", onclick: () => ctx.navigate(`/thi/${roundId}`, { replace: true }) },
          t("common.retry"))
        : null,
      error.code === "attempts_exhausted" ? h("a", { class: "btn", href: "/lich-su" }, t("nav.history")) : null,
      h("a", { class: "btn secondary", href: back }, t("quiz.back_to_contest"))));
}

/**
 * Sends the kept submit until the server has it. Returns a stop function (leaving the
 * page stops the loop; the submit stays in localStorage and resumes on the next visit).
 */
function submitLoop({ ctx, who, roundId, info, attemptId, payload, status, attempt }) {
  let stopped = false;
  let wake = null;
  let tries = 0;
  const sleep = (ms) => new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    wake = () => {
      clearTimeout(timer);
      resolve();
    };
  });
  const onOnline = () => wake && wake();
  window.addEventListener("online", onOnline);

  const done = () => {
    dropPending(attemptId);
    dropDraft(attemptId);
    remember(who.id, {
      attempt_id: attemptId, round_id: roundId, contest_slug: info.contest_slug || null,
      contest_title: info.contest_title || null, round_title: info.title || null, round_number: info.number || null,
      attempt_number: attempt ? attempt.attempt_number : null, submitted_at: new Date(serverNow()).toISOString(),
    });
    announce(t("quiz.sent"));
    if (ctx.isCurrent()) ctx.navigate(`/ket-qua/${attemptId}`);
  };

  const stopWith = (kind, ...content) => {
    replace(status, notice(kind, ...content));
  };

  (async () => {
    while (!stopped) {
      tries += 1;
      replace(status, notice("", h("p", {}, tries === 1 ? t("quiz.sending") : t("quiz.sending_again", { n: tries })),
        h("p", { class: "meta" }, t("quiz.kept_safe"))));
      try {
        await api(`/api/attempts/${attemptId}/submit`, { method: "POST", json: payload });
        if (!stopped) done();
        return;
      } catch (error) {
        if (stopped) return;
        if (error.code === "already_submitted") {
          // An earlier try reached the server though its answer did not reach us.
          done();
          return;
        }
        if (error.code === "deadline_passed" || error.status === 404) {
          dropPending(attemptId);
          dropDraft(attemptId);
          stopWith("bad", h("p", {}, problemText(error)),
            h("a", { href: info.contest_slug ? `/c/${encodeURIComponent(info.contest_slug)}` : "/" }, t("quiz.back_to_contest")));
          return;
        }
        if (error.status === 401) {
          stopWith("bad", h("p", {}, t("quiz.submit_auth")),
            h("a", { class: "btn", href: `/dang-nhap?expired=1&next=${encodeURIComponent(`/thi/${roundId}`)}` }, t("nav.signin")));
          return;
        }
        if (!error.transient && error.status < 500) {
          // Refused for a reason the participant can act on (e.g. the prediction): keep the
          // answers, reopen the attempt page so they can fix it.
          stopWith("bad", h("p", {}, problemText(error)),
            error.errors.length ? h("ul", {}, error.errors.map((e) => h("li", {}, e.message))) : null,
            h("button", {
              type: "button", class: "btn",
              onclick: () => {
                dropPending(attemptId);
                ctx.navigate(`/thi/${roundId}`, { replace: true });
              },
            }, t("quiz.fix_and_retry")));
          return;
        }
        const delay = retryDelayMs(tries, error.retryAfterS);
        const seconds = h("strong", {}, String(Math.ceil(delay / 1000)));
        const reason = error.status === 0 ? t("quiz.offline") : t("quiz.busy", { status: error.status });
        replace(status, notice("warn",
          h("p", {}, reason),
          h("p", {}, t("quiz.kept_safe")),
          h("p", {}, t("quiz.retry_in_before"), seconds, t("quiz.retry_in_after", { n: tries })),
          h("button", { type: "button", class: "btn small", onclick: () => wake && wake() }, t("quiz.retry_now"))));
        const until = Date.now() + delay;
        const countdown = setInterval(() => { seconds.textContent = String(Math.max(0, Math.ceil((until - Date.now()) / 1000))); }, 500);
        await sleep(delay);
        clearInterval(countdown);
      }
    }
  })();

  return () => {
    stopped = true;
    window.removeEventListener("online", onOnline);
    if (wake) wake();
  };
}
