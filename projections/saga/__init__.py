"""Saga read model: sagas and their timelines in the `saga` schema."""

from pathlib import Path

from infra.projection import ProjectionSpec
from projections.saga.mapping import apply

PROJECTION = ProjectionSpec(
    name="saga",
    topics=("saga.events",),
    migrations=Path(__file__).parent / "migrations",
    apply=apply,
    tables=("sagas", "saga_events"),
)
