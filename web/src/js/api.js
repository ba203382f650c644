// The HTTP client: one origin (the gateway), JSON in and out, RFC 9457 problems as
// ApiError, the session (access token in memory, refresh token in an HttpOnly cookie),
// and the server's clock.
import { lang } from "./i18n.js";

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
// The access token lives in this module's memory only, never in storage a script could
// read back later. The 30-day refresh token never reaches this code at all: the server
// keeps it in an HttpOnly, Secure, SameSite=Strict cookie sent only to /api/auth/, which
// it sets when a request carries X-Refresh-Cookie: 1 (also the header that refresh and
// logout demand before they accept the cookie, so a page on another site cannot use it).
// A reload restores the session by calling refresh with the cookie (restoreSession).
// localStorage keeps one flag, no token: whether a restore is worth a request, and how
// other tabs hear of a sign-in or a sign-out.

const SIGNED_IN_KEY = "hoithi.signed_in";
const COOKIE_MODE = { "X-Refresh-Cookie": "1" };
let current = null;

try {
  localStorage.removeItem("hoithi.auth"); // the tokens earlier versions kept there
} catch {
  // no storage: nothing was kept either
}

function decodeClaims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(Array.from(atob(part), (c) => `%${c.charCodeAt(0).toString(16).padStart(2, "0")}`).join(""));
    return JSON.parse(json);
  } catch {
    return {};
  }
}

/** The signed-in person ({access_token, role, name, id, unit_id, group}), or null. */
export function session() {
  return current;
}

function announceSession() {
  window.dispatchEvent(new CustomEvent("hoithi:session"));
}

function flagSignedIn(on) {
  try {
    if (on) localStorage.setItem(SIGNED_IN_KEY, "1");
    else localStorage.removeItem(SIGNED_IN_KEY);
  } catch {
    // Storage refused (private mode): this tab still works; a reload signs in again.
  }
}

/** Keeps a login or refresh answer ({access_token, expires_in}) in memory. */
function keepSession(tokens) {
  const claims = decodeClaims(tokens.access_token);
  current = {
    access_token: tokens.access_token,
    expires_at: Date.now() + (tokens.expires_in || 900) * 1000,
    id: claims.sub || null,
    role: claims.role || "participant",
    name: claims.name || "",
    unit_id: claims.unit || null,
    group: claims.group || null,
  };
  flagSignedIn(true);
  announceSession();
  return current;
}

function forgetSession() {
  const had = current !== null;
  current = null;
  flagSignedIn(false);
  if (had) announceSession();
}

/** Signs in (the refresh token goes to the cookie); returns the session. Throws ApiError. */
export async function signIn(login, password) {
  const tokens = await api("/api/auth/login", {
    method: "POST", json: { login, password }, auth: false, headers: COOKIE_MODE,
  });
  return keepSession(tokens);
}

/** Ends the session here, on the server, and in every tab of this browser. */
export async function signOut() {
  forgetSession();
  try {
    await fetch("/api/auth/logout", { method: "POST", headers: COOKIE_MODE, keepalive: true, cache: "no-store" });
  } catch {
    // Offline: the cookie stays until it expires or the next sign-out; this tab has forgotten the session.
  }
}

/** After a page load: the session back from the cookie, if this browser was signed in. */
export async function restoreSession() {
  let flagged = false;
  try {
    flagged = localStorage.getItem(SIGNED_IN_KEY) === "1";
  } catch {
    flagged = false;
  }
  if (!current && flagged) await refreshSession();
  return current;
}

// Another tab signed in (restore from the shared cookie) or out (forget ours too).
window.addEventListener("storage", (event) => {
  if (event.key !== SIGNED_IN_KEY) return;
  if (event.newValue === "1" && !current) refreshSession();
  else if (event.newValue !== "1" && current) forgetSession();
});

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

// One refresh at a time across this browser's tabs: each uses the refresh token up and
// sets the next, and two sending the same one would look like a stolen copy to the server
// (which then ends the session). Inside the lock the browser sends the newest cookie.
function oneAtATime(work) {
  return navigator.locks ? navigator.locks.request("hoithi-refresh", work) : work();
}

/** A new access token from the cookie; false when the session is over (or unreachable). */
function refreshSession() {
  if (!refreshing) {
    refreshing = oneAtATime(async () => {
      try {
        const response = await fetch("/api/auth/refresh", {
          method: "POST", headers: { ...COOKIE_MODE, "Accept-Language": lang() }, cache: "no-store",
        });
        if (response.ok) {
          keepSession(await response.json());
          return true;
        }
        if (response.status === 401 || response.status === 403) forgetSession();
        return false;
      } catch {
        return false; // offline or the gateway away: keep what we have and try again later
      }
    }).finally(() => setTimeout(() => { refreshing = null; }, 0));
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
  const who = session();
  if (auth && who) sendHeaders.Authorization = `Bearer ${who.access_token}`;
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
  if (response.status === 401 && auth && who && !options.retried && (await refreshSession())) {
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
