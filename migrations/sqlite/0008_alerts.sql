-- Alerts (issue 14): rules per project, a per-rule-per-cluster cooldown, and
-- the transactional outbox that doubles as the delivery log.
CREATE TABLE alert_rules (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id      BIGINT  NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name            TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    service         TEXT,
    environment     TEXT,
    min_level       TEXT,
    cooldown_ms     BIGINT  NOT NULL,
    destination     TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    threshold       BIGINT,
    window_ms       BIGINT,
    factor          REAL,
    created_at      BIGINT  NOT NULL
);
CREATE INDEX alert_rules_project ON alert_rules (project_id, kind);

CREATE TABLE alert_cooldowns (
    rule_id     BIGINT NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    cluster_id  TEXT   NOT NULL,
    fired_at    BIGINT NOT NULL,
    PRIMARY KEY (rule_id, cluster_id)
);

-- One row per notification: written in the transaction of its trigger,
-- claimed by a worker (lease until `claimed_until`), kept as the log.
CREATE TABLE alert_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id         BIGINT  NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    project_id      BIGINT  NOT NULL,
    cluster_id      TEXT    NOT NULL,
    trigger_kind    TEXT    NOT NULL,
    occurrence      TEXT    NOT NULL,
    details         TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    status          TEXT    NOT NULL,
    attempts        BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    claimed_until   BIGINT,
    claim_token     TEXT,
    last_error      TEXT,
    delivered_at    BIGINT,
    UNIQUE (rule_id, cluster_id, occurrence)
);
CREATE INDEX alert_outbox_due ON alert_outbox (status, next_attempt_at);
CREATE INDEX alert_outbox_project ON alert_outbox (project_id, id);

-- Releases each group has been seen in: a cluster's first event in a release
-- is found at ingest with one indexed insert per group and release of a
-- batch. Keyed by group, not cluster, so it survives re-clustering.
CREATE TABLE group_releases (
    group_id    TEXT   NOT NULL REFERENCES event_groups (id) ON DELETE CASCADE,
    release     TEXT   NOT NULL,
    first_seen  BIGINT NOT NULL,
    PRIMARY KEY (group_id, release)
);
INSERT INTO group_releases (group_id, release, first_seen)
    SELECT group_id, release, MIN(ts) FROM events WHERE release IS NOT NULL GROUP BY group_id, release;
