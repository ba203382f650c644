// The HTTP client: one origin (the gateway), JSON in and out, RFC 9457 problems as
// ApiError, the bearer token, and the server's clock.
import { lang } from "./i18n.js";

const AUTH_KEY = "hoithi.auth";

export class ApiError extends Error {
  constructor(status, problem, retryAfterS) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;             // 0: the request never got an answer
    this.problem = problem || {};
    this.code = this.problem.code || (status === 0 ? "network" : `http_${status}`);
    this.errors = Array.isArray(this.problem.errors) ? this.problem.errors : [];
    this.retryAfterS = retryAfterS;   // seconds, or null
  }

  /** Worth retrying later with the same body: the server was away or busy, nothing was written. */
  get transient() {
    return this.status === 0 || this.status === 502 || this.status === 503 || this.status === 504 || this.status === 429;
  }
}

// --- the session ------------------------------------------------------------------------

function decodeClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(Array.from(atob(part), (c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`).join(""));
    return JSON.parse(json);
  } catch {
    return {};
  }
}

export function session() {
  try {
    const saved = JSON.parse(localStorage.getItem(AUTH_KEY) || "null");
    return saved && saved.access_token ? saved : null;
  } catch {
    return null;
  }
}

/** Stores a login answer: {access_token, expires_in, refresh_token?}. */
export function saveSession(tokens) {
  const previous = session();
  const claims = decodeClaims(tokens.access_token);
  const saved = {
    access_token: tokens.access_token,
    // Kept from before when a refresh answer does not rotate it.
    refresh_token: tokens.refresh_token || (previous && previous.refresh_token) || null,
    expires_at: Date.now() + (tokens.expires_in || 3600) * 1000,
    id: claims.sub || null,
    role: claims.role || "participant",
    name: claims.name || "",
    unit_id: claims.unit || null,
    group: claims.group || null,
  };
  localStorage.setItem(AUTH_KEY, JSON.stringify(saved));
  window.dispatchEvent(new CustomEvent("hoithi:session"));
  return saved;
}

export function signOut() {
  const current = session();
  if (current && current.refresh_token) {
    // Ends the session on the server too; the access token in hand simply expires.
    fetch("/api/auth/logout", {
      method: "POST", headers: { "Content-Type": "application/json" }, keepalive: true,
      body: JSON.stringify({ refresh_token: current.refresh_token }),
    }).catch(() => {});
  }
  localStorage.removeItem(AUTH_KEY);
  window.dispatchEvent(new CustomEvent("hoithi:session"));
}

export const isStaff = (s) => Boolean(s && (s.role === "organiser" || s.role === "coordinator"));

// --- the server's clock -----------------------------------------------------------------
// Timers follow the server, never the phone alone: each answer bounds the offset between
// the server's clock and this one. The Date header (1 s resolution) stamped between our
// send and our receive says offset ∈ [D − received, D + 1 s − sent]; intersecting those
// intervals narrows it to well under a second after a few requests. An interval that
// contradicts the others means a clock jumped: start again from it.

let offsetLow = -Infinity;
let offsetHigh = Infinity;

export function observeServerTime(serverLowMs, serverHighMs, sentAtMs, receivedAtMs) {
  const low = serverLowMs - receivedAtMs;
  const high = serverHighMs - sentAtMs;
  if (!(low <= high)) return;
  if (low > offsetHigh || high < offsetLow) {
    offsetLow = low;
    offsetHigh = high;
  } else {
    offsetLow = Math.max(offsetLow, low);
    offsetHigh = Math.min(offsetHigh, high);
  }
}

export function clockOffsetMs() {
  return Number.isFinite(offsetLow) && Number.isFinite(offsetHigh) ? (offsetLow + offsetHigh) / 2 : 0;
}

export function clockKnown() {
  return Number.isFinite(offsetLow) && Number.isFinite(offsetHigh);
}

/** The server's time now, in ms since the epoch. */
export function serverNow() {
  return Date.now() + clockOffsetMs();
}

/** Ask the gateway for its time (cheap: /healthz is answered by nginx itself). */
export async function syncClock() {
  const sent = Date.now();
  try {
    const response = await fetch("/healthz", { cache: "no-store" });
    noteDate(response, sent, Date.now());
  } catch {
    // Offline: keep the estimate we have.
  }
}

function noteDate(response, sent, received) {
  const date = Date.parse(response.headers.get("date") || "");
  if (!Number.isNaN(date)) observeServerTime(date, date + 1000, sent, received);
}

// --- requests ---------------------------------------------------------------------------

let refreshing = null;

async function refreshSession() {
  const current = session();
  if (!current || !current.refresh_token) return false;
  if (!refreshing) {
    refreshing = (async () => {
      try {
        const response = await fetch("/api/auth/refresh", {
          method: "POST",
          headers: { "Content-Type": "application/json", "Accept-Language": lang() },
          body: JSON.stringify({ refresh_token: current.refresh_token }),
        });
        if (!response.ok) return false;
        saveSession(await response.json());
        return true;
      } catch {
        return false;
      } finally {
        setTimeout(() => { refreshing = null; }, 0);
      }
    })();
  }
  return refreshing;
}

/**
 * api("/api/contests/demo") → parsed JSON. Options: method, json (body), form (FormData),
 * headers, auth (default true), raw (return the Response), retry401 (internal).
 * Throws ApiError with the problem's code, detail and field errors.
 */
export async function api(path, options = {}) {
  const { method = "GET", json, form, headers = {}, auth = true, raw = false, signal } = options;
  const sendHeaders = { "Accept-Language": lang(), Accept: "application/json, application/problem+json", ...headers };
  const current = session();
  if (auth && current) sendHeaders.Authorization = `Bearer ${current.access_token}`;
  let body;
  if (json !== undefined) {
    sendHeaders["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  const sent = Date.now();
  let response;
  try {
    response = await fetch(path, { method, headers: sendHeaders, body, signal, cache: "no-store" });
  } catch (error) {
    if (error && error.name === "AbortError") throw error;
    throw new ApiError(0, { code: "network" }, null);
  }
  const received = Date.now();
  noteDate(response, sent, received);
  if (response.status === 401 && auth && current && !options.retried && (await refreshSession())) {
    return api(path, { ...options, retried: true });
  }
  if (!response.ok) {
    let problem = null;
    try {
      problem = await response.json();
    } catch {
      problem = { title: response.statusText };
    }
    const retryAfter = Number.parseFloat(response.headers.get("retry-after") || "");
    throw new ApiError(response.status, problem, Number.isFinite(retryAfter) ? retryAfter : null);
  }
  if (raw) return response;
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  return attachMeta(data, response, sent, received);
}

// The quiz needs the exact send/receive instants of the start request to bound the clock
// by the attempt's own start; kept off the enumerable properties so JSON stays clean.
function attachMeta(data, response, sent, received) {
  if (data && typeof data === "object") {
    Object.defineProperty(data, "$http", { value: { status: response.status, sent, received }, enumerable: false });
  }
  return data;
}
