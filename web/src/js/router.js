// A tiny history-API router. A page module exports `render(ctx)`, which fills ctx.main
// and may return a cleanup function (timers, listeners) run when the page is left.
import { announce } from "./dom.js";
import { t } from "./i18n.js";

const routes = [];
let cleanup = null;
let renderCount = 0;
let firstRender = true;

/** route("/c/:slug", () => import("./pages/contest.js")) — first match wins. */
export function route(pattern, load) {
  const names = [];
  const source = pattern === "*" ? ".*" : pattern.replace(/\/:(\w+)/g, (m, name) => {
    names.push(name);
    return "/([^/]+)";
  });
  routes.push({ regex: new RegExp(`^${source}/?$`), names, load });
}

export function navigate(to, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  return render();
}

/** Re-render the current page (after a language switch or a sign-in). */
export const refresh = () => render({ keepFocus: true });

function onClick(event) {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
    return;
  }
  const a = event.target.closest && event.target.closest("a[href]");
  if (!a || a.target || a.hasAttribute("download") || a.origin !== location.origin) return;
  if (a.pathname.startsWith("/api/") || a.pathname.startsWith("/assets/")) return;
  if (a.pathname === location.pathname && a.search === location.search && a.hash) return; // in-page anchor
  event.preventDefault();
  navigate(a.pathname + a.search + a.hash);
}

export function start() {
  document.addEventListener("click", onClick);
  window.addEventListener("popstate", () => render());
  return render();
}

export async function render({ keepFocus = false } = {}) {
  const count = ++renderCount;
  if (cleanup) {
    try {
      cleanup();
    } catch (error) {
      console.error(error);
    }
    cleanup = null;
  }
  const main = document.getElementById("main");
  let path = location.pathname;
  try {
    path = decodeURI(path);
  } catch {
    // a malformed address: match it as it is (it will be "not found")
  }
  document.body.classList.remove("wide");
  const found = routes.map((r) => ({ r, m: r.regex.exec(path) })).find((x) => x.m);
  const params = {};
  if (found) found.r.names.forEach((name, i) => { params[name] = decodeURIComponent(found.m[i + 1]); });
  main.replaceChildren();
  main.setAttribute("aria-busy", "true");
  const ctx = {
    params,
    path,
    query: new URLSearchParams(location.search),
    main,
    navigate,
    isCurrent: () => count === renderCount,
    setTitle(text) {
      document.title = text ? `${text} — ${t("app.name")}` : t("app.name");
    },
  };
  try {
    const page = await found.r.load();
    if (count !== renderCount) return;
    const result = await page.render(ctx);
    if (count !== renderCount) {
      if (typeof result === "function") result();
      return;
    }
    cleanup = typeof result === "function" ? result : null;
  } catch (error) {
    console.error(error);
    if (count === renderCount) {
      main.replaceChildren();
      const p = document.createElement("p");
      p.className = "notice bad";
      p.setAttribute("role", "alert");
      p.textContent = t("error.page");
      main.append(p);
    }
  } finally {
    if (count === renderCount) main.removeAttribute("aria-busy");
  }
  if (count !== renderCount) return;
  // Moving focus to the new content tells keyboard and screen-reader users the page
  // changed; not on the first load, where the browser's own focus is right.
  if (!firstRender && !keepFocus) {
    main.focus({ preventScroll: true });
    window.scrollTo(0, 0);
    announce(document.title);
  }
  firstRender = false;
}
