// The live board of a round: overall, one unit's entrants, or one group's, refreshed while
// the round runs. The API caches it for 2 s, so many open pages cost Redis little.
import { api, isStaff, session } from "../api.js";
import { h, replace } from "../dom.js";
import { fmtDateTime, fmtDuration, fmtNumber, t } from "../i18n.js";
import { unitPicker } from "./unitpicker.js";

const REFRESH_MS = 10_000;

/**
 * leaderboard({rounds, groups, initialRoundId}) → {element, stop()}
 * rounds: the contest's rounds ({id, number, title, status}); groups: [{code, name}] (may be empty).
 */
export function leaderboard({ rounds, groups = [], initialRoundId }) {
  const shown = rounds.filter((r) => r.status !== "scheduled");
  const state = {
    roundId: initialRoundId && shown.some((r) => r.id === initialRoundId) ? initialRoundId : (shown[0] || {}).id,
    mode: "all",
    unit: null,
    group: groups.length ? groups[0].code : null,
  };
  let timer = null;
  let stopped = false;
  let seq = 0;

  const body = h("div", { "aria-live": "polite", "aria-busy": "false" });
  const mine = h("p", { class: "meta" });
  const filters = h("div");
  const element = h("section", { "aria-labelledby": "board-title" },
    h("h2", { id: "board-title" }, t("board.title")));

  if (!state.roundId) {
    element.append(h("p", { class: "meta" }, t("board.none_yet")));
    return { element, stop() {} };
  }

  if (shown.length > 1) {
    const selectId = "board-round";
    element.append(h("label", { for: selectId }, t("board.round")), h("select", {
      id: selectId,
      onchange: (event) => {
        state.roundId = event.target.value;
        load();
      },
    }, shown.map((r) => h("option", { value: r.id, selected: r.id === state.roundId }, t("round.name", r)))));
  }

  const tabs = [["all", t("board.all")], ["unit", t("board.by_unit")]];
  if (groups.length) tabs.push(["group", t("board.by_group")]);
  const tabButtons = tabs.map(([mode, text]) => h("button", {
    type: "button", "aria-pressed": mode === state.mode ? "true" : "false", dataset: { mode },
    onclick: () => {
      state.mode = mode;
      tabButtons.forEach((b) => b.setAttribute("aria-pressed", b.dataset.mode === mode ? "true" : "false"));
      renderFilters();
      load();
    },
  }, text));
  element.append(h("div", { class: "tabs", role: "group", "aria-label": t("board.views") }, tabButtons), filters,
    h("div", { id: "board-panel" }, mine, body));

  let picker = null;
  function renderFilters() {
    if (state.mode === "unit") {
      if (!picker) {
        picker = unitPicker({
          label: t("board.unit"), name: "board_unit",
          onChange: (unit) => {
            state.unit = unit;
            load();
          },
        });
        const who = session();
        if (who && who.unit_id && !isStaff(who)) {
          api("/api/me").then((me) => { if (me.unit && !state.unit) picker.select(me.unit); }).catch(() => {});
        }
      }
      replace(filters, picker.wrap);
    } else if (state.mode === "group") {
      replace(filters, h("label", { for: "board-group" }, t("board.group")), h("select", {
        id: "board-group",
        onchange: (event) => {
          state.group = event.target.value;
          load();
        },
      }, groups.map((g) => h("option", { value: g.code, selected: g.code === state.group }, g.name || g.code))));
    } else {
      filters.replaceChildren();
    }
  }

  async function load() {
    clearTimeout(timer);
    if (stopped) return;
    const current = ++seq;
    const params = new URLSearchParams({ limit: "20" });
    if (state.mode === "unit") {
      if (!state.unit) {
        replace(body, h("p", { class: "meta" }, t("board.pick_unit")));
        mine.textContent = "";
        return;
      }
      params.set("unit_id", state.unit.id);
    }
    if (state.mode === "group" && state.group) params.set("group", state.group);
    body.setAttribute("aria-busy", "true");
    try {
      const board = await api(`/api/rounds/${state.roundId}/leaderboard?${params}`, { auth: false });
      if (current !== seq || stopped) return;
      renderBoard(board);
    } catch {
      if (current !== seq || stopped) return;
      replace(body, h("p", { class: "meta" }, t("board.unavailable")));
    } finally {
      body.setAttribute("aria-busy", "false");
    }
    loadMine(current);
    const round = rounds.find((r) => r.id === state.roundId);
    if (round && round.status === "open") timer = setTimeout(tick, REFRESH_MS);
  }

  async function loadMine(current) {
    const who = session();
    if (!who || isStaff(who)) return;
    try {
      const me = await api(`/api/rounds/${state.roundId}/leaderboard/me`);
      if (current === seq) mine.textContent = t("board.my_place", { rank: fmtNumber(me.rank), correct: me.correct });
    } catch {
      if (current === seq) mine.textContent = "";
    }
  }

  function renderBoard(board) {
    const who = session();
    const entries = board.entries || [];
    const frozen = board.frozen
      ? h("p", { class: "notice warn" }, board.frozen_at ? t("board.frozen_at", { time: fmtDateTime(board.frozen_at) }) : t("board.frozen"))
      : null;
    if (!entries.length) {
      replace(body, frozen, h("p", { class: "meta" }, t("board.empty")));
      return;
    }
    replace(body, frozen, h("div", { class: "table-wrap" }, h("table", {},
      h("caption", { class: "visually-hidden" }, t("board.caption")),
      h("thead", {}, h("tr", {},
        h("th", { scope: "col", class: "num" }, t("board.rank")),
        h("th", { scope: "col" }, t("board.name")),
        h("th", { scope: "col" }, t("board.unit_col")),
        h("th", { scope: "col", class: "num" }, t("board.correct")),
        h("th", { scope: "col", class: "num" }, t("board.time")))),
      h("tbody", {}, entries.map((e) => h("tr", { class: who && e.participant_id === who.id ? "me" : null },
        h("td", { class: "num" }, fmtNumber(e.rank)),
        h("td", {}, e.name || "—"),
        h("td", {}, e.unit || "—"),
        h("td", { class: "num" }, fmtNumber(e.correct)),
        h("td", { class: "num" }, fmtDuration(e.duration_ms))))))));
  }

  function tick() {
    if (document.visibilityState === "visible") load();
    else timer = setTimeout(tick, REFRESH_MS);
  }

  renderFilters();
  load();
  return {
    element,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
