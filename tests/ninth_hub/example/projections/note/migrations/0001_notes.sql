-- Note read store: one row per note.
CREATE TABLE notes (
    note_id     uuid PRIMARY KEY,
    tenant_id   text NOT NULL,
    title       text NOT NULL,
    text        text NOT NULL,
    version     bigint NOT NULL,
    updated_at  timestamptz NOT NULL
);
