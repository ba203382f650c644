// Building DOM without innerHTML: every text from the API or the user is set as text,
// so a participant's name or an imported question can never inject markup.

/**
 * h("button", {class: "btn", onclick: f}, "Gửi") → <button class="btn">Gửi</button>
 * Attributes: `class`, `on<event>` (listener), `dataset`, boolean true/false, null/undefined skipped.
 * Children: strings, numbers, nodes, arrays (flattened), null/false skipped.
 */
export function h(tag, attrs, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name === "value" && "value" in el && !(el instanceof SVGElement)) {
      el.value = value;
    } else if (name === "checked" || name === "selected") {
      el[name] = Boolean(value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

let uid = 0;
export function nextId(prefix = "f") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** Say something to screen-reader users without moving focus. */
export function announce(text) {
  const live = document.getElementById("live");
  if (!live) return;
  live.textContent = "";
  // A new text node after a tick makes screen readers read it even when it repeats.
  setTimeout(() => { live.textContent = text; }, 50);
}

/**
 * A labelled form control with a hint and an error slot wired by aria-describedby.
 * Returns {wrap, input, error, setError(message)}.
 */
export function field({ label, name, type = "text", hint, required, autocomplete, inputmode, value, attrs, control }) {
  const id = nextId(name);
  const hintId = hint ? `${id}-hint` : null;
  const errorId = `${id}-error`;
  const input = control || (type === "textarea"
    ? h("textarea", { id, name, required, ...attrs })
    : h("input", { id, name, type, required, autocomplete, inputmode, value, ...attrs }));
  input.id = id;
  input.setAttribute("aria-describedby", [hintId, errorId].filter(Boolean).join(" "));
  const error = h("p", { class: "error", id: errorId });
  const wrap = h("div", { class: "field", dataset: { field: name } },
    h("label", { for: id }, label, required ? h("span", { "aria-hidden": "true" }, " *") : null),
    hint ? h("span", { class: "hint", id: hintId }, hint) : null,
    input, error);
  const setError = (message) => {
    error.textContent = message || "";
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  };
  return { wrap, input, error, setError };
}

/** A notice box; kind: "", "ok", "warn", "bad". role=alert for errors so they are read at once. */
export function notice(kind, ...children) {
  return h("div", { class: `notice ${kind}`.trim(), role: kind === "bad" ? "alert" : "status" }, ...children);
}

export function debounce(fn, waitMs) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => { timer = null; fn(...args); }, waitMs);
  };
  wrapped.cancel = () => { clearTimeout(timer); timer = null; };
  wrapped.flush = (...args) => { clearTimeout(timer); timer = null; fn(...args); };
  return wrapped;
}

/** Save a Blob under a file name (organisers' exports). */
export function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: filename, class: "visually-hidden" });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
