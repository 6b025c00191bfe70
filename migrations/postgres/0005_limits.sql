-- Per-project limits and retention (issue 12). NULL: the server's default;
-- 0: unlimited (retention 0: keep forever).
ALTER TABLE projects ADD COLUMN rate_limit BIGINT;
ALTER TABLE projects ADD COLUMN rate_burst BIGINT;
ALTER TABLE projects ADD COLUMN daily_quota BIGINT;
ALTER TABLE projects ADD COLUMN monthly_quota BIGINT;
ALTER TABLE projects ADD COLUMN retention_days BIGINT;

-- Events stored per project and UTC period ('d2026-12-02', 'm2026-12'),
-- updated in the insert's transaction so a restart resets nothing.
CREATE TABLE project_usage (
    project_id  BIGINT NOT NULL REFERENCES projects (id),
    period      TEXT   NOT NULL,
    count       BIGINT NOT NULL,
    PRIMARY KEY (project_id, period)
);

-- Per-group cap: rows in `events` and in `sampled_events` of the group, so
-- ingest decides without counting.
ALTER TABLE event_groups ADD COLUMN stored_events BIGINT NOT NULL DEFAULT 0;
ALTER TABLE event_groups ADD COLUMN sampled_events BIGINT NOT NULL DEFAULT 0;
UPDATE event_groups SET stored_events = (SELECT COUNT(*) FROM events e WHERE e.group_id = event_groups.id);

-- Events a group over its cap did not keep: their id (resends stay
-- idempotent), time (retention) and weight (counts stay exact).
CREATE TABLE sampled_events (
    project_id  BIGINT NOT NULL REFERENCES projects (id),
    event_id    TEXT   NOT NULL,
    group_id    TEXT   NOT NULL,
    ts          BIGINT NOT NULL,
    weight      BIGINT NOT NULL,
    PRIMARY KEY (project_id, event_id)
);
CREATE INDEX sampled_events_ts ON sampled_events (ts);
CREATE INDEX sampled_events_group ON sampled_events (group_id);

-- The retention job walks events oldest first per project.
CREATE INDEX events_project_ts ON events (project_id, ts);
