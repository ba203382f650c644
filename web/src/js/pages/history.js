// My history across rounds. There is no "my attempts" API yet: the browser remembers the
// attempts it submitted (per participant), and each line asks scoring for its result.
import { api, session } from "../api.js";
import { h, replace } from "../dom.js";
import { fmtDateTime, fmtDuration, fmtNumber, t } from "../i18n.js";
import { historyOf } from "../store.js";

export async function render(ctx) {
  const who = session();
  if (!who) {
    ctx.navigate(`/dang-nhap?next=${encodeURIComponent("/lich-su")}`, { replace: true });
    return null;
  }
  ctx.setTitle(t("history.title"));
  const entries = historyOf(who.id);
  if (!entries.length) {
    replace(ctx.main, h("h1", {}, t("history.title")), h("p", {}, t("history.empty")), h("p", { class: "meta" }, t("history.local")));
    return null;
  }
  const rows = entries.slice(0, 50).map((e) => {
    const result = h("td", {}, "…");
    const rank = h("td", { class: "num" }, "…");
    api(`/api/attempts/${e.attempt_id}/result`).then((r) => {
      if (r.status === "scored") {
        result.textContent = t("history.result", { n: fmtNumber(r.correct), total: fmtNumber(r.total), time: fmtDuration(r.duration_ms) });
        rank.textContent = r.rank ? fmtNumber(r.rank) : "—";
      } else {
        result.textContent = t("history.pending");
        rank.textContent = "—";
      }
    }).catch(() => { result.textContent = "—"; rank.textContent = "—"; });
    return h("tr", {},
      h("td", {}, h("a", { href: `/ket-qua/${e.attempt_id}` },
        [e.contest_title, e.round_number ? t("round.name", { number: e.round_number, title: e.round_title || "" }) : null]
          .filter(Boolean).join(" — ") || t("history.attempt")),
      e.attempt_number ? h("span", { class: "meta" }, ` (${t("history.attempt_n", { n: e.attempt_number })})`) : null),
      h("td", {}, e.submitted_at ? fmtDateTime(e.submitted_at) : "—"), result, rank);
  });
  replace(ctx.main,
    h("h1", {}, t("history.title")),
    h("p", { class: "meta" }, t("history.local")),
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("history.round")), h("th", { scope: "col" }, t("history.when")),
        h("th", { scope: "col" }, t("history.result_col")), h("th", { scope: "col", class: "num" }, t("board.rank")))),
      h("tbody", {}, rows))));
  return null;
}
