// The live participation dashboard: per unit participants ÷ headcount as bars sorted by
// rate, the units at 100 %, attempts over time, score bands, and the exports. Charts are
// drawn here with SVG: no chart library to download.
import { api } from "../api.js";
import { download, h, notice, replace } from "../dom.js";
import { fmtDate, fmtDateTime, fmtNumber, fmtPercent, fmtTime, problemText, t } from "../i18n.js";
import { adminNav, fetchBlob } from "./common.js";

const REFRESH_MS = 30_000;
const BARS_SHOWN = 30;
const XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

const rateOf = (u) => {
  if (u.headcount > 0) return u.participants / u.headcount;
  return null;
};

/** The report's units, whatever the exact shape: a list, or {units: [...]}. */
export function unitsOf(report) {
  const list = Array.isArray(report) ? report : report.units || [];
  return list.map((u) => ({
    ...u,
    participants: Number(u.participants || 0),
    headcount: Number(u.headcount || 0),
    attempts: u.attempts === undefined ? null : Number(u.attempts),
  }));
}

/** Sorted by rate (highest first), then participants, then name. */
export function byRate(units) {
  return [...units].sort((a, b) => (rateOf(b) ?? -1) - (rateOf(a) ?? -1) || b.participants - a.participants
    || String(a.name).localeCompare(String(b.name), "vi"));
}

/** The bar's length through the CSSOM: the gateway's CSP refuses style="" attributes. */
function barFill(percent) {
  const fill = h("span", { class: "fill" });
  fill.style.width = `${percent.toFixed(1)}%`;
  return fill;
}

function bars(units) {
  return h("ul", { class: "bars", "aria-label": t("dash.bars_label") }, units.map((u) => {
    const rate = rateOf(u);
    const width = rate === null ? 0 : Math.min(100, rate * 100);
    return h("li", { class: rate !== null && rate >= 1 ? "full" : null },
      h("span", {}, u.name, u.code ? h("span", { class: "meta" }, ` (${u.code})`) : null,
        u.is_leaf === false ? h("span", { class: "meta" }, ` — ${t("dash.subtree")}`) : null),
      h("span", { class: "track", "aria-hidden": "true" }, barFill(width)),
      h("span", { class: "num" }, `${fmtNumber(u.participants)}/${fmtNumber(u.headcount)} · ${rate === null ? "—" : fmtPercent(rate)}`));
  }));
}

/** A simple SVG column chart; points: [{label, value}]. */
function columnChart(points, { title, valueLabel }) {
  const width = 640;
  const height = 220;
  const pad = { top: 14, right: 8, bottom: 36, left: 40 };
  const max = Math.max(1, ...points.map((p) => p.value));
  const innerW = width - pad.left - pad.right;
  const innerH = height - pad.top - pad.bottom;
  const step = innerW / Math.max(1, points.length);
  const barW = Math.max(2, step * 0.75);
  const labelEvery = Math.ceil(points.length / 12);
  const svg = h("svg:svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title },
    h("svg:title", {}, title),
    h("svg:line", { x1: pad.left, y1: pad.top + innerH, x2: width - pad.right, y2: pad.top + innerH, stroke: "#64748b" }),
    h("svg:text", { x: pad.left - 6, y: pad.top + 4, "text-anchor": "end" }, fmtNumber(max)),
    h("svg:text", { x: pad.left - 6, y: pad.top + innerH, "text-anchor": "end" }, "0"),
    points.map((p, i) => {
      const barH = (p.value / max) * innerH;
      const x = pad.left + i * step + (step - barW) / 2;
      return [
        h("svg:rect", { x: x.toFixed(1), y: (pad.top + innerH - barH).toFixed(1), width: barW.toFixed(1), height: barH.toFixed(1), fill: "#9f1239" },
          h("svg:title", {}, `${p.label}: ${fmtNumber(p.value)} ${valueLabel}`)),
        i % labelEvery === 0 ? h("svg:text", { x: (x + barW / 2).toFixed(1), y: height - pad.bottom + 14, "text-anchor": "middle" }, p.label) : null,
      ];
    }));
  // The same figures as a table for screen readers and for copying.
  const table = h("details", {}, h("summary", {}, t("dash.as_table")), h("table", {},
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, title), h("th", { scope: "col", class: "num" }, valueLabel))),
    h("tbody", {}, points.map((p) => h("tr", {}, h("td", {}, p.label), h("td", { class: "num" }, fmtNumber(p.value)))))));
  return h("figure", {}, svg, table);
}

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
const VN_OFFSET_MS = 7 * HOUR_MS; // Vietnam keeps UTC+7 all year
const MAX_HOUR_COLUMNS = 72;

