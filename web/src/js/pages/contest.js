// The contest page: title, rules, rounds with their dates and status, prizes, a countdown
// to the current round's close, the live board and the winners of past rounds.
import { api, isStaff, serverNow, session } from "../api.js";
import { leaderboard } from "../components/leaderboard.js";
import { h, notice, replace } from "../dom.js";
import { fmtCountdown, fmtDateTime, fmtNumber, problemText, t } from "../i18n.js";
import { historyOf, saveLastContest, saveRoundInfo } from "../store.js";

export const DEFAULT_SLUG = "demo";

/** The round a participant cares about now: the open one, else the next, else the last. */
export function currentRound(rounds) {
  return rounds.find((r) => r.status === "open")
    || rounds.find((r) => r.status === "scheduled")
    || rounds[rounds.length - 1]
    || null;
}

export const statusBadge = (status) => h("span", { class: `badge ${status}` }, t(`status.${status}`));

/** Prizes as text: "1 Giải Nhất, 2 Giải Nhì". */
export const prizesText = (prizes) => prizes.map((p) => t("prize.item", { count: fmtNumber(p.count), name: p.name }))
  .join(", ");

/** The round's rules as facts, each only when the API gave it (fields arrive with issue 3). */
export function roundFacts(round, contest = {}) {
  const facts = [];
  if (round.question_count) facts.push([t("round.questions"), fmtNumber(round.question_count)]);
  if (round.time_limit_s) facts.push([t("round.time_limit"), t("round.minutes", { n: Math.round(round.time_limit_s / 60) })]);
  if ("max_attempts" in round) {
    facts.push([t("round.attempts"), round.max_attempts ? fmtNumber(round.max_attempts) : t("round.unlimited")]);
  }
  if (round.require_all_answered || contest.require_all_answered) facts.push([t("round.all_required"), t("common.yes")]);
  if (round.freeze_minutes) facts.push([t("round.freeze"), t("round.freeze_minutes", { n: round.freeze_minutes })]);
  if (round.prediction && round.prediction.text) facts.push([t("round.prediction"), round.prediction.text]);
  return facts;
}

