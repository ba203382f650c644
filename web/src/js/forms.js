// Problem+json field errors shown next to the fields they name.
import { problemText, t } from "./i18n.js";

/**
 * Shows problem+json field errors next to their fields; returns the messages no field took.
 * `fields` maps an API field name ("phone", "unit_id", …) to an object with setError().
 */
export function showFieldErrors(error, fields) {
  const leftover = [];
  let first = null;
  const byField = {};
  for (const e of error.errors) {
    const full = String(e.field || "");
    const name = fields[full] ? full : full.split(".").pop();
    if (fields[name]) (byField[name] ||= []).push(e.message);
    else if (e.row) leftover.push(t("import.row_message", { row: e.row, message: e.message }));
    else leftover.push(e.field && e.field !== "body" ? `${e.field}: ${e.message}` : e.message);
  }
  // A conflict names its field without an `errors` list: {code: "phone_taken", field: "phone"}.
  if (!error.errors.length && error.problem.field && fields[error.problem.field]) {
    byField[error.problem.field] = [problemText(error)];
  }
  for (const [name, target] of Object.entries(fields)) {
    const messages = byField[name];
    target.setError(messages ? messages.join(" ") : "");
    if (messages && !first) first = target;
  }
  if (first && first.input) first.input.focus();
  return leftover;
}
