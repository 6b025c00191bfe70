-- A group's id is derived from (project_id, fingerprint), so the UNIQUE
-- (project_id, fingerprint) constraint guarded the same rows as the primary
-- key. With two unique indexes, an upsert can name only one as its conflict
-- target: two requests creating the same new group at once could collide on
-- the other and fail (issue 21). The primary key alone keeps groups unique.
ALTER TABLE event_groups DROP CONSTRAINT IF EXISTS event_groups_project_id_fingerprint_key;
