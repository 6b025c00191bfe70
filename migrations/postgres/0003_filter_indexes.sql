-- The cluster list filters events by service, environment and release.
CREATE INDEX events_service_ts ON events (service, ts);
CREATE INDEX events_environment_ts ON events (environment, ts);
CREATE INDEX events_release_ts ON events (release, ts);

-- Storm control sends one event for many panics with a `count`: counts add it.
ALTER TABLE events ADD COLUMN weight BIGINT NOT NULL DEFAULT 1;
