// Units: import the tree (CSV/XLSX, every bad row shown) and find a unit's entry link and QR code.
import { h, replace } from "../dom.js";
import { fmtNumber, t } from "../i18n.js";
import { unitPicker } from "../components/unitpicker.js";
import { adminNav, uploadForm } from "./common.js";

export async function units(ctx) {
  ctx.setTitle(t("units.title"));
  const card = h("div", { "aria-live": "polite" });
  const picker = unitPicker({
    label: t("units.find"), name: "unit",
    onChange: (unit) => {
      if (!unit) {
        card.replaceChildren();
        return;
      }
      const link = `${location.origin}/dang-ky?unit=${encodeURIComponent(unit.code)}`;
      replace(card, h("div", { class: "card" },
        h("h3", {}, unit.name),
        h("p", {}, t("units.headcount", { n: fmtNumber(unit.headcount) })),
        h("p", {}, t("units.link"), " ", h("a", { href: link }, link)),
        h("img", { src: `/api/units/${unit.id}/invite.svg`, alt: t("units.qr_alt", { name: unit.name }), width: "200", height: "200" }),
        h("p", {}, h("a", { href: `/api/units/${unit.id}/invite.png`, download: `qr-${unit.code}.png` }, t("units.qr_download")))));
    },
  });
  replace(ctx.main, adminNav("/quan-tri/don-vi"), h("h1", {}, t("units.title")),
    h("section", {}, h("h2", {}, t("units.import")),
      uploadForm({
        url: "/api/admin/units/import", label: t("units.file"), hint: t("units.file_hint"),
        successText: (a) => t("units.done", {
          n: fmtNumber(a.imported), created: fmtNumber(a.created ?? 0), updated: fmtNumber(a.updated ?? 0),
        }),
      })),
    h("section", {}, h("h2", {}, t("units.qr")), picker.wrap, card));
  return null;
}
