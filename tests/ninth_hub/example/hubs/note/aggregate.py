"""The Note aggregate: a titled text owned by a tenant. Pure: no I/O."""

from __future__ import annotations

import uuid

from eventsourcing.domain import Aggregate, event
from hubs.note.commands import EditNote, OpenNote

from schemas.contracts import AggregateNotFound, Command, InvalidCommand

MAX_TEXT = 10_000


class Note(Aggregate):
    @staticmethod
    def create_id(note_id: str, **_: object) -> uuid.UUID:
        return uuid.UUID(note_id)

    @event("NoteOpened")
    def __init__(self, note_id: str, tenant_id: str, title: str):
        self.tenant_id, self.title, self.text = tenant_id, title, ""

    @event("NoteEdited")
    def edit(self, text: str) -> None:
        self.text = text


def handle(note: Note | None, command: Command) -> Note:
    meta = command.meta
    if isinstance(command, OpenNote):
        if not command.title.strip():
            raise InvalidCommand("title is required")
        if note is not None:
            raise InvalidCommand(f"note {meta.aggregate_id} is already open")
        return Note(note_id=meta.aggregate_id, tenant_id=meta.tenant_id, title=command.title)
    if note is None:
        raise AggregateNotFound(f"tenant {meta.tenant_id} has no note {meta.aggregate_id}")
    if isinstance(command, EditNote):
        if len(command.text) > MAX_TEXT:
            raise InvalidCommand(f"text longer than {MAX_TEXT} characters")
        note.edit(command.text)
        return note
    raise InvalidCommand(f"{type(command).__name__} is not a note command")
