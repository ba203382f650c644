// Rows of inputs an organiser adds and removes (rate rules, reminder times), whose
// problem+json errors land where they point: errors[].field "min_rates.1.min_rate" next to
// row 1's rate, "min_rates.1" under row 1, "min_rates" under the whole list.
import { h, nextId } from "../dom.js";
import { t } from "../i18n.js";

function cell(listName, column, value) {
  const id = nextId(`${listName}-${column.name}`);
  const hintId = column.hint ? `${id}-hint` : null;
  const error = h("p", { class: "error", id: `${id}-error` });
  const input = h("input", {
    id, name: column.name, type: column.type || "text", value: value ?? "",
    "aria-describedby": [hintId, `${id}-error`].filter(Boolean).join(" "), ...(column.attrs || {}),
  });
  const setError = (message) => {
    error.textContent = message || "";
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  };
  const wrap = h("div", { dataset: { field: column.name } }, h("label", { for: id }, column.label),
    column.hint ? h("span", { class: "hint", id: hintId }, column.hint) : null, input, error);
  return { name: column.name, input, setError, wrap };
}

/**
 * columns: [{name, label, type, attrs, hint}]; rows: initial values, one object per row.
 * Returns {wrap, addRow(values), used(), fields(), clearErrors()}.
 */
export function editableRows({ name, legend, hint, columns, rows = [], addLabel }) {
  const body = h("div");
  const listError = h("p", { class: "error", id: nextId(`${name}-error`) });
  const all = [];

  function addRow(values = {}) {
    const cells = columns.map((column) => cell(name, column, values[column.name]));
    const rowError = h("p", { class: "error row-error" });
    const element = h("div", { class: "row entry", dataset: { row: name } }, cells.map((c) => c.wrap),
      h("div", { class: "end" }, h("button", {
        type: "button", class: "btn secondary small", "aria-label": t("form.remove_row"),
        onclick: () => {
          element.remove();
          all.splice(all.indexOf(entry), 1);
        },
      }, t("form.remove"))),
      rowError);
    const entry = {
      element,
      cells,
      values: () => Object.fromEntries(cells.map((c) => [c.name, c.input.value.trim()])),
      setError(message) { rowError.textContent = message || ""; },
    };
    all.push(entry);
    body.append(element);
    return entry;
  }

  rows.forEach(addRow);
  const wrap = h("fieldset", { dataset: { field: name } }, h("legend", {}, legend),
    hint ? h("p", { class: "hint" }, hint) : null, body,
    h("button", { type: "button", class: "btn secondary small", onclick: () => addRow().cells[0].input.focus() }, addLabel),
    listError);

  /** The rows with anything typed in, in the order shown (the order the API numbers them). */
  const used = () => all.filter((row) => Object.values(row.values()).some(Boolean));

  /** Error targets by API field name, for showFieldErrors (forms.js): the list, each used row, each of its inputs. */
  function fields() {
    const targets = { [name]: { setError(message) { listError.textContent = message || ""; }, input: null } };
    used().forEach((row, i) => {
      targets[`${name}.${i}`] = { setError: row.setError, input: row.cells[0].input };
      for (const c of row.cells) targets[`${name}.${i}.${c.name}`] = c;
    });
    return targets;
  }

  function clearErrors() {
    listError.textContent = "";
    for (const row of all) {
      row.setError("");
      row.cells.forEach((c) => c.setError(""));
    }
  }

  return { wrap, addRow, used, fields, clearErrors };
}

/** A rate as the organiser types it (percent) → as the API takes it (0..1); "" stays null. */
export const rateFromPercent = (text) => (String(text).trim() === "" ? null : Number(String(text).replace(",", ".")) / 100);

/** 0.905 → "90.5" (no floating-point tails such as 70.00000000000001). */
export const percentFromRate = (rate) => (rate === null || rate === undefined ? "" : String(Math.round(rate * 10000) / 100));
