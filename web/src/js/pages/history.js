// My history across rounds: the server's list of my attempts (GET /api/me/attempts), or,
// when it cannot be had (offline, an old server), the attempts this browser remembers
// submitting. Each submitted line asks scoring for its result.
import { api, session } from "../api.js";
import { h, notice, replace } from "../dom.js";
import { fmtDateTime, fmtDuration, fmtNumber, t } from "../i18n.js";
import { historyOf } from "../store.js";

const RESULTS_FETCHED = 50; // one request each: enough for every real participant

/** The server's lines, or null when they cannot be had. */
async function serverHistory() {
  try {
    const list = await api("/api/me/attempts");
    return Array.isArray(list) ? list : null;
  } catch {
    return null;
  }
}

function roundLabel(e) {
  return [e.contest_title, e.round_number ? t("round.name", { number: e.round_number, title: e.round_title || "" }) : null]
    .filter(Boolean).join(" — ") || t("history.attempt");
}

function resultCells(e, fetchResult) {
  const result = h("td", {}, "…");
  const rank = h("td", { class: "num" }, "—");
  if (e.status === "running") {
    replace(result, h("a", { href: `/thi/${e.round_id}` }, t("history.running")));
  } else if (e.status === "expired") {
    result.textContent = t("history.expired");
  } else if (!fetchResult) {
    result.textContent = "—";
  } else {
    api(`/api/attempts/${e.attempt_id}/result`).then((r) => {
      if (r.status === "scored") {
        result.textContent = t("history.result", { n: fmtNumber(r.correct), total: fmtNumber(r.total), time: fmtDuration(r.duration_ms) });
        rank.textContent = r.rank ? fmtNumber(r.rank) : "—";
      } else {
        result.textContent = t("history.pending");
      }
    }).catch(() => { result.textContent = "—"; });
  }
  return [result, rank];
}

export async function render(ctx) {
  const who = session();
  if (!who) {
    ctx.navigate(`/dang-nhap?next=${encodeURIComponent("/lich-su")}`, { replace: true });
    return null;
  }
  ctx.setTitle(t("history.title"));
  replace(ctx.main, h("h1", {}, t("history.title")), h("p", { class: "loading" }, t("common.loading")));
  const fromServer = await serverHistory();
  if (!ctx.isCurrent()) return null;
  const entries = fromServer || historyOf(who.id);
  const source = fromServer
    ? null
    : [notice("warn", t("history.offline")), h("p", { class: "meta" }, t("history.local"))];
  if (!entries.length) {
    replace(ctx.main, h("h1", {}, t("history.title")), source,
      h("p", {}, fromServer ? t("history.none") : t("history.empty")));
    return null;
  }
  let fetched = 0;
  const rows = entries.map((e) => {
    // Local lines are all submitted ones (the browser remembers only those).
    const line = fromServer ? e : { ...e, status: "submitted" };
    const fetchResult = line.status === "submitted" && fetched < RESULTS_FETCHED;
    if (fetchResult) fetched += 1;
    return h("tr", { dataset: { attemptId: line.attempt_id, status: line.status } },
      h("td", {}, h("a", { href: `/ket-qua/${line.attempt_id}` }, roundLabel(line)),
        line.attempt_number ? h("span", { class: "meta" }, ` (${t("history.attempt_n", { n: line.attempt_number })})`) : null),
      h("td", {}, line.submitted_at ? fmtDateTime(line.submitted_at) : "—"),
      resultCells(line, fetchResult));
  });
  replace(ctx.main,
    h("h1", {}, t("history.title")),
    source,
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("history.round")), h("th", { scope: "col" }, t("history.when")),
        h("th", { scope: "col" }, t("history.result_col")), h("th", { scope: "col", class: "num" }, t("board.rank")))),
      h("tbody", {}, rows))));
  return null;
}
