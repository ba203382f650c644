// The notification delivery log (email, SMS) with replay of failed and dead deliveries.
import { api } from "../api.js";
import { h, nextId, notice, replace } from "../dom.js";
import { fmtDateTime, fmtNumber, problemText, t } from "../i18n.js";
import { adminNav } from "./common.js";

const STATUSES = ["queued", "sent", "failed", "dead"];
const REPLAYABLE = new Set(["failed", "dead"]);

export async function notifications(ctx) {
  ctx.setTitle(t("notif.title"));
  const statusId = nextId("status");
  const recipientId = nextId("recipient");
  const status = h("select", { id: statusId, name: "status" }, h("option", { value: "" }, t("notif.all")),
    STATUSES.map((s) => h("option", { value: s }, t(`notif.status_${s}`))));
  const recipient = h("input", { id: recipientId, name: "recipient", type: "search", autocomplete: "off" });
  const body = h("div", { "aria-live": "polite" });
  const message = h("div", { "aria-live": "polite" });
  const chosen = new Set();
  const replayButton = h("button", { type: "button", class: "btn", disabled: true, onclick: replay }, t("notif.replay"));

  async function load() {
    const params = new URLSearchParams({ limit: "200" });
    if (status.value) params.set("status", status.value);
    if (recipient.value.trim()) params.set("recipient", recipient.value.trim());
    let rows;
    try {
      rows = await api(`/api/admin/notifications?${params}`);
    } catch (error) {
      replace(body, notice("bad", problemText(error)));
      return;
    }
    if (!ctx.isCurrent()) return;
    if (!Array.isArray(rows)) rows = rows.items || [];
    chosen.clear();
    replayButton.disabled = true;
    replace(body, rows.length ? h("div", { class: "table-wrap" }, h("table", { id: "notifications-table" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, t("notif.pick"))),
        h("th", { scope: "col" }, t("notif.created")), h("th", { scope: "col" }, t("notif.channel")),
        h("th", { scope: "col" }, t("notif.recipient")), h("th", { scope: "col" }, t("notif.template")),
        h("th", { scope: "col" }, t("notif.status")), h("th", { scope: "col", class: "num" }, t("notif.attempts")),
        h("th", { scope: "col" }, t("notif.error")))),
      h("tbody", {}, rows.map((r) => {
        const box = REPLAYABLE.has(r.status) ? h("input", {
          type: "checkbox", "aria-label": t("notif.pick_one", { recipient: r.recipient }),
          onchange: (e) => {
            if (e.target.checked) chosen.add(r.id); else chosen.delete(r.id);
            replayButton.disabled = chosen.size === 0;
          },
        }) : null;
        return h("tr", { dataset: { status: r.status } }, h("td", {}, box), h("td", {}, fmtDateTime(r.created_at)),
          h("td", {}, r.channel), h("td", {}, r.recipient), h("td", {}, r.template),
          h("td", {}, h("span", { class: `badge ${r.status === "sent" ? "open" : REPLAYABLE.has(r.status) ? "closed" : ""}` }, t(`notif.status_${r.status}`))),
          h("td", { class: "num" }, fmtNumber(r.attempts ?? 0)), h("td", {}, r.last_error || ""));
      })))) : h("p", { class: "meta" }, t("notif.none")));
  }

  async function replay() {
    replayButton.disabled = true;
    try {
      const answer = await api("/api/admin/notifications/replay", { method: "POST", json: { ids: [...chosen] } });
      replace(message, notice("ok", t("notif.replayed", { n: fmtNumber(answer.requeued ?? chosen.size) })));
      await load();
    } catch (error) {
      replace(message, notice("bad", problemText(error)));
      replayButton.disabled = chosen.size === 0;
    }
  }

  replace(ctx.main, adminNav("/quan-tri/thong-bao"), h("h1", {}, t("notif.title")),
    h("form", {
      class: "row", role: "search",
      onsubmit: (e) => { e.preventDefault(); load(); },
    },
    h("div", {}, h("label", { for: statusId }, t("notif.status")), status),
    h("div", {}, h("label", { for: recipientId }, t("notif.recipient")), recipient),
    h("div", { class: "end" }, h("button", { type: "submit", class: "btn secondary" }, t("notif.filter")))),
    h("div", { class: "actions" }, replayButton), message, body);
  status.addEventListener("change", load);
  await load();
  return null;
}
