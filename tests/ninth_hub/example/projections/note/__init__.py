"""Note read model: each note's title and text in the `note` schema."""

from pathlib import Path

from projections.note.mapping import apply

from infra.projection import ProjectionSpec

PROJECTION = ProjectionSpec(
    name="note",
    topics=("note.events",),
    migrations=Path(__file__).parent / "migrations",
    apply=apply,
    tables=("notes",),
)
