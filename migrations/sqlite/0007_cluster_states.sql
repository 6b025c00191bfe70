-- What a team decided about a cluster (issue 14): resolved (now, in the next
-- release, in a named release) or ignored (forever, until N more events, a
-- time or N more distinct pods). No row, or status 'unresolved', is the
-- default. Cluster ids are global (one counter), so the id is the key.
CREATE TABLE cluster_states (
    cluster_id        TEXT   PRIMARY KEY,
    project_id        BIGINT NOT NULL,
    status            TEXT   NOT NULL,
    -- resolved: 'now', 'next_release' or 'in_release'
    resolution        TEXT,
    -- in_release: the release named; next_release: the latest one when resolved
    release           TEXT,
    -- ignored: 'forever', 'events', 'time' or 'pods', with its limit
    ignore_kind       TEXT,
    ignore_limit      BIGINT,
    seen_events       BIGINT NOT NULL DEFAULT 0,
    -- distinct pods seen since ignored (JSON array, at most limit + 1)
    seen_pods         TEXT   NOT NULL DEFAULT '[]',
    -- the last regression: a new event reopened a resolved cluster
    regressed_at      BIGINT,
    regressed_release TEXT,
    regressed_event   TEXT,
    changed_at        BIGINT NOT NULL,
    changed_by        TEXT   NOT NULL
);
CREATE INDEX cluster_states_project ON cluster_states (project_id, status);

-- State changes sit in the history next to merges and splits: who and what.
ALTER TABLE cluster_changes ADD COLUMN actor TEXT;
ALTER TABLE cluster_changes ADD COLUMN detail TEXT;