/**
 * The report's attempts_over_time ([{at: UTC hour start, attempts}], hours without any
 * left out) as columns: one per hour, the empty hours filled in, so that the chart's
 * width is time; over more than three days, one per day of Vietnam's calendar.
 * Returns {points: [{label, value}], per: "hour" | "day"}.
 */
export function timeline(report) {
  const raw = report.attempts_over_time || [];
  const hours = raw
    .map((p) => ({ at: Date.parse(p.at), value: Number(p.attempts ?? 0) }))
    .filter((p) => Number.isFinite(p.at))
    .sort((a, b) => a.at - b.at);
  if (!hours.length) return { points: [], per: "hour" };
  const first = hours[0].at;
  const last = hours[hours.length - 1].at;
  if ((last - first) / HOUR_MS < MAX_HOUR_COLUMNS) {
    const counts = new Map(hours.map((p) => [p.at, p.value]));
    const overDays = fmtDate(first) !== fmtDate(last);
    const points = [];
    for (let at = first; at <= last; at += HOUR_MS) {
      const clock = `${fmtTime(at).slice(0, 2)}:00`;
      points.push({ label: overDays ? `${fmtDate(at).slice(0, 5)} ${clock}` : clock, value: counts.get(at) || 0 });
    }
    return { points, per: "hour" };
  }
  const dayOf = (at) => Math.floor((at + VN_OFFSET_MS) / DAY_MS) * DAY_MS - VN_OFFSET_MS;
  const counts = new Map();
  for (const p of hours) counts.set(dayOf(p.at), (counts.get(dayOf(p.at)) || 0) + p.value);
  const points = [];
  for (let day = dayOf(first); day <= dayOf(last); day += DAY_MS) {
    points.push({ label: fmtDate(day).slice(0, 5), value: counts.get(day) || 0 });
  }
  return { points, per: "day" };
}

function bands(report) {
  const raw = report.score_bands || [];
  if (!Array.isArray(raw)) return Object.entries(raw).map(([label, value]) => ({ label, value: Number(value) }));
  return raw.map((b) => ({
    label: b.band ?? b.label ?? (b.min_correct === b.max_correct ? String(b.min_correct) : `${b.min_correct}–${b.max_correct}`),
    value: Number(b.entries ?? b.count ?? 0),
  }));
}

