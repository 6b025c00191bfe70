-- Panicle schema v1 (SQLite). Times are epoch milliseconds; ids are TEXT.
CREATE TABLE projects (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    ingest_key  TEXT    NOT NULL UNIQUE,
    created_at  BIGINT  NOT NULL
);

CREATE TABLE api_tokens (
    token_hash  TEXT    PRIMARY KEY,
    label       TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL
);

CREATE TABLE event_groups (
    id           TEXT    PRIMARY KEY,
    project_id   BIGINT  NOT NULL REFERENCES projects (id),
    fingerprint  TEXT    NOT NULL,
    platform     TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    template     TEXT    NOT NULL,
    culprit      TEXT,
    frames       TEXT    NOT NULL,
    event_count  BIGINT  NOT NULL,
    first_seen   BIGINT  NOT NULL,
    last_seen    BIGINT  NOT NULL,
    first_release TEXT,
    cluster_id   TEXT,
    UNIQUE (project_id, fingerprint)
);
CREATE INDEX groups_project_last_seen ON event_groups (project_id, last_seen);
CREATE INDEX groups_cluster ON event_groups (cluster_id);

CREATE TABLE events (
    project_id   BIGINT  NOT NULL REFERENCES projects (id),
    event_id     TEXT    NOT NULL,
    group_id     TEXT    NOT NULL,
    ts           BIGINT  NOT NULL,
    received_at  BIGINT  NOT NULL,
    platform     TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    message      TEXT    NOT NULL,
    service      TEXT,
    environment  TEXT,
    release      TEXT,
    trace_id     TEXT,
    pod          TEXT,
    node         TEXT,
    route        TEXT,
    depth        BIGINT  NOT NULL,
    payload      TEXT    NOT NULL,
    PRIMARY KEY (project_id, event_id)
);
CREATE INDEX events_ts ON events (ts, event_id);
CREATE INDEX events_group_ts ON events (group_id, ts);
CREATE INDEX events_event_id ON events (event_id);
