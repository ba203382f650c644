// The organisers' pages (loaded only when an organiser opens /quan-tri). Organisers see
// everything; unit coordinators see the reports of their subtree (the API decides).
import { api, isStaff, serverNow, session } from "../api.js";
import { h, notice, replace } from "../dom.js";
import { showFieldErrors } from "../forms.js";
import { fmtDateTime, fmtNumber, problemText, t } from "../i18n.js";
import { loginForm } from "../pages/login.js";
import { statusBadge } from "../pages/contest.js";
import { collectiveRules } from "./collective.js";
import { adminNav, contestBySlug, uploadForm } from "./common.js";
import { dashboard } from "./dashboard.js";
import { contestForm, roundForm } from "./forms.js";
import { notifications } from "./notifications.js";
import { nudges } from "./nudges.js";
import { replay } from "./replay.js";
import { units } from "./units.js";
import { winners } from "./winners.js";

export async function render(ctx) {
  document.body.classList.add("wide");
  const who = session();
  if (!isStaff(who)) {
    ctx.setTitle(t("admin.signin"));
    replace(ctx.main, h("h1", {}, t("admin.signin")),
      who ? notice("warn", t("admin.not_staff")) : null,
      loginForm({ staff: true, onDone: (s) => (isStaff(s) ? ctx.navigate(ctx.path, { replace: true }) : ctx.navigate("/")) }));
    return null;
  }
  const { slug, roundId, section } = ctx.params;
  if (!slug && !section) return contestsPage(ctx);
  if (!slug && ORGANISER_SECTIONS.has(section) && !isOrganiser()) {
    replace(ctx.main, adminNav(ctx.path), coordinatorNote());
    return null;
  }
  if (!slug && section === "don-vi") return units(ctx);
  if (!slug && section === "thong-bao") return notifications(ctx);
  if (!slug && section === "luot-thi") return replay(ctx);
  if (!slug) return notFound(ctx);

  // Everything below belongs to one contest: the organisers' view when there is one, else the public one.
  let contest;
  try {
    contest = await adminContest(slug);
  } catch (error) {
    replace(ctx.main, adminNav(ctx.path), notice("bad", problemText(error)));
    return null;
  }
  if (!roundId && !section) return contestPage(ctx, contest);
  if (!roundId && section === "thong-ke") return dashboard(ctx, contest, null);
  if (!roundId && CONTEST_ORGANISER_SECTIONS.has(section) && !isOrganiser()) {
    replace(ctx.main, adminNav(null, contest), coordinatorNote());
    return null;
  }
  if (!roundId && section === "giai-tap-the") return collectiveRules(ctx, contest);
  if (!roundId && section === "nhac-nho") return nudges(ctx, contest);
  const round = (contest.rounds || []).find((r) => r.id === roundId);
  if (!round) return notFound(ctx, contest);
  if (!section) return roundPage(ctx, contest, round);
  if (section === "thong-ke") return dashboard(ctx, contest, round);
  if (section === "giai") return winners(ctx, contest, round);
  return notFound(ctx, contest);
}

// Pages that change something (or show answers): organisers only.
const ORGANISER_SECTIONS = new Set(["don-vi", "thong-bao", "luot-thi"]);
const CONTEST_ORGANISER_SECTIONS = new Set(["giai-tap-the", "nhac-nho"]);

/** Coordinators see the reports of their subtree; everything that changes a contest is the organisers'. */
export const isOrganiser = () => (session() || {}).role === "organiser";

const coordinatorNote = () => notice("", t("admin.coordinator_note"));

function notFound(ctx, contest) {
  ctx.setTitle(t("notfound.title"));
  replace(ctx.main, adminNav(ctx.path, contest), h("h1", {}, t("notfound.title")), h("p", {}, t("notfound.text")));
  return null;
}

