"""Pure mapping of note events to idempotent read-store statements (version guard)."""

from __future__ import annotations

import uuid

from infra.projection import Statement

OPENED_SQL = """INSERT INTO notes (note_id, tenant_id, title, text, version, updated_at) VALUES ($1, $2, $3, '', $4, $5)
ON CONFLICT (note_id) DO NOTHING"""
EDITED_SQL = "UPDATE notes SET text = $2, version = $3, updated_at = $4 WHERE note_id = $1 AND version < $3"


def apply(event_type: str, record: dict) -> list[Statement]:
    env = record["envelope"]
    note_id, version, at = uuid.UUID(env["aggregate_id"]), env["aggregate_version"], env["occurred_at"]
    if event_type == "poseidon.note.NoteOpened":
        return [Statement(OPENED_SQL, (note_id, env["tenant_id"], record["title"], version, at))]
    if event_type == "poseidon.note.NoteEdited":
        return [Statement(EDITED_SQL, (note_id, record["text"], version, at))]
    raise ValueError(f"the note read model has no mapping for {event_type}")
