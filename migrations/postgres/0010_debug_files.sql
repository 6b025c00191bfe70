-- Debug files (issue 18): one row per stored file, keyed by GNU build-id.
-- The file itself lives on disk at <debug-files-dir>/<id[0..2]>/<id[2..]>.debug;
-- the row says what it holds, so a re-upload can be judged without reading it.
CREATE TABLE debug_files (
    build_id     TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    arch         TEXT    NOT NULL,
    has_dwarf    BIGINT  NOT NULL,
    has_symbols  BIGINT  NOT NULL,
    size_bytes   BIGINT  NOT NULL,
    uploaded_at  BIGINT  NOT NULL
);
CREATE INDEX debug_files_uploaded ON debug_files (uploaded_at);