/** The contest with its rounds' full settings (GET /api/admin/contests/{id}) when the API has it. */
export async function adminContest(slug) {
  const open = await contestBySlug(slug);
  try {
    const full = await api(`/api/admin/contests/${open.id}`);
    return { ...open, ...full, rounds: mergeRounds(open.rounds, full.rounds) };
  } catch (error) {
    if (error.status === 401) throw error;
    // A coordinator (403), or an API without the organisers' view: the public one is enough.
    return open;
  }
}

function mergeRounds(publicRounds = [], adminRounds = []) {
  const byId = new Map(publicRounds.map((r) => [r.id, r]));
  return (adminRounds.length ? adminRounds : publicRounds).map((r) => ({ ...(byId.get(r.id) || {}), ...r }))
    .sort((a, b) => a.number - b.number);
}

// --- contests -------------------------------------------------------------------------

async function contestsPage(ctx) {
  ctx.setTitle(t("admin.contests"));
  let contests = [];
  let loadError = null;
  try {
    contests = await api("/api/contests", { auth: false });
  } catch (error) {
    loadError = error;
  }
  const { form } = contestForm(null, {
    submitLabel: t("contestform.create"),
    onSubmit: async (body, { fields, message }) => {
      message.replaceChildren();
      try {
        const created = await api("/api/admin/contests", { method: "POST", json: body });
        ctx.navigate(`/quan-tri/c/${encodeURIComponent(created.slug)}`);
      } catch (error) {
        const leftover = showFieldErrors(error, fields);
        message.replaceChildren(notice("bad", problemText(error), leftover.length ? h("ul", {}, leftover.map((m) => h("li", {}, m))) : null));
      }
    },
  });
  replace(ctx.main, adminNav("/quan-tri"), h("h1", {}, t("admin.contests")),
    loadError ? notice("bad", problemText(loadError)) : null,
    contests.length ? h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("admin.contest")), h("th", { scope: "col" }, t("admin.slug")),
        h("th", { scope: "col" }, t("admin.rounds")), h("th", { scope: "col" }, t("admin.current")))),
      h("tbody", {}, contests.map((c) => {
        const open = (c.rounds || []).find((r) => r.status === "open");
        return h("tr", {}, h("td", {}, h("a", { href: `/quan-tri/c/${encodeURIComponent(c.slug)}` }, c.title)),
          h("td", {}, c.slug), h("td", { class: "num" }, fmtNumber((c.rounds || []).length)),
          h("td", {}, open ? [t("round.name", open), " ", statusBadge(open.status)] : "—"));
      })))) : h("p", {}, t("admin.no_contests")),
    isOrganiser() ? h("details", { class: "card" }, h("summary", {}, h("strong", {}, t("admin.new_contest"))), form)
      : coordinatorNote());
  return null;
}

