-- Events with frames still bare addresses because no debug file was stored
-- for their module's build-id at ingest: symbolized again, and moved to the
-- group their names give, when the debug file is uploaded (issue 18).
CREATE TABLE pending_symbols (
    build_id    TEXT   NOT NULL,
    project_id  BIGINT NOT NULL,
    event_id    TEXT   NOT NULL,
    PRIMARY KEY (build_id, project_id, event_id)
);
