-- quiz: contests, rounds, the question bank and attempts (DESIGN.md "Services").
-- A round's status is derived from its times, never stored (domain.round_status).

CREATE TABLE contests (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug        text NOT NULL UNIQUE,
    title       text NOT NULL,
    rules       text NOT NULL DEFAULT '',
    -- ordered tie-break criteria, e.g. ["correct", "prediction_error", "duration", "submitted_at"]
    tie_break   jsonb NOT NULL,
    prize_scope text NOT NULL CHECK (prize_scope IN ('round', 'contest')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rounds (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    contest_id     uuid NOT NULL REFERENCES contests (id),
    number         int  NOT NULL CHECK (number >= 1),
    title          text NOT NULL,
    opens_at       timestamptz NOT NULL,
    closes_at      timestamptz NOT NULL,
    question_count int  NOT NULL CHECK (question_count BETWEEN 1 AND 100),
    time_limit_s   int  NOT NULL CHECK (time_limit_s > 0),
    grace_s        int  NOT NULL CHECK (grace_s >= 0),
    max_attempts   int  CHECK (max_attempts >= 1),          -- NULL = unlimited
    prediction     jsonb,                                   -- {text, target} or NULL
    prizes         jsonb NOT NULL DEFAULT '[]',             -- [{name, count}]
    question_ids   uuid[],       -- the bank snapshot taken when the round opened, in draw order
    opened_at      timestamptz,  -- round.opened emitted
    closed_at      timestamptz,  -- closed early by an organiser
    finalised_at   timestamptz,  -- round.closed emitted
    UNIQUE (contest_id, number),
    CHECK (closes_at > opens_at)
);

CREATE TABLE questions (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    contest_id  uuid NOT NULL REFERENCES contests (id),
    topic       text NOT NULL,
    difficulty  int  NOT NULL CHECK (difficulty BETWEEN 1 AND 3),
    text        text NOT NULL,
    options     jsonb NOT NULL,   -- [{id: "A", text}], ids are the bank's letters
    correct     text[] NOT NULL,  -- letters, e.g. {A,C}
    explanation text NOT NULL DEFAULT '',
    UNIQUE (contest_id, text)
);

CREATE TABLE attempts (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    round_id         uuid NOT NULL REFERENCES rounds (id),
    participant_id   uuid NOT NULL,
    participant_name text NOT NULL,
    unit_id          uuid,
    "group"          text,
    attempt_number   int  NOT NULL CHECK (attempt_number >= 1),
    -- draw and option order are replayed from this seed (domain.draw_questions / shuffled_options)
    seed             bigint NOT NULL,
    question_ids     uuid[] NOT NULL,
    started_at       timestamptz NOT NULL,  -- gateway arrival stamp of the start request
    deadline_at      timestamptz NOT NULL,  -- started_at + time limit (grace not included)
    submitted_at     timestamptz,           -- gateway arrival stamp of the accepted submit
    answers          jsonb,
    prediction       bigint,
    -- also the start race guard: two simultaneous starts cannot both take number n
    UNIQUE (round_id, participant_id, attempt_number)
);

-- Running attempts of a round: what the clock waits for before it finalises.
CREATE INDEX attempts_unsubmitted_by_round ON attempts (round_id, deadline_at) WHERE submitted_at IS NULL;
-- No index on submitted rows: the submit UPDATE is the hot path, and the one query
-- that counts them (once per round, by the clock) can use the unique index's round_id prefix.
