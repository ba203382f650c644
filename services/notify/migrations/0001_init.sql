-- Who can be reached, copied from registration's events (participant.registered,
-- staff.changed). `updated_at` is when the source event happened, so a late, older
-- event never overwrites a newer one.
CREATE TABLE contacts (
    person_id   uuid        PRIMARY KEY,
    kind        text        NOT NULL CHECK (kind IN ('participant', 'staff')),
    full_name   text        NOT NULL,
    email       text,
    phone       text,
    updated_at  timestamptz NOT NULL
);

-- One row per message to one person on one channel. `idempotency_key`
-- (`{event_id}:{person_id}:{channel}`) makes a redelivered event plan nothing new.
-- queued → sent | failed (permanent SMTP answer) | dead (transient errors, attempts used up);
-- failed/dead go back to queued only by an organiser's replay.
CREATE TABLE deliveries (
    id               uuid        PRIMARY KEY,
    idempotency_key  text        NOT NULL UNIQUE,
    event_id         uuid        NOT NULL,
    event_type       text        NOT NULL,
    channel          text        NOT NULL CHECK (channel IN ('email')),
    recipient        text        NOT NULL,
    person_id        uuid        NOT NULL,
    template         text        NOT NULL,
    context          jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'failed', 'dead')),
    attempts         int         NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX deliveries_event ON deliveries (event_id);
-- The sweeper's work list stays small: only what still waits.
CREATE INDEX deliveries_queued ON deliveries (updated_at) WHERE status = 'queued';
-- The organisers' delivery log: newest first, optionally by status or recipient.
CREATE INDEX deliveries_newest ON deliveries (created_at DESC, id DESC);
CREATE INDEX deliveries_status_newest ON deliveries (status, created_at DESC, id DESC);
CREATE INDEX deliveries_recipient ON deliveries (lower(recipient), created_at DESC);
