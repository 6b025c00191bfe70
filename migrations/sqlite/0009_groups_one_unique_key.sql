-- PostgreSQL drops the second unique key of event_groups here (see its
-- 0009). SQLite runs one writer at a time, so two inserts of a new group
-- never overlap and the constraint can stay (dropping it would mean
-- rebuilding the table). Kept as a migration so both backends count alike.
SELECT 1;
