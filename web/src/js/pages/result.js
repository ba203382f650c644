// The result of an attempt: polled until scoring has it, then the live place on the board
// (updated without reload), the time taken, the attempts left, and the answers given.
import { api, session } from "../api.js";
import { h, notice, replace } from "../dom.js";
import { fmtDuration, fmtNumber, problemText, t } from "../i18n.js";
import { historyEntry, historyOf, roundInfo, saveRoundInfo } from "../store.js";

const RESULT_POLL_MS = [500, 1000, 1000, 1000, 2000, 2000, 3000, 5000];
const BOARD_POLL_MS = 5000;

export async function render(ctx) {
  const attemptId = ctx.params.attemptId;
  const who = session();
  if (!who) {
    ctx.navigate(`/dang-nhap?next=${encodeURIComponent(`/ket-qua/${attemptId}`)}`, { replace: true });
    return null;
  }
  ctx.setTitle(t("result.title"));
  const entry = historyEntry(who.id, attemptId);
  const roundId = (entry && entry.round_id) || ctx.query.get("vong");
  let info = (roundId && roundInfo(roundId)) || {};
  let stopped = false;
  let timer = null;

  const state = h("div", { role: "status", "aria-live": "polite" }, notice("", t("result.scoring")));
  const facts = h("dl", { class: "facts" });
  const live = h("p", { "aria-live": "polite" });
  const remaining = h("p");
  const actions = h("div", { class: "actions" });
  const answersBox = h("div");
  replace(ctx.main,
    h("h1", {}, t("result.title")),
    info.contest_title ? h("p", { class: "meta" }, info.contest_title, info.number ? ` — ${t("round.name", info)}` : "") : null,
    state, facts, live, remaining, actions, answersBox);

  const contestHref = info.contest_slug ? `/c/${encodeURIComponent(info.contest_slug)}` : "/";
  const renderActions = () => {
    const left = attemptsLeft();
    replace(actions,
      info.status === "open" && roundId && left !== 0 ? h("a", { class: "btn", href: `/thi/${roundId}` }, t("result.again")) : null,
      h("a", { class: "btn secondary", href: contestHref }, t("result.board")),
      h("a", { class: "btn secondary", href: "/lich-su" }, t("nav.history")));
  };

  let attemptNumber = entry && entry.attempt_number;
  const attemptsLeft = () => {
    if (!("max_attempts" in info) || info.max_attempts === undefined) return undefined;
    if (info.max_attempts === null) return null;
    const used = Math.max(attemptNumber || 0, historyOf(who.id).filter((e) => e.round_id === roundId).length);
    return Math.max(0, info.max_attempts - used);
  };
  const showRemaining = () => {
    const left = attemptsLeft();
    if (left === undefined) remaining.textContent = "";
    else if (left === null) remaining.textContent = t("result.unlimited");
    else remaining.textContent = t("result.attempts_left", { n: left });
  };

  // Fresh round status and rules (the round may have closed since).
  if (info.contest_slug) {
    api(`/api/contests/${encodeURIComponent(info.contest_slug)}`, { auth: false }).then((contest) => {
      const r = (contest.rounds || []).find((x) => x.id === roundId);
      if (!r) return;
      info = { ...info, status: r.status, max_attempts: "max_attempts" in r ? r.max_attempts : info.max_attempts };
      saveRoundInfo(roundId, info);
      if (!stopped) {
        showRemaining();
        renderActions();
      }
    }).catch(() => {});
  }
  renderActions();
  showRemaining();

  // The attempt itself: the answers given (and, once the API gives it, which were right).
  api(`/api/attempts/${attemptId}`).then((attempt) => {
    if (stopped) return;
    attemptNumber = attempt.attempt_number || attemptNumber;
    showRemaining();
    renderActions();
    answersBox.replaceChildren(h("details", {}, h("summary", {}, t("result.my_answers")),
      h("ol", {}, attempt.questions.map((q) => {
        const chosen = new Set((attempt.answers || {})[q.id] || []);
        const correct = Array.isArray(q.correct) ? new Set(q.correct) : null;
        return h("li", {}, h("p", {}, q.text), h("ul", {}, q.options.map((o) => h("li", {},
          chosen.has(o.id) ? h("strong", {}, `☑ ${o.text}`) : `☐ ${o.text}`,
          correct && correct.has(o.id) ? h("span", { class: "badge open" }, ` ${t("result.right_option")}`) : null))));
      }))));
  }).catch(() => {});

  let polls = 0;
  async function pollResult() {
    if (stopped) return;
    let result;
    try {
      result = await api(`/api/attempts/${attemptId}/result`);
    } catch (error) {
      if (stopped) return;
      replace(state, notice(error.transient ? "warn" : "bad", problemText(error)));
      timer = setTimeout(pollResult, 5000);
      return;
    }
    if (stopped) return;
    if (result.status !== "scored") {
      polls += 1;
      if (polls > 20) replace(state, notice("", t("result.still_scoring")));
      timer = setTimeout(pollResult, RESULT_POLL_MS[Math.min(polls, RESULT_POLL_MS.length - 1)]);
      return;
    }
    const counts = result.counts !== false;
    replace(state, counts ? notice("ok", t("result.scored")) : notice("warn", t("result.not_counted")));
    replace(facts,
      h("dt", {}, t("result.correct")), h("dd", { class: "big", dataset: { testid: "correct" } },
        t("result.correct_of", { n: fmtNumber(result.correct), total: fmtNumber(result.total) })),
      h("dt", {}, t("result.duration")), h("dd", {}, fmtDuration(result.duration_ms)),
      h("dt", {}, t("result.rank")), h("dd", { class: "big", dataset: { testid: "rank" } },
        result.rank ? fmtNumber(result.rank) : counts ? "…" : "—"));
    if (!result.rank && counts && polls < 30) {
      // The rank follows the result by a moment (the board is updated after the commit).
      polls += 1;
      timer = setTimeout(pollResult, 1000);
      return;
    }
    pollBoard();
  }

  async function pollBoard() {
    if (stopped || !roundId) return;
    if (document.visibilityState === "visible") {
      try {
        const me = await api(`/api/rounds/${roundId}/leaderboard/me`);
        if (stopped) return;
        const parts = [t("result.live_place", { rank: fmtNumber(me.rank), correct: fmtNumber(me.correct) })];
        if (me.unit_rank) parts.push(t("result.unit_place", { rank: fmtNumber(me.unit_rank) }));
        if (me.group_rank) parts.push(t("result.group_place", { rank: fmtNumber(me.group_rank) }));
        live.textContent = parts.join(" ");
      } catch {
        // not ranked yet, or offline: keep the last line
      }
    }
    if (!stopped && info.status !== "final") timer = setTimeout(pollBoard, BOARD_POLL_MS);
  }

  pollResult();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
