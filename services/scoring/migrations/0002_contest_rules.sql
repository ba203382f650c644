-- Issue 3: entries that do not count, prizes per group, collective rules, nudges.

-- An attempt of a round that requires every question answered, submitted with one
-- left blank, is stored and shown to its author but kept off the boards and out of the
-- final ranking and the prediction truth.
ALTER TABLE results ADD COLUMN counts boolean NOT NULL DEFAULT true;

-- Rounds with groups rank (and number) each group on its own: rank 1 exists once per
-- group. One prize per person per round still holds (UNIQUE (round_id, participant_id)).
ALTER TABLE winners ADD COLUMN "group" text;
ALTER TABLE winners DROP CONSTRAINT winners_pkey;
CREATE UNIQUE INDEX winners_round_group_rank ON winners (round_id, coalesce("group", ''), rank);

-- Minimum participation rates by unit size for a contest's collective ranking:
-- [{min_headcount, max_headcount (or null), min_rate}]. Contests are quiz's; scoring
-- keeps its own settings by contest id (a contest may be set up before its first round
-- opens, so no reference to rounds).
CREATE TABLE collective_rules (
    contest_id uuid PRIMARY KEY,
    min_rates  jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Reminders sent to units below a target participation rate (participation.nudge).
-- The nudge id is also the event id, so notify can drop a redelivered copy. A repeated
-- request with the same Idempotency-Key answers the first nudge again.
CREATE TABLE nudges (
    nudge_id        uuid PRIMARY KEY,
    contest_id      uuid             NOT NULL,
    round_id        uuid,
    target_rate     double precision NOT NULL CHECK (target_rate >= 0 AND target_rate <= 1),
    units           integer          NOT NULL CHECK (units >= 0),
    origin          text             NOT NULL CHECK (origin IN ('organiser', 'schedule')),
    idempotency_key text,
    created_at      timestamptz      NOT NULL DEFAULT now(),
    UNIQUE (contest_id, idempotency_key)
);

-- One schedule per contest: nudge at these local times (Asia/Ho_Chi_Minh) every day.
CREATE TABLE nudge_schedules (
    contest_id  uuid PRIMARY KEY,
    target_rate double precision NOT NULL CHECK (target_rate >= 0 AND target_rate <= 1),
    times_local text[]           NOT NULL,
    round_id    uuid,
    enabled     boolean          NOT NULL,
    updated_at  timestamptz      NOT NULL DEFAULT now()
);

-- Each scheduled slot (contest, local day, local time) is decided once: the row is
-- inserted in the transaction that writes the nudge's outbox event, so across restarts
-- and worker replicas a slot sends at most one nudge (nudge_id null: nothing to send).
CREATE TABLE nudge_slots (
    contest_id uuid        NOT NULL,
    local_date date        NOT NULL,
    time_local text        NOT NULL,
    nudge_id   uuid,
    decided_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contest_id, local_date, time_local)
);

-- Rounds whose live boards must be recomputed from PostgreSQL (a units.changed moved
-- units their entrants belong to). Written with the unit tree, drained by the worker:
-- a rebuild lost to a crash or a Redis outage is done on the next pass.
CREATE TABLE pending_rebuilds (
    round_id     uuid PRIMARY KEY,
    requested_at timestamptz NOT NULL DEFAULT now()
);
