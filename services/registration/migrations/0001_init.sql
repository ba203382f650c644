-- Units (the tree organisers upload), participants and staff accounts.

CREATE TABLE units (
    id          uuid        PRIMARY KEY,
    code        text        NOT NULL CONSTRAINT units_code_key UNIQUE,
    name        text        NOT NULL,
    -- name without diacritics, lowercase, single spaces (domain.search_key): what the
    -- unit picker matches, so "phuong le chan" finds "Phường Lê Chân"; also the sort key,
    -- as the database's collation does not order Vietnamese.
    search_name text        NOT NULL,
    parent_id   uuid        NULL REFERENCES units (id),
    block       text        NOT NULL CHECK (block IN ('city', 'district', 'commune', 'agency', 'public_service', 'school')),
    headcount   integer     NOT NULL CHECK (headcount >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (parent_id <> id)
);
-- A city has thousands of units at most: the picker's substring match scans them in well
-- under a millisecond. (A trigram index would need pg_trgm, an extension shared by the
-- whole database rather than owned by this schema.) The index serves the ordered listing.
CREATE INDEX units_search_name_idx ON units (search_name, name);
CREATE INDEX units_parent_id_idx ON units (parent_id);

CREATE TABLE participants (
    id            uuid        PRIMARY KEY,
    full_name     text        NOT NULL,                 -- NFC
    search_name   text        NOT NULL,                 -- domain.search_key(full_name)
    phone         text        NOT NULL CONSTRAINT participants_phone_key UNIQUE CHECK (phone ~ '^0[0-9]{9}$'),
    email         text        NULL CONSTRAINT participants_email_key UNIQUE CHECK (email = lower(email)),
    id_number     text        NULL CONSTRAINT participants_id_number_key UNIQUE CHECK (id_number ~ '^[0-9]{12}$'),
    birth_date    date        NULL,
    unit_id       uuid        NOT NULL REFERENCES units (id),
    "group"       text        NULL,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX participants_unit_created_idx ON participants (unit_id, created_at DESC);
CREATE INDEX participants_created_idx ON participants (created_at DESC);

CREATE TABLE staff (
    id            uuid        PRIMARY KEY,
    login         text        NOT NULL CONSTRAINT staff_login_key UNIQUE CHECK (login = lower(login)),
    full_name     text        NOT NULL,
    role          text        NOT NULL CHECK (role IN ('organiser', 'coordinator')),
    unit_id       uuid        NULL REFERENCES units (id),
    email         text        NULL,
    phone         text        NULL,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
