"""Note commands: open a note with a title, then edit its text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from schemas.contracts import Command


@dataclass(frozen=True)
class NoteCommand(Command):
    hub: ClassVar[str] = "note"


@dataclass(frozen=True)
class OpenNote(NoteCommand):
    title: str


@dataclass(frozen=True)
class EditNote(NoteCommand):
    text: str


COMMANDS = (OpenNote, EditNote)
