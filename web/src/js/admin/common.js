// Shared pieces of the organisers' pages.
import { api, session } from "../api.js";
import { h, notice, replace } from "../dom.js";
import { showFieldErrors } from "../forms.js";
import { TIME_ZONE, fmtNumber, problemText, t } from "../i18n.js";

/** The organisers' section links; `current` is the path of the page shown. */
export function adminNav(current, contest) {
  const links = [["/quan-tri", t("admin.contests")], ["/quan-tri/don-vi", t("admin.units")],
    ["/quan-tri/thong-bao", t("admin.notifications")]];
  if ((session() || {}).role === "organiser") links.push(["/quan-tri/luot-thi", t("replay.nav")]);
  if (contest) links.splice(1, 0, [`/quan-tri/c/${encodeURIComponent(contest.slug)}`, contest.title]);
  return h("nav", { class: "admin-nav", "aria-label": t("admin.nav") }, links.map(([href, text]) =>
    h("a", { href, "aria-current": href === current ? "page" : null }, text)));
}

/** A setting the API answers 404 not_found for until one is set: null then. */
export async function settingOrNull(url) {
  try {
    return await api(url);
  } catch (error) {
    if (error.status === 404 && error.code === "not_found") return null;
    throw error;
  }
}

/** A refused form: each field error next to its field, the rest in `message`. */
export function showProblem(error, fields, message) {
  const leftover = showFieldErrors(error, fields);
  replace(message, notice("bad", problemText(error), leftover.length ? h("ul", {}, leftover.map((m) => h("li", {}, m))) : null));
}

/** A contest page that could not load what it shows. */
export function contestPageError(ctx, contest, title, error) {
  replace(ctx.main, adminNav(null, contest), h("h1", {}, title), notice("bad", problemText(error)));
  return null;
}

export async function contestBySlug(slug) {
  return api(`/api/contests/${encodeURIComponent(slug)}`, { auth: false });
}

// datetime-local inputs hold Vietnam's wall-clock time. Vietnam has kept UTC+7 all year
// since 1975 (no daylight saving), so the offset is fixed.
const VN_OFFSET = "+07:00";

/** ISO instant → "YYYY-MM-DDTHH:mm" as a clock in Vietnam shows it. */
export function toLocalInput(iso) {
  if (!iso) return "";
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-CA", {
    timeZone: TIME_ZONE, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    hourCycle: "h23",
  }).formatToParts(new Date(iso)).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}`;
}

/** "YYYY-MM-DDTHH:mm" (Vietnam) → ISO 8601 with its offset, as the API wants it. */
export const fromLocalInput = (value) => (value ? `${value.length === 16 ? `${value}:00` : value}${VN_OFFSET}` : null);

/** A table of every bad row of an upload: row, column, message. */
export function rowErrors(error) {
  const rows = error.errors || [];
  return notice("bad",
    h("p", {}, problemText(error)),
    rows.length ? h("p", { dataset: { testid: "error-count" } }, t("import.bad_rows", { n: fmtNumber(rows.length) })) : null,
    rows.length ? h("div", { class: "table-wrap" }, h("table", { class: "import-errors" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "num" }, t("import.row")),
        h("th", { scope: "col" }, t("import.column")), h("th", { scope: "col" }, t("import.message")))),
      h("tbody", {}, rows.map((e) => h("tr", {}, h("td", { class: "num" }, e.row ?? "—"),
        h("td", {}, e.field || "—"), h("td", {}, e.message)))))) : null);
}

/**
 * An upload form (CSV or XLSX) posting multipart field `file` to `url`; shows the count
 * imported or every bad row.
 */
export function uploadForm({ url, label, hint, onDone, successText }) {
  const id = `upload-${url.replace(/\W+/g, "-")}`;
  const input = h("input", { type: "file", id, name: "file", accept: ".csv,.xlsx,text/csv,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", required: true, "aria-describedby": `${id}-hint` });
  const result = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "submit", class: "btn" }, t("import.submit"));
  return h("form", {
    class: "card",
    onsubmit: async (event) => {
      event.preventDefault();
      if (!input.files.length) {
        replace(result, notice("bad", t("import.pick_file")));
        input.focus();
        return;
      }
      const form = new FormData();
      form.append("file", input.files[0]);
      button.disabled = true;
      replace(result, h("p", { class: "meta" }, t("import.sending")));
      try {
        const answer = await api(url, { method: "POST", form });
        replace(result, notice("ok", successText(answer)));
        if (onDone) onDone(answer);
      } catch (error) {
        replace(result, rowErrors(error));
      } finally {
        button.disabled = false;
      }
    },
  }, h("label", { for: id }, label), h("p", { class: "hint", id: `${id}-hint` }, hint), input,
  h("div", { class: "actions" }, button), result);
}

/** Fetches an export with the organiser's token and saves it (a plain link could not send the token). */
export async function fetchBlob(url, accept) {
  const response = await api(url, { raw: true, headers: { Accept: accept } });
  return response.blob();
}

export const TIE_BREAK = ["correct", "prediction_error", "duration", "submitted_at", "started_at", "attempts_used"];
export const DEFAULT_TIE_BREAK = ["correct", "prediction_error", "duration", "submitted_at"];