export async function render(ctx) {
  const slug = ctx.params.slug || DEFAULT_SLUG;
  ctx.setTitle(t("contest.loading"));
  let contest;
  try {
    contest = await api(`/api/contests/${encodeURIComponent(slug)}`, { auth: false });
  } catch (error) {
    if (error.status === 404) return renderList(ctx, slug);
    replace(ctx.main, notice("bad", problemText(error)),
      h("button", { type: "button", class: "btn", onclick: () => ctx.navigate(ctx.path + location.search) }, t("common.retry")));
    return null;
  }
  saveLastContest(contest.slug);
  const rounds = [...(contest.rounds || [])].sort((a, b) => a.number - b.number);
  for (const r of rounds) {
    saveRoundInfo(r.id, {
      contest_slug: contest.slug, contest_title: contest.title, contest_id: contest.id, number: r.number,
      title: r.title, closes_at: r.closes_at, status: r.status, time_limit_s: r.time_limit_s || null,
      max_attempts: "max_attempts" in r ? r.max_attempts : undefined,
      require_all_answered: Boolean(contest.require_all_answered || r.require_all_answered),
    });
  }
  ctx.setTitle(contest.title);
  const who = session();
  const current = currentRound(rounds);
  const stops = [];

  const countdown = h("span", { class: "countdown" });
  const hero = h("section", { class: "card", "aria-labelledby": "current-title" });
  if (current) {
    const mine = who ? historyOf(who.id).filter((e) => e.round_id === current.id) : [];
    const actions = [];
    if (current.status === "open") {
      if (!who) {
        const next = `/thi/${current.id}`;
        actions.push(h("a", { class: "btn", href: `/dang-nhap?next=${encodeURIComponent(next)}` }, t("contest.signin_to_play")));
        actions.push(h("a", { class: "btn secondary", href: `/dang-ky?next=${encodeURIComponent(next)}` }, t("nav.signup")));
      } else if (isStaff(who)) {
        actions.push(h("p", { class: "meta" }, t("contest.staff_account")));
      } else {
        actions.push(h("a", { class: "btn", href: `/thi/${current.id}` }, mine.length ? t("contest.play_again") : t("contest.play")));
      }
    }
    if (mine.length) actions.push(h("a", { class: "btn secondary", href: `/ket-qua/${mine[0].attempt_id}` }, t("contest.my_result")));
    hero.append(
      h("h2", { id: "current-title" }, t("round.name", current), " ", statusBadge(current.status)),
      h("p", {}, t("round.window", { from: fmtDateTime(current.opens_at), to: fmtDateTime(current.closes_at) }),
        " ", h("span", { class: "meta" }, t("common.vn_time"))),
      current.status === "open" || current.status === "scheduled"
        ? h("p", {}, current.status === "open" ? t("contest.closes_in") : t("contest.opens_in"), " ", countdown)
        : null,
      h("div", { class: "actions" }, actions),
    );
    const target = Date.parse(current.status === "open" ? current.closes_at : current.opens_at);
    const tick = () => {
      const left = target - serverNow();
      countdown.textContent = fmtCountdown(left);
      if (left <= 0 && (current.status === "open" || current.status === "scheduled")) {
        clearInterval(timer);
        setTimeout(() => { if (ctx.isCurrent()) ctx.navigate(ctx.path + location.search, { replace: true }); }, 1500);
      }
    };
    const timer = setInterval(tick, 1000);
    tick();
    stops.push(() => clearInterval(timer));
  } else {
    hero.append(h("p", {}, t("contest.no_rounds")));
  }

  const facts = current ? roundFacts(current, contest) : [];
  const rulesSection = h("section", { "aria-labelledby": "rules-title" },
    h("h2", { id: "rules-title" }, t("contest.rules")),
    facts.length ? h("dl", { class: "facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])) : null,
    contest.rules ? h("div", { class: "rules" }, contest.rules) : h("p", { class: "meta" }, t("contest.no_rules")));

  const groups = Array.isArray(contest.groups) ? contest.groups : [];
  const roundsSection = h("section", { "aria-labelledby": "rounds-title" },
    h("h2", { id: "rounds-title" }, t("contest.rounds")),
    h("ol", { class: "plain" }, rounds.map((r) => h("li", { class: "card" },
      h("h3", {}, t("round.name", r), " ", statusBadge(r.status)),
      h("p", { class: "meta" }, t("round.window", { from: fmtDateTime(r.opens_at), to: fmtDateTime(r.closes_at) })),
      Array.isArray(r.prizes) && r.prizes.length ? h("p", {}, h("strong", {}, t("contest.prizes"), ": "), prizesText(r.prizes)) : null,
      r.group_prizes && typeof r.group_prizes === "object"
        ? Object.entries(r.group_prizes).map(([code, prizes]) => h("p", {},
          h("strong", {}, (groups.find((g) => g.code === code) || { name: code }).name, ": "), prizesText(prizes || [])))
        : null))));

  const board = leaderboard({ rounds, groups, initialRoundId: current && current.id });
  stops.push(board.stop);

  const winnersSection = h("section", { "aria-labelledby": "winners-title" }, h("h2", { id: "winners-title" }, t("contest.winners")));
  const finals = rounds.filter((r) => r.status === "final").reverse();
  if (!finals.length) winnersSection.append(h("p", { class: "meta" }, t("contest.no_winners")));
  loadWinners(finals, winnersSection, ctx);

  replace(ctx.main,
    h("h1", {}, contest.title),
    groups.length ? h("p", { class: "meta" }, t("contest.groups", { names: groups.map((g) => g.name || g.code).join(", ") })) : null,
    hero, board.element, rulesSection, roundsSection, winnersSection);
  return () => stops.forEach((stop) => stop());
}

async function loadWinners(finals, section, ctx) {
  for (const round of finals.slice(0, 10)) {
    let found;
    try {
      found = await api(`/api/rounds/${round.id}/winners`, { auth: false });
    } catch {
      continue;
    }
    if (!ctx.isCurrent()) return;
    const block = h("div", { class: "card" }, h("h3", {}, t("round.name", round)));
    if (found.status !== "announced" || !found.winners.length) {
      block.append(h("p", { class: "meta" }, t("contest.winners_pending")));
    } else {
      block.append(h("div", { class: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "num" }, t("board.rank")),
          h("th", { scope: "col" }, t("board.name")), h("th", { scope: "col" }, t("board.unit_col")),
          h("th", { scope: "col" }, t("winners.prize")))),
        h("tbody", {}, found.winners.map((w) => h("tr", {}, h("td", { class: "num" }, fmtNumber(w.rank)),
          h("td", {}, w.name), h("td", {}, w.unit || "—"), h("td", {}, w.prize)))))));
    }
    section.append(block);
  }
}

async function renderList(ctx, slug) {
  let contests = [];
  try {
    contests = await api("/api/contests", { auth: false });
  } catch {
    // shown below as "not found"
  }
  if (contests.length === 1 && !ctx.params.slug) return ctx.navigate(`/c/${encodeURIComponent(contests[0].slug)}`, { replace: true });
  ctx.setTitle(t("contest.list"));
  replace(ctx.main,
    h("h1", {}, t("contest.list")),
    ctx.params.slug ? notice("warn", t("contest.not_found", { slug })) : null,
    contests.length
      ? h("ul", {}, contests.map((c) => h("li", {}, h("a", { href: `/c/${encodeURIComponent(c.slug)}` }, c.title))))
      : h("p", {}, t("contest.none")));
  return null;
}
