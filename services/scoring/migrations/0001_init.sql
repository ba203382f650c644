-- scoring's copy of what it needs from quiz and registration (from their events), and
-- what it owns: results, winners. Redis boards are projections of `results`.

-- From round.opened (answer key, rules), round.closed (closed_at, submitted_count);
-- finalised_at/truth once ranked, announced_at once organisers publish the winners.
CREATE TABLE rounds (
    round_id        uuid PRIMARY KEY,
    contest_id      uuid        NOT NULL,
    contest_title   text        NOT NULL,
    round_title     text        NOT NULL,
    -- The live score's last tie-break is the submission's offset from opens_at.
    opens_at        timestamptz NOT NULL,
    closes_at       timestamptz NOT NULL,
    -- tie_break, prize_scope, prizes, prediction, time_limit_s, grace_s, max_attempts, ...
    rules           jsonb       NOT NULL,
    answer_key      jsonb       NOT NULL,
    closed_at       timestamptz,
    submitted_count integer CHECK (submitted_count >= 0),
    finalised_at    timestamptz,
    -- The true figure the prediction question asked for, known once the round is final.
    truth           bigint,
    announced_at    timestamptz
);
CREATE INDEX rounds_contest ON rounds (contest_id);

-- From participant.registered; attempt.submitted fills in participants whose
-- registration event has not arrived yet (registration's data wins when it does).
CREATE TABLE participants (
    participant_id uuid PRIMARY KEY,
    full_name      text NOT NULL,
    unit_id        uuid,
    "group"        text
);

-- The unit tree, replaced by each units.changed snapshot.
CREATE TABLE units (
    id        uuid PRIMARY KEY,
    code      text    NOT NULL,
    name      text    NOT NULL,
    parent_id uuid,
    block     text    NOT NULL DEFAULT '',
    headcount integer NOT NULL DEFAULT 0
);
CREATE INDEX units_parent ON units (parent_id);

-- When the applied units snapshot was taken, so that a late, older one is ignored.
CREATE TABLE units_snapshot (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    taken_at  timestamptz NOT NULL
);

-- One row per scored attempt; the attempt id makes a redelivered submission a no-op.
CREATE TABLE results (
    attempt_id     uuid PRIMARY KEY,
    round_id       uuid        NOT NULL,
    participant_id uuid        NOT NULL,
    unit_id        uuid,
    "group"        text,
    attempt_number integer     NOT NULL,
    correct        integer     NOT NULL CHECK (correct >= 0),
    total          integer     NOT NULL CHECK (total >= correct),
    duration_ms    bigint      NOT NULL CHECK (duration_ms >= 0),
    started_at     timestamptz NOT NULL,
    submitted_at   timestamptz NOT NULL,
    prediction     bigint,
    scored_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX results_round_participant ON results (round_id, participant_id);

-- The prize list of a final round: a snapshot of names, as they were when ranked.
CREATE TABLE winners (
    round_id         uuid    NOT NULL,
    rank             integer NOT NULL CHECK (rank >= 1),
    participant_id   uuid    NOT NULL,
    name             text    NOT NULL,
    unit_name        text,
    prize            text    NOT NULL,
    correct          integer NOT NULL,
    duration_ms      bigint  NOT NULL,
    prediction_error bigint,
    PRIMARY KEY (round_id, rank),
    UNIQUE (round_id, participant_id)
);
CREATE INDEX winners_participant ON winners (participant_id);
