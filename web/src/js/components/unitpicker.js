// The unit picker: an ARIA combobox that searches the units as one types (the server
// ignores Vietnamese diacritics, so "le chan" finds "Lê Chân"), usable with arrows,
// Enter and Escape, and pre-filled from a unit code (the QR link's ?unit=CODE).
import { api } from "../api.js";
import { debounce, h, nextId } from "../dom.js";
import { t } from "../i18n.js";

/** Finds a unit by its exact code: the search matches code prefixes; by-code is exact when it exists. */
export async function unitByCode(code) {
  const wanted = code.trim().toLowerCase();
  if (!wanted) return null;
  try {
    const found = await api(`/api/units?q=${encodeURIComponent(code.trim())}&limit=20`, { auth: false });
    const exact = found.find((u) => u.code.toLowerCase() === wanted);
    if (exact) return exact;
  } catch {
    // fall through to the exact lookup
  }
  try {
    return await api(`/api/units/by-code/${encodeURIComponent(code.trim())}`, { auth: false });
  } catch {
    return null;
  }
}

/**
 * unitPicker({label, name, required, hint, onChange}) →
 *   {wrap, input, setError(msg), value() → unit | null, select(unit), selectByCode(code) → Promise<unit|null>}
 */
export function unitPicker({ label, name = "unit_id", required = false, hint, onChange } = {}) {
  const id = nextId("unit");
  const listId = `${id}-list`;
  const errorId = `${id}-error`;
  const hintId = `${id}-hint`;
  const pickedId = `${id}-picked`;
  let selected = null;
  let options = [];
  let active = -1;
  let seq = 0;

  const input = h("input", {
    id, name: `${name}_search`, type: "text", role: "combobox", autocomplete: "off", spellcheck: "false",
    "aria-autocomplete": "list", "aria-expanded": "false", "aria-controls": listId,
    "aria-describedby": `${hintId} ${pickedId} ${errorId}`, required,
  });
  const list = h("ul", { id: listId, role: "listbox", "aria-label": label, hidden: true });
  const status = h("p", { class: "hint", role: "status" });
  const picked = h("p", { class: "picked", id: pickedId });
  const error = h("p", { class: "error", id: errorId });
  const wrap = h("div", { class: "field", dataset: { field: name } },
    h("label", { for: id }, label, required ? h("span", { "aria-hidden": "true" }, " *") : null),
    h("span", { class: "hint", id: hintId }, hint || t("unit.hint")),
    h("div", { class: "combo" }, input, list), status, picked, error);

  const close = () => {
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    input.removeAttribute("aria-activedescendant");
    active = -1;
  };

  const highlight = (index) => {
    active = index;
    [...list.children].forEach((li, i) => li.setAttribute("aria-selected", i === index ? "true" : "false"));
    if (index >= 0 && list.children[index]) {
      input.setAttribute("aria-activedescendant", list.children[index].id);
      list.children[index].scrollIntoView({ block: "nearest" });
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  };

  const select = (unit) => {
    selected = unit;
    input.value = unit ? unit.name : "";
    picked.textContent = unit ? t("unit.picked", { name: unit.name, code: unit.code }) : "";
    error.textContent = "";
    input.removeAttribute("aria-invalid");
    close();
    if (onChange) onChange(unit);
  };

  const show = (units) => {
    options = units;
    list.replaceChildren(...units.map((unit, i) => h("li", {
      id: `${listId}-${i}`, role: "option", "aria-selected": "false",
      onmousedown: (event) => event.preventDefault(), // keep focus in the input
      onclick: () => select(unit),
    }, unit.name, h("span", { class: "meta" }, t("unit.code", { code: unit.code })))));
    list.hidden = units.length === 0;
    input.setAttribute("aria-expanded", units.length ? "true" : "false");
    status.textContent = input.value.trim()
      ? (units.length ? t("unit.found", { n: units.length }) : t("unit.none"))
      : "";
    active = -1;
  };

  const search = debounce(async (text) => {
    const mine = ++seq;
    try {
      const units = await api(`/api/units?q=${encodeURIComponent(text)}&limit=20`, { auth: false });
      if (mine === seq && document.activeElement === input) show(units);
    } catch {
      if (mine === seq) status.textContent = t("unit.error");
    }
  }, 250);

  input.addEventListener("input", () => {
    if (selected && input.value !== selected.name) {
      selected = null;
      picked.textContent = "";
      if (onChange) onChange(null);
    }
    const text = input.value.trim();
    if (text.length >= 1) search(text);
    else {
      search.cancel();
      show([]);
    }
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      if (list.hidden && options.length) {
        list.hidden = false;
        input.setAttribute("aria-expanded", "true");
      }
      if (!options.length) return;
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      highlight((active + step + options.length) % options.length);
    } else if (event.key === "Enter" && !list.hidden && active >= 0) {
      event.preventDefault();
      select(options[active]);
    } else if (event.key === "Escape" && !list.hidden) {
      event.preventDefault();
      close();
    }
  });
  input.addEventListener("blur", () => setTimeout(close, 150));

  return {
    wrap,
    input,
    value: () => selected,
    select,
    setError(message) {
      error.textContent = message || "";
      if (message) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    },
    async selectByCode(code) {
      status.textContent = t("unit.looking", { code });
      const unit = await unitByCode(code);
      status.textContent = "";
      if (unit) select(unit);
      else error.textContent = t("unit.code_unknown", { code });
      return unit;
    },
  };
}
