-- Contest rules engine (issue 3): groups with their own question sets, whether every
-- question must be answered, per-round quotas, per-group prizes and the board freeze.

ALTER TABLE contests
    -- [{code, name, topics: [topic, ...]}]; empty = one ranking for everyone; topics empty = every topic
    ADD COLUMN groups               jsonb   NOT NULL DEFAULT '[]',
    ADD COLUMN default_group        text,   -- the group of participants whose token names none of them
    ADD COLUMN require_all_answered boolean NOT NULL DEFAULT false;

ALTER TABLE rounds
    -- {"topics": {topic: n}, "difficulties": {"1": n, "2": n, "3": n}}: exact counts (domain.draw_questions)
    ADD COLUMN quotas           jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN group_prizes     jsonb,  -- {group_code: [{name, count}]}; NULL = `prizes` for every group
    ADD COLUMN freeze_minutes   int   NOT NULL DEFAULT 0 CHECK (freeze_minutes BETWEEN 0 AND 1440),
    -- the contest's groups, default_group, require_all_answered, tie_break and prize_scope,
    -- copied when the round opens: what round.opened announced and what its attempts are
    -- drawn (and replayed) with; later changes to the contest apply to rounds still to open
    ADD COLUMN contest_settings jsonb;

-- The organisers' bank listing filters by topic.
CREATE INDEX questions_by_topic ON questions (contest_id, lower(topic));

-- Rounds opened before this migration were drawn without groups; say so, so that
-- their replays and admin views use what their attempts were really drawn with.
UPDATE rounds AS r
SET contest_settings = jsonb_build_object(
    'groups', '[]'::jsonb, 'default_group', NULL, 'require_all_answered', false,
    'tie_break', c.tie_break, 'prize_scope', c.prize_scope)
FROM contests AS c
WHERE c.id = r.contest_id AND r.opened_at IS NOT NULL AND r.contest_settings IS NULL;