export async function dashboard(ctx, contest, round) {
  const base = `/quan-tri/c/${encodeURIComponent(contest.slug)}`;
  const title = round ? `${t("dash.title")} — ${t("round.name", round)}` : `${t("dash.title")} — ${contest.title}`;
  ctx.setTitle(title);
  const body = h("div", { "aria-live": "polite", "aria-busy": "true" }, h("p", { class: "loading" }, t("common.loading")));
  const exportMessage = h("div", { "aria-live": "polite" });
  let timer = null;
  let showAll = false;
  let lastReport = null;

  const query = (contestKey) => {
    const params = new URLSearchParams({ contest: contestKey });
    if (round) params.set("round", round.id);
    return params;
  };
  // The report may key contests by id or by slug: ask by id, then by slug.
  let contestKey = contest.id;
  async function fetchReport() {
    try {
      return await api(`/api/reports/participation?${query(contestKey)}`);
    } catch (error) {
      if ((error.status === 404 || error.status === 422) && contestKey === contest.id && error.problem.code !== "not_found") {
        contestKey = contest.slug;
        return api(`/api/reports/participation?${query(contestKey)}`);
      }
      throw error;
    }
  }

  async function exportAs(kind) {
    replace(exportMessage, h("p", { class: "meta" }, t("dash.exporting")));
    const params = query(contestKey);
    params.set("format", kind);
    try {
      const blob = await fetchBlob(`/api/reports/participation?${params}`, kind === "csv" ? "text/csv" : XLSX);
      const name = `tham-gia-${contest.slug}${round ? `-vong-${round.number}` : ""}.${kind}`;
      download(blob, name);
      replace(exportMessage, notice("ok", t("dash.exported", { name })));
    } catch (error) {
      replace(exportMessage, notice("bad", problemText(error)));
    }
  }

  function draw(report) {
    lastReport = report;
    const units = byRate(unitsOf(report));
    const complete = units.filter((u) => ("complete" in u ? u.complete : u.headcount > 0 && u.participants >= u.headcount));
    const participants = report.participants ?? units.reduce((n, u) => n + u.participants, 0);
    const headcount = units.filter((u) => u.is_leaf !== false).reduce((n, u) => n + u.headcount, 0);
    const shown = showAll ? units : units.slice(0, BARS_SHOWN);
    const time = timeline(report);
    const scores = bands(report);
    replace(body,
      h("dl", { class: "facts" },
        h("dt", {}, t("dash.participants")), h("dd", { dataset: { testid: "participants" } }, fmtNumber(participants)),
        report.attempts !== undefined ? [h("dt", {}, t("dash.attempts")), h("dd", {}, fmtNumber(report.attempts))] : null,
        headcount ? [h("dt", {}, t("dash.rate")), h("dd", {}, fmtPercent(participants / headcount))] : null,
        h("dt", {}, t("dash.complete")), h("dd", {}, fmtNumber(report.units_complete ?? complete.length)),
        report.all_correct !== undefined ? [h("dt", {}, t("dash.all_correct")), h("dd", {}, fmtNumber(report.all_correct))] : null,
        report.generated_at ? [h("dt", {}, t("dash.generated")), h("dd", {}, fmtDateTime(report.generated_at))] : null),
      h("h2", {}, t("dash.by_unit")),
      units.length ? bars(shown) : h("p", { class: "meta" }, t("dash.no_units")),
      units.length > BARS_SHOWN ? h("button", {
        type: "button", class: "btn secondary small",
        onclick: () => { showAll = !showAll; draw(lastReport); },
      }, showAll ? t("dash.show_less") : t("dash.show_all", { n: fmtNumber(units.length) })) : null,
      h("h2", {}, t("dash.complete_units", { n: fmtNumber(complete.length) })),
      complete.length ? h("ul", { class: "complete-units" }, complete.map((u) => h("li", {}, u.name))) : h("p", { class: "meta" }, t("dash.none_complete")),
      h("h2", {}, t("dash.over_time")),
      time.points.length ? [
        h("p", { class: "meta" }, time.per === "day" ? t("dash.per_day") : t("dash.per_hour")),
        h("div", { dataset: { testid: "over-time" } },
          columnChart(time.points, { title: t("dash.over_time"), valueLabel: t("dash.attempts_unit") })),
      ] : h("p", { class: "meta" }, t("dash.no_timeline")),
      h("h2", {}, t("dash.bands")),
      scores.length ? columnChart(scores, { title: t("dash.bands"), valueLabel: t("dash.entries_unit") })
        : h("p", { class: "meta" }, t("dash.no_bands")));
  }

  async function load() {
    clearTimeout(timer);
    try {
      const report = await fetchReport();
      if (!ctx.isCurrent()) return;
      draw(report);
    } catch (error) {
      if (!ctx.isCurrent()) return;
      replace(body, notice(error.status === 404 ? "warn" : "bad",
        error.status === 404 && !error.problem.code ? t("dash.unavailable") : problemText(error)));
    } finally {
      body.setAttribute("aria-busy", "false");
    }
    if (ctx.isCurrent()) timer = setTimeout(() => { if (document.visibilityState === "visible") load(); else timer = setTimeout(load, REFRESH_MS); }, REFRESH_MS);
  }

  replace(ctx.main, adminNav(null, contest),
    h("h1", {}, title),
    h("p", {}, h("a", { href: round ? `${base}/vong/${round.id}` : base }, t("common.back"))),
    h("div", { class: "actions" },
      h("button", { type: "button", class: "btn", onclick: () => exportAs("csv") }, t("dash.export_csv")),
      h("button", { type: "button", class: "btn secondary", onclick: () => exportAs("xlsx") }, t("dash.export_xlsx")),
      h("button", { type: "button", class: "btn secondary", onclick: load }, t("dash.refresh"))),
    exportMessage, body);
  await load();
  return () => clearTimeout(timer);
}
