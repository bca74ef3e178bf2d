"""What a read model declares to the shared projector: its schema name, the event
topics it reads, its SQL migrations and a pure mapping from one decoded event to
the SQL statements that apply it. No I/O here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Statement:
    """One parameterised SQL statement the projector executes. Statements with the
    same SQL that follow each other are sent as one executemany batch."""

    sql: str
    args: tuple[Any, ...]
    phase: int = 0
    """Within one batch the projector runs phase 0 statements first, then 1, …,
    keeping the order inside a phase. A mapping puts statements in different
    phases only where their relative order does not matter (rows that others
    update come first), which lets same-SQL statements run as one batch."""


@dataclass(frozen=True)
class ProjectionSpec:
    name: str
    """Read-model name; the PostgreSQL schema is POSEIDON_SCHEMA_PREFIX + name."""
    topics: Sequence[str]
    """Logical event topics (`wallet.events`)."""
    migrations: Path
    """Folder of `NNNN_<what>.sql` files, written without schema qualification."""
    apply: Callable[[str, dict], list[Statement]]
    """(event type, decoded record) → statements. Must be idempotent per event."""
    tables: Sequence[str] = ()
    """Tables compared by `poseidon replay --dry-run` (live vs rebuilt)."""