async function contestPage(ctx, contest) {
  ctx.setTitle(contest.title);
  const base = `/quan-tri/c/${encodeURIComponent(contest.slug)}`;
  const rounds = contest.rounds || [];
  const edit = contestForm(contest, {
    submitLabel: t("common.save"),
    onSubmit: async (body, { fields, message }) => {
      message.replaceChildren();
      try {
        await api(`/api/admin/contests/${contest.id}`, { method: "PATCH", json: body });
        message.replaceChildren(notice("ok", t("common.saved")));
      } catch (error) {
        if (error.status === 404 || error.status === 405) {
          message.replaceChildren(notice("warn", t("admin.edit_unsupported")));
          return;
        }
        const leftover = showFieldErrors(error, fields);
        message.replaceChildren(notice("bad", problemText(error), leftover.length ? h("ul", {}, leftover.map((m) => h("li", {}, m))) : null));
      }
    },
  });
  const newRound = roundForm(null, {
    nextNumber: Math.max(0, ...rounds.map((r) => r.number)) + 1,
    submitLabel: t("roundform.create"),
    onSubmit: async (body, { fields, message }) => {
      message.replaceChildren();
      try {
        const created = await api(`/api/admin/contests/${contest.id}/rounds`, { method: "POST", json: body });
        ctx.navigate(`${base}/vong/${created.id}`);
      } catch (error) {
        const leftover = showFieldErrors(error, fields);
        message.replaceChildren(notice("bad", problemText(error), leftover.length ? h("ul", {}, leftover.map((m) => h("li", {}, m))) : null));
      }
    },
  });
  const bank = typeof contest.question_count === "number"
    ? h("p", {}, t("admin.bank_size", { n: fmtNumber(contest.question_count) })) : null;
  const organiserSections = contestSections(contest, bank, newRound, edit);
  replace(ctx.main, adminNav(base, contest),
    h("h1", {}, contest.title),
    h("p", { class: "meta" }, h("a", { href: `/c/${encodeURIComponent(contest.slug)}` }, t("admin.public_page"))),
    h("section", { "aria-labelledby": "rounds-h" }, h("h2", { id: "rounds-h" }, t("admin.rounds")),
      rounds.length ? h("div", { class: "table-wrap" }, h("table", { id: "rounds-table" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "num" }, "#"), h("th", { scope: "col" }, t("roundform.title")),
          h("th", { scope: "col" }, t("roundform.opens_at")), h("th", { scope: "col" }, t("roundform.closes_at")),
          h("th", { scope: "col" }, t("admin.status")), h("th", { scope: "col" }, t("admin.actions")))),
        h("tbody", {}, rounds.map((r) => h("tr", { dataset: { roundId: r.id } },
          h("td", { class: "num" }, r.number), h("td", {}, h("a", { href: `${base}/vong/${r.id}` }, r.title)),
          h("td", {}, fmtDateTime(r.opens_at)), h("td", {}, fmtDateTime(r.closes_at)), h("td", {}, statusBadge(r.status)),
          h("td", {}, h("a", { href: `${base}/vong/${r.id}/thong-ke` }, t("admin.stats")), " · ",
            h("a", { href: `${base}/vong/${r.id}/giai` }, t("admin.winners")))))))) : h("p", {}, t("admin.no_rounds")),
      h("p", {}, h("a", { href: `${base}/thong-ke` }, t("admin.contest_stats")))),
    isOrganiser() ? organiserSections : coordinatorNote());
  return null;
}

function contestSections(contest, bank, newRound, edit) {
  const base = `/quan-tri/c/${encodeURIComponent(contest.slug)}`;
  return [
    h("section", { "aria-labelledby": "units-h" }, h("h2", { id: "units-h" }, t("admin.units_section")),
      h("ul", {}, h("li", {}, h("a", { href: `${base}/giai-tap-the` }, t("collective.title"))),
        h("li", {}, h("a", { href: `${base}/nhac-nho` }, t("nudge.title"))))),
    h("section", { "aria-labelledby": "import-h" }, h("h2", { id: "import-h" }, t("admin.questions")), bank,
      uploadForm({
        url: `/api/admin/contests/${contest.id}/questions/import`,
        label: t("admin.questions_file"), hint: t("admin.questions_hint"),
        successText: (answer) => t("admin.questions_done", { n: fmtNumber(answer.imported) }),
      })),
    h("section", { "aria-labelledby": "new-round-h" }, h("h2", { id: "new-round-h" }, t("admin.new_round")),
      h("div", { class: "card" }, newRound.form)),
    h("section", { "aria-labelledby": "settings-h" }, h("h2", { id: "settings-h" }, t("admin.settings")),
      h("details", { class: "card" }, h("summary", {}, t("admin.edit_contest")), edit.form)),
  ];
}

// --- one round --------------------------------------------------------------------------

