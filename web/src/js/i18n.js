// Vietnamese first, English on request; every date and time in Asia/Ho_Chi_Minh whatever
// the phone's own time zone is.
import { MESSAGES } from "./messages.js";

export const TIME_ZONE = "Asia/Ho_Chi_Minh";
const LANG_KEY = "hoithi.lang";
const LOCALES = { vi: "vi-VN", en: "en-GB" };

let current = (() => {
  try {
    const saved = localStorage.getItem(LANG_KEY);
    return saved === "en" || saved === "vi" ? saved : "vi";
  } catch {
    return "vi";
  }
})();

export const lang = () => current;
export const locale = () => LOCALES[current];

export function setLang(next) {
  current = next === "en" ? "en" : "vi";
  try {
    localStorage.setItem(LANG_KEY, current);
  } catch {
    // private mode: the choice lasts for this page only
  }
  document.documentElement.lang = current;
  formatters.clear();
}

/** t("quiz.answered", {n: 3, total: 10}); a missing key is reported and shown as the key. */
export function t(key, params) {
  const entry = MESSAGES[key];
  let text = entry ? entry[current] ?? entry.vi : undefined;
  if (text === undefined) {
    console.warn(`i18n missing: ${key}`);
    text = key;
  }
  if (params) text = text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
  return text;
}

const formatters = new Map();
function formatter(kind, options) {
  const key = `${current}|${kind}`;
  if (!formatters.has(key)) {
    formatters.set(key, kind.startsWith("n:")
      ? new Intl.NumberFormat(locale(), options)
      : new Intl.DateTimeFormat(locale(), { timeZone: TIME_ZONE, ...options }));
  }
  return formatters.get(key);
}

const asDate = (value) => (value instanceof Date ? value : new Date(value));

/** "14:05 03/03/2025" (vi) or "03/03/2025, 14:05" (en), in Vietnam's time. */
export const fmtDateTime = (value) => formatter("dt", {
  day: "2-digit", month: "2-digit", year: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
}).format(asDate(value));

export const fmtDate = (value) => formatter("d", { day: "2-digit", month: "2-digit", year: "numeric" })
  .format(asDate(value));

export const fmtTime = (value) => formatter("t", { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" })
  .format(asDate(value));

export const fmtNumber = (value) => formatter("n:int", { maximumFractionDigits: 0 }).format(value);

export const fmtPercent = (ratio) => formatter("n:pct", { style: "percent", maximumFractionDigits: 1 }).format(ratio);

const pad = (n) => String(n).padStart(2, "0");

/** A timer: "09:05" or "1:02:03". */
export function fmtClock(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  return hours ? `${hours}:${pad(minutes)}:${pad(seconds)}` : `${pad(minutes)}:${pad(seconds)}`;
}

/** A countdown to a round's close: "2 ngày 03:12:05". */
export function fmtCountdown(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const days = Math.floor(total / 86400);
  const clock = `${pad(Math.floor((total % 86400) / 3600))}:${pad(Math.floor((total % 3600) / 60))}:${pad(total % 60)}`;
  return days ? `${t("time.days", { n: days })} ${clock}` : clock;
}

/** How long an attempt took: "3 phút 12,4 giây". */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined) return "—";
  const minutes = Math.floor(ms / 60000);
  const seconds = (ms % 60000) / 1000;
  const secondsText = new Intl.NumberFormat(locale(), { minimumFractionDigits: 1, maximumFractionDigits: 1 })
    .format(Math.floor(seconds * 10) / 10);
  return minutes ? t("time.min_sec", { m: minutes, s: secondsText }) : t("time.sec", { s: secondsText });
}

/** The problem's own (already translated) detail, else a generic line for the status. */
export function problemText(error) {
  if (!error) return t("error.generic");
  if (error.status === 0) return t("error.network");
  if (error.problem && error.problem.detail) return error.problem.detail;
  if (error.status >= 500) return t("error.server");
  return t("error.generic");
}
