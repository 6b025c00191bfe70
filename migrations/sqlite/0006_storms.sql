-- Storm control sends one aggregate event for many panics of one fingerprint.
-- A folded panic's id is the storm's UUID prefix and its sequence number
-- (panicle_protocol::storm), so one range per aggregate lets every folded id
-- resolve to the aggregate. A range lives and dies with its aggregate.
CREATE TABLE storm_ranges (
    project_id  BIGINT NOT NULL,
    event_id    TEXT   NOT NULL,
    id_prefix   TEXT   NOT NULL,
    seq_start   BIGINT NOT NULL,
    seq_end     BIGINT NOT NULL,
    PRIMARY KEY (project_id, event_id),
    FOREIGN KEY (project_id, event_id) REFERENCES events (project_id, event_id) ON DELETE CASCADE
);
CREATE INDEX storm_ranges_prefix ON storm_ranges (id_prefix, seq_start);
