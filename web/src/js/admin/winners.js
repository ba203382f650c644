// A round's final ranking with prizes, and the announcement (emails and SMS to winners).
import { api, session } from "../api.js";
import { h, notice, replace } from "../dom.js";
import { fmtNumber, problemText, t } from "../i18n.js";
import { adminNav } from "./common.js";

export async function winners(ctx, contest, round) {
  const base = `/quan-tri/c/${encodeURIComponent(contest.slug)}`;
  const title = `${t("winners.title")} — ${t("round.name", round)}`;
  ctx.setTitle(title);
  const groups = new Map((contest.groups || []).map((g) => [g.code, g.name || g.code]));
  const body = h("div", { "aria-live": "polite" });
  const message = h("div", { "aria-live": "polite" });
  let timer = null;

  const announceButton = h("button", {
    type: "button", class: "btn", hidden: true,
    onclick: async () => {
      if (!window.confirm(t("winners.announce_confirm"))) return;
      announceButton.disabled = true;
      try {
        await api(`/api/admin/rounds/${round.id}/announce`, { method: "POST" });
        replace(message, notice("ok", t("winners.announced"), " ", h("a", { href: "/quan-tri/thong-bao" }, t("admin.notifications"))));
        load();
      } catch (error) {
        replace(message, notice("bad", problemText(error)));
        announceButton.disabled = false;
      }
    },
  }, t("winners.announce"));

  async function load() {
    clearTimeout(timer);
    let found;
    try {
      found = await api(`/api/rounds/${round.id}/winners`, { auth: false });
    } catch (error) {
      replace(body, notice("bad", problemText(error)));
      return;
    }
    if (!ctx.isCurrent()) return;
    announceButton.hidden = found.status !== "final" || (session() || {}).role !== "organiser";
    announceButton.disabled = false;
    const withGroups = found.winners.some((w) => w.group);
    replace(body,
      h("p", {}, t("winners.status"), " ", h("strong", { dataset: { testid: "winners-status" } }, t(`winners.status_${found.status}`))),
      found.status === "pending" ? h("p", { class: "meta" }, t("winners.pending_hint")) : null,
      found.winners.length ? h("div", { class: "table-wrap" }, h("table", { id: "winners-table" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "num" }, t("board.rank")), h("th", { scope: "col" }, t("board.name")),
          h("th", { scope: "col" }, t("board.unit_col")), withGroups ? h("th", { scope: "col" }, t("board.group")) : null,
          h("th", { scope: "col" }, t("winners.prize")))),
        h("tbody", {}, found.winners.map((w) => h("tr", {}, h("td", { class: "num" }, fmtNumber(w.rank)), h("td", {}, w.name),
          h("td", {}, w.unit || "—"), withGroups ? h("td", {}, groups.get(w.group) || w.group || "—") : null, h("td", {}, w.prize))))))
        : h("p", { class: "meta" }, t("winners.none")));
    // Until the round is final, look again: it turns final on its own once every attempt has ended.
    if (found.status === "pending") timer = setTimeout(load, 2000);
  }

  replace(ctx.main, adminNav(null, contest), h("h1", {}, title),
    h("p", {}, h("a", { href: `${base}/vong/${round.id}` }, t("common.back"))),
    body, h("div", { class: "actions" }, announceButton), message);
  await load();
  return () => clearTimeout(timer);
}
