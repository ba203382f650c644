// The result of an attempt: polled until scoring has it, then the live place on the board
// (updated without reload), the time taken, the attempts left, and the answers given;
// once the round is over, the review: every question with the right answers and why.
import { api, serverNow, session } from "../api.js";
import { h, notice, replace } from "../dom.js";
import { fmtDateTime, fmtDuration, fmtNumber, problemText, t } from "../i18n.js";
import { historyEntry, historyOf, roundInfo, saveRoundInfo } from "../store.js";

const RESULT_POLL_MS = [500, 1000, 1000, 1000, 2000, 2000, 3000, 5000];
const BOARD_POLL_MS = 5000;
// A review due within this long is asked for again when it is due (the page stays open).
const REVIEW_WAIT_MAX_MS = 30 * 60_000;

/** The review: each question as shown, what was chosen, the right options, and why. */
function reviewSection(review) {
  const right = review.questions.filter((q) => q.is_correct).length;
  return h("section", { class: "review", "aria-labelledby": "review-h", dataset: { testid: "review" } },
    h("h2", { id: "review-h" }, t("result.review_title")),
    h("p", { class: "meta" }, t("result.review_score", { n: fmtNumber(right), total: fmtNumber(review.questions.length) })),
    h("ol", {}, review.questions.map((q) => {
      const chosen = new Set(q.chosen);
      const correct = new Set(q.correct);
      return h("li", { dataset: { questionId: q.id, correct: String(q.is_correct) } },
        h("p", {}, q.text, " ", h("span", { class: `badge ${q.is_correct ? "open" : "closed"}` },
          q.is_correct ? t("result.review_right") : chosen.size ? t("result.review_wrong") : t("result.review_blank"))),
        h("ul", {}, q.options.map((o) => h("li", {},
          chosen.has(o.id) ? h("strong", {}, `☑ ${o.text}`) : `☐ ${o.text}`,
          correct.has(o.id) ? h("span", { class: "badge open" }, ` ${t("result.right_option")}`) : null))),
        q.explanation ? h("p", { class: "meta" }, `${t("result.review_why")} ${q.explanation}`) : null);
    })));
}

export async function render(ctx) {
  const attemptId = ctx.params.attemptId;
  const who = session();
  if (!who) {
    ctx.navigate(`/dang-nhap?next=${encodeURIComponent(`/ket-qua/${attemptId}`)}`, { replace: true });
    return null;
  }
  ctx.setTitle(t("result.title"));
  const entry = historyEntry(who.id, attemptId);
  // Known from this browser's history, the link, or (on another device) the attempt itself.
  let roundId = (entry && entry.round_id) || ctx.query.get("vong");
  let info = (roundId && roundInfo(roundId)) || {};
  let stopped = false;
  let timer = null;
  let reviewTimer = null;
  let reviewWaits = 0;
  let boardPolling = false;
  let scored = false;

  const state = h("div", { role: "status", "aria-live": "polite" }, notice("", t("result.scoring")));
  const facts = h("dl", { class: "facts" });
  const live = h("p", { "aria-live": "polite" });
  const remaining = h("p");
  const actions = h("div", { class: "actions" });
  const answersBox = h("div");
  const reviewBox = h("div", { "aria-live": "polite" });
  replace(ctx.main,
    h("h1", {}, t("result.title")),
    info.contest_title ? h("p", { class: "meta" }, info.contest_title, info.number ? ` — ${t("round.name", info)}` : "") : null,
    state, facts, live, remaining, actions, reviewBox, answersBox);

  const renderActions = () => {
    const left = attemptsLeft();
    const contestHref = info.contest_slug ? `/c/${encodeURIComponent(info.contest_slug)}` : "/";
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
  let contestAsked = false;
  const refreshRound = () => {
    if (contestAsked || !info.contest_slug || !roundId) return;
    contestAsked = true;
    api(`/api/contests/${encodeURIComponent(info.contest_slug)}`, { auth: false }).then((contest) => {
      const r = (contest.rounds || []).find((x) => x.id === roundId);
      if (!r) return;
      info = {
        ...info, status: r.status, max_attempts: "max_attempts" in r ? r.max_attempts : info.max_attempts,
        contest_title: info.contest_title || contest.title, number: info.number || r.number, title: info.title || r.title,
      };
      saveRoundInfo(roundId, info);
      if (!stopped) {
        showRemaining();
        renderActions();
      }
    }).catch(() => {});
  };
  refreshRound();
  renderActions();
  showRemaining();

  // The right answers are shown once no attempt of the round can still be submitted
  // (409 review_not_available before, with the moment it will be).
  async function loadReview() {
    clearTimeout(reviewTimer);
    try {
      const review = await api(`/api/attempts/${attemptId}/review`);
      if (stopped) return;
      replace(reviewBox, reviewSection(review));
      // The review shows the answers given too; the plain list (filled before it came) goes.
      answersBox.replaceChildren();
    } catch (error) {
      if (stopped) return;
      if (error.code !== "review_not_available") return;
      const due = Date.parse(error.problem.available_at || "");
      replace(reviewBox, h("p", { class: "meta" }, Number.isFinite(due)
        ? t("result.review_later", { time: fmtDateTime(due) }) : t("result.review_later_unknown")));
      const wait = due - serverNow();
      reviewWaits += 1;
      if (Number.isFinite(wait) && wait < REVIEW_WAIT_MAX_MS && reviewWaits <= 5) {
        reviewTimer = setTimeout(loadReview, Math.max(wait, 0) + 3000);
      }
    }
  }

  // The attempt itself: the answers given, and which round it belongs to.
  api(`/api/attempts/${attemptId}`).then((attempt) => {
    if (stopped) return;
    attemptNumber = attempt.attempt_number || attemptNumber;
    if (!roundId && attempt.round_id) {
      roundId = attempt.round_id;
      info = { ...(roundInfo(roundId) || {}), ...info };
    }
    if (!info.contest_slug && attempt.contest_slug) info = { ...info, contest_slug: attempt.contest_slug };
    if (!info.number && attempt.round_number) info = { ...info, number: attempt.round_number };
    refreshRound();
    if (scored && !boardPolling) pollBoard();
    showRemaining();
    renderActions();
    if (attempt.status !== "running") loadReview();
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
    scored = true;
    pollBoard();
  }

  async function pollBoard() {
    if (stopped || !roundId) {
      boardPolling = false;
      return;
    }
    boardPolling = true;
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
    else boardPolling = false;
  }

  pollResult();
  return () => {
    stopped = true;
    clearTimeout(timer);
    clearTimeout(reviewTimer);
  };
}
