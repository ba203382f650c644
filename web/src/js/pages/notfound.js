import { h, replace } from "../dom.js";
import { t } from "../i18n.js";

export async function render(ctx) {
  ctx.setTitle(t("notfound.title"));
  replace(ctx.main, h("h1", {}, t("notfound.title")), h("p", {}, t("notfound.text")), h("p", {}, h("a", { href: "/" }, t("notfound.home"))));
  return null;
}
