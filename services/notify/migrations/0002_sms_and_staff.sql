-- Issue 5: SMS beside email, staff roles and units (nudges go to a unit's coordinators,
-- round summaries to organisers), the language a person reads, one-time codes.

-- From staff.changed: role (organiser | coordinator) and unit; from either event, an
-- optional locale ("vi", "en"). Participants keep their unit too.
ALTER TABLE contacts
    ADD COLUMN role    text,
    ADD COLUMN unit_id uuid,
    ADD COLUMN locale  text;

CREATE INDEX contacts_staff_by_role ON contacts (role) WHERE kind = 'staff';
CREATE INDEX contacts_staff_by_unit ON contacts (unit_id) WHERE kind = 'staff';

ALTER TABLE deliveries DROP CONSTRAINT deliveries_channel_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_channel_check CHECK (channel IN ('email', 'sms'));

-- A one-time code is addressed to a phone number or an address, not to a known person.
ALTER TABLE deliveries ALTER COLUMN person_id DROP NOT NULL;

ALTER TABLE deliveries
    -- Which language's templates render it (the recipient's locale when known).
    ADD COLUMN language    text        NOT NULL DEFAULT 'vi',
    -- Not to be sent before this (the provider answered 429 with Retry-After).
    ADD COLUMN not_before  timestamptz,
    -- Sending after this is pointless (a one-time code): the delivery fails instead.
    ADD COLUMN expires_at  timestamptz;

-- The organisers' log filtered by channel, template or event.
CREATE INDEX deliveries_channel_newest ON deliveries (channel, created_at DESC, id DESC);
CREATE INDEX deliveries_template_newest ON deliveries (template, created_at DESC, id DESC);