async function roundPage(ctx, contest, round) {
  const base = `/quan-tri/c/${encodeURIComponent(contest.slug)}`;
  ctx.setTitle(`${t("round.name", round)} — ${contest.title}`);
  let full = round;
  try {
    full = { ...round, ...(await api(`/api/admin/rounds/${round.id}`)) };
  } catch {
    // an API without the round view: what the contest page gave is enough
  }
  let timer = null;
  const status = h("span", { dataset: { testid: "round-status" } }, statusBadge(full.status));
  const closeMessage = h("div", { "aria-live": "polite" });
  const closeButton = h("button", {
    type: "button", class: "btn", hidden: !isOrganiser() || full.status === "closed" || full.status === "final",
    onclick: async () => {
      if (!window.confirm(t("admin.close_confirm", { name: t("round.name", full) }))) return;
      closeButton.disabled = true;
      try {
        const answer = await api(`/api/admin/rounds/${round.id}/close`, { method: "POST" });
        replace(status, statusBadge(answer.status || "closed"));
        closeButton.hidden = true;
        replace(closeMessage, notice("ok", t("admin.closed")));
        watch();
      } catch (error) {
        replace(closeMessage, notice("bad", problemText(error)));
        closeButton.disabled = false;
      }
    },
  }, t("admin.close"));

  // After a close the round turns final once every attempt has ended; show it happen.
  const watch = async () => {
    clearTimeout(timer);
    try {
      const fresh = (await contestBySlug(contest.slug)).rounds.find((r) => r.id === round.id);
      if (fresh) {
        replace(status, statusBadge(fresh.status));
        if (fresh.status === "final") {
          replace(closeMessage, notice("ok", t("admin.final"), " ", h("a", { href: `${base}/vong/${round.id}/giai` }, t("admin.winners"))));
          return;
        }
      }
    } catch {
      // try again below
    }
    if (ctx.isCurrent()) timer = setTimeout(watch, 1500);
  };
  if (full.status === "closed") watch();

  const edit = roundForm(full, {
    submitLabel: t("common.save"),
    onSubmit: async (body, { fields, message }) => {
      message.replaceChildren();
      if (!Object.keys(body).length) {
        message.replaceChildren(notice("", t("admin.no_changes")));
        return;
      }
      try {
        await api(`/api/admin/rounds/${round.id}`, { method: "PATCH", json: body });
        message.replaceChildren(notice("ok", t("common.saved")));
      } catch (error) {
        if (error.status === 405 || (error.status === 404 && !error.problem.code)) {
          message.replaceChildren(notice("warn", t("admin.edit_unsupported")));
          return;
        }
        const leftover = showFieldErrors(error, fields);
        message.replaceChildren(notice("bad", problemText(error), leftover.length ? h("ul", {}, leftover.map((m) => h("li", {}, m))) : null));
      }
    },
  });
  const left = Date.parse(full.closes_at) - serverNow();
  replace(ctx.main, adminNav(null, contest),
    h("h1", {}, t("round.name", full), " ", status),
    h("dl", { class: "facts" },
      h("dt", {}, t("roundform.opens_at")), h("dd", {}, fmtDateTime(full.opens_at)),
      h("dt", {}, t("roundform.closes_at")), h("dd", {}, fmtDateTime(full.closes_at),
        full.status === "open" && left > 0 ? h("span", { class: "meta" }, ` (${t("admin.closes_in_min", { n: fmtNumber(Math.ceil(left / 60000)) })})`) : null),
      full.snapshot_size !== undefined && full.snapshot_size !== null
        ? [h("dt", {}, t("admin.snapshot")), h("dd", {}, fmtNumber(full.snapshot_size))] : null),
    Array.isArray(full.draw_problems) && full.draw_problems.length
      ? notice("warn", h("ul", {}, full.draw_problems.map((p) => h("li", {}, p.group ? `${p.group}: ${p.message}` : p.message)))) : null,
    h("div", { class: "actions" }, closeButton,
      h("a", { class: "btn secondary", href: `${base}/vong/${round.id}/thong-ke` }, t("admin.stats")),
      h("a", { class: "btn secondary", href: `${base}/vong/${round.id}/giai` }, t("admin.winners"))),
    closeMessage,
    isOrganiser() ? h("section", { "aria-labelledby": "edit-h" }, h("h2", { id: "edit-h" }, t("admin.edit_round")),
      h("p", { class: "hint" }, t("admin.edit_round_hint")), h("div", { class: "card" }, edit.form)) : null);
  return () => clearTimeout(timer);
}
