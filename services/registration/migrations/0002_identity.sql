-- Issue 4: participants' job and sign-up traces, refresh tokens, one-time codes, the
-- audit log of personal-data exports.

ALTER TABLE participants
    ADD COLUMN job           text NULL,
    -- Where the sign-up came from, for the organisers' flags (many accounts from one
    -- address or device within minutes). The device id is the web's X-Device-Id header.
    ADD COLUMN signup_ip     inet NULL,
    ADD COLUMN device_id     text NULL,
    -- The unit whose entry link (QR code) the person signed up through, if any: the
    -- durable count of sign-ups per link.
    ADD COLUMN entry_unit_id uuid NULL REFERENCES units (id);

CREATE INDEX participants_signup_ip_idx ON participants (signup_ip, created_at) WHERE signup_ip IS NOT NULL;
CREATE INDEX participants_device_id_idx ON participants (device_id, created_at) WHERE device_id IS NOT NULL;
CREATE INDEX participants_entry_unit_idx ON participants (entry_unit_id) WHERE entry_unit_id IS NOT NULL;
-- Likely duplicates: same unit, same diacritics-free name, same birth date.
CREATE INDEX participants_unit_name_birth_idx ON participants (unit_id, search_name, birth_date)
    WHERE birth_date IS NOT NULL;

-- Refresh tokens: opaque random strings, stored as their SHA-256 only. Each login starts
-- a family; every refresh marks the presented token used and issues the next one in the
-- same family. A used (or revoked) token presented again means it was copied: the whole
-- family is revoked.
CREATE TABLE refresh_tokens (
    token_hash   bytea       PRIMARY KEY CHECK (length(token_hash) = 32),
    family_id    uuid        NOT NULL,
    account_id   uuid        NOT NULL,  -- a participant's or a staff member's id (role says which)
    account_role text        NOT NULL CHECK (account_role IN ('participant', 'organiser', 'coordinator')),
    issued_at    timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz NULL,
    revoked_at   timestamptz NULL
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_account_idx ON refresh_tokens (account_id);
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);

-- One-time codes (password reset, sign-up verification), stored as SHA-256 of the code
-- salted with the row id. Only the newest code of a subject counts.
CREATE TABLE one_time_codes (
    id           uuid        PRIMARY KEY,
    purpose      text        NOT NULL CHECK (purpose IN ('password_reset', 'sign_up')),
    -- password_reset: '<role>:<account id>'; sign_up: '<channel>:<phone or email>'
    subject      text        NOT NULL,
    channel      text        NOT NULL CHECK (channel IN ('sms', 'email')),
    recipient    text        NOT NULL,
    code_hash    bytea       NOT NULL,
    tries        integer     NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz NULL
);
CREATE INDEX one_time_codes_subject_idx ON one_time_codes (purpose, subject, created_at DESC);
CREATE INDEX one_time_codes_expires_idx ON one_time_codes (expires_at);

-- Every export of personal data: who, when, what filter, how many rows.
CREATE TABLE audit_log (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_id    uuid        NOT NULL,
    actor_name  text        NOT NULL,
    actor_role  text        NOT NULL,
    action      text        NOT NULL,
    filter      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    row_count   integer     NOT NULL CHECK (row_count >= 0)
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC);
