-- Access control: token scopes and server-side dashboard sessions.
-- A token is admin (every project, ingest keys, changes) or reads the projects
-- listed in api_token_projects. Tokens that existed before this migration
-- could read everything, so they stay admin (the column's default).
ALTER TABLE api_tokens ADD COLUMN is_admin BIGINT NOT NULL DEFAULT 1;
-- Written at most once a minute per token, so reads do not turn into writes.
ALTER TABLE api_tokens ADD COLUMN last_used_at BIGINT;

CREATE TABLE api_token_projects (
    token_hash  TEXT    NOT NULL REFERENCES api_tokens (token_hash) ON DELETE CASCADE,
    project_id  BIGINT  NOT NULL REFERENCES projects (id),
    PRIMARY KEY (token_hash, project_id)
);

-- A dashboard session: the cookie holds a random id, the table its SHA-256.
-- It carries the scope of the token it was opened with; revoking the token
-- ends it.
CREATE TABLE sessions (
    id_hash       TEXT    PRIMARY KEY,
    token_hash    TEXT    NOT NULL REFERENCES api_tokens (token_hash) ON DELETE CASCADE,
    created_at    BIGINT  NOT NULL,
    last_seen_at  BIGINT  NOT NULL
);
CREATE INDEX sessions_token ON sessions (token_hash);
