// Entry point: the header, the routes, the language switch.
import { isStaff, restoreSession, session, signOut } from "./api.js";
import { h, replace } from "./dom.js";
import { lang, setLang, t } from "./i18n.js";
import * as contest from "./pages/contest.js";
import * as historyPage from "./pages/history.js";
import * as login from "./pages/login.js";
import * as notFound from "./pages/notfound.js";
import * as quiz from "./pages/quiz.js";
import * as result from "./pages/result.js";
import * as signup from "./pages/signup.js";
import { navigate, refresh, route, start } from "./router.js";
import { lastContest } from "./store.js";

// Participant pages ship with the entry (one round trip on a slow phone); the organisers'
// pages load only when an organiser opens them.
const page = (module) => () => Promise.resolve(module);
route("/", page(contest));
route("/c/:slug", page(contest));
route("/dang-ky", page(signup));
route("/dang-nhap", page(login));
route("/thi/:roundId", page(quiz));
route("/ket-qua/:attemptId", page(result));
route("/lich-su", page(historyPage));
route("/quan-tri", () => import("./admin/admin.js"));
route("/quan-tri/:section", () => import("./admin/admin.js"));
route("/quan-tri/c/:slug", () => import("./admin/admin.js"));
route("/quan-tri/c/:slug/:section", () => import("./admin/admin.js"));
route("/quan-tri/c/:slug/vong/:roundId", () => import("./admin/admin.js"));
route("/quan-tri/c/:slug/vong/:roundId/:section", () => import("./admin/admin.js"));
route("*", page(notFound));

function renderHeader() {
  const who = session();
  const contestHref = lastContest() ? `/c/${encodeURIComponent(lastContest())}` : "/";
  const items = [h("li", {}, h("a", { href: contestHref }, t("nav.contest")))];
  if (who && !isStaff(who)) items.push(h("li", {}, h("a", { href: "/lich-su" }, t("nav.history"))));
  if (isStaff(who)) items.push(h("li", {}, h("a", { href: "/quan-tri" }, t("nav.admin"))));
  if (who) {
    items.push(h("li", {}, h("button", {
      type: "button",
      class: "link",
      onclick: () => {
        signOut();
        navigate("/");
      },
    }, t("nav.signout"))));
  } else {
    items.push(h("li", {}, h("a", { href: "/dang-nhap" }, t("nav.signin"))));
    items.push(h("li", {}, h("a", { href: "/dang-ky" }, t("nav.signup"))));
  }
  const other = lang() === "vi" ? "en" : "vi";
  items.push(h("li", {}, h("button", {
    type: "button",
    class: "lang",
    lang: other,
    "aria-label": t("nav.lang_label"),
    onclick: () => {
      setLang(other);
      renderHeader();
      refresh();
    },
  }, other === "en" ? "English" : "Tiếng Việt")));
  replace(document.getElementById("top"), h("div", { class: "bar" },
    h("a", { class: "brand", href: contestHref }, t("app.name")),
    h("nav", { "aria-label": t("nav.label") }, h("ul", {}, items))));
  const skip = document.querySelector(".skip");
  if (skip) skip.textContent = t("nav.skip");
}

document.documentElement.lang = lang();
// Also when another tab signs in or out (api.js listens to storage).
window.addEventListener("hoithi:session", renderHeader);
// The session lives in memory: after a load, get it back from the refresh cookie first.
restoreSession().finally(() => {
  renderHeader();
  start();
});
