-- Clusters: groups that share a root cause, with ids stable across runs.
ALTER TABLE event_groups ADD COLUMN core BIGINT NOT NULL DEFAULT 0;
-- One real message of the group: rules match wording, not templates.
ALTER TABLE event_groups ADD COLUMN sample_message TEXT;

CREATE TABLE cluster_state (
    id            BIGINT PRIMARY KEY,
    next_cluster  BIGINT NOT NULL,
    last_run_at   BIGINT
);
INSERT INTO cluster_state (id, next_cluster, last_run_at) VALUES (1, 1, NULL);

-- Merges and splits, so a cluster's history can be told.
CREATE TABLE cluster_changes (
    at           BIGINT NOT NULL,
    project_id   BIGINT NOT NULL,
    kind         TEXT   NOT NULL,
    cluster_id   TEXT   NOT NULL,
    others       TEXT   NOT NULL
);
CREATE INDEX cluster_changes_cluster ON cluster_changes (cluster_id);
