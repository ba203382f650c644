// What the browser keeps between visits (localStorage). Work in progress lives here until
// the server has it for sure: the answers of a running attempt (a draft) and a submit the
// server has not acknowledged with 202 yet (pending).

function read(key, fallback) {
  try {
    const value = JSON.parse(localStorage.getItem(key) || "null");
    return value === null ? fallback : value;
  } catch {
    return fallback;
  }
}

function write(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
    return true;
  } catch {
    return false; // storage full or disabled: the server copy (autosave) still holds
  }
}

// --- a running attempt's answers --------------------------------------------------------

export const draftOf = (attemptId) => read(`hoithi.draft.${attemptId}`, null);
export const saveDraft = (attemptId, draft) => write(`hoithi.draft.${attemptId}`, { ...draft, updated_at: Date.now() });
export const dropDraft = (attemptId) => localStorage.removeItem(`hoithi.draft.${attemptId}`);

// --- submits the server has not acknowledged ---------------------------------------------

export const pendingOf = (attemptId) => read(`hoithi.pending.${attemptId}`, null);
export const savePending = (attemptId, pending) => write(`hoithi.pending.${attemptId}`, pending);
export const dropPending = (attemptId) => localStorage.removeItem(`hoithi.pending.${attemptId}`);

/** The unacknowledged submit of this participant in this round, if any. */
export function pendingForRound(roundId, participantId) {
  for (let i = 0; i < localStorage.length; i += 1) {
    const key = localStorage.key(i);
    if (!key || !key.startsWith("hoithi.pending.")) continue;
    const pending = read(key, null);
    if (pending && pending.round_id === roundId && pending.participant_id === participantId) {
      return { attemptId: key.slice("hoithi.pending.".length), ...pending };
    }
  }
  return null;
}

// --- my history -------------------------------------------------------------------------
// The server's history (GET /api/me/attempts) is the source; this copy of the attempts this
// browser took, per participant (a shared phone keeps each person's list apart), covers a
// failed request and tells the result page its round before the attempt has loaded.

const historyKey = (participantId) => `hoithi.history.${participantId || "anon"}`;

export const historyOf = (participantId) => read(historyKey(participantId), []);

export function remember(participantId, entry) {
  const list = historyOf(participantId).filter((e) => e.attempt_id !== entry.attempt_id);
  list.unshift({ ...entry, remembered_at: new Date().toISOString() });
  write(historyKey(participantId), list.slice(0, 200));
}

export function historyEntry(participantId, attemptId) {
  return historyOf(participantId).find((e) => e.attempt_id === attemptId) || null;
}

// --- what we know about rounds (from the contest page), for the quiz and result pages ---

export const roundInfo = (roundId) => read(`hoithi.round.${roundId}`, null);
export const saveRoundInfo = (roundId, info) => write(`hoithi.round.${roundId}`, info);

export const lastContest = () => read("hoithi.contest", null);
export const saveLastContest = (slug) => write("hoithi.contest", slug);
