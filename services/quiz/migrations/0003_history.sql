-- A participant's history across rounds (GET /api/me/attempts): their attempts, the
-- latest started first, found without reading anyone else's. The price is one more index
-- entry per start and per submit (the submit UPDATE is not HOT anyway: it changes
-- submitted_at, the predicate of attempts_unsubmitted_by_round).
CREATE INDEX attempts_by_participant ON attempts (participant_id, started_at DESC);
