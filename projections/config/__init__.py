"""Config read model: current values and their full history in the `config` schema."""

from pathlib import Path

from infra.projection import ProjectionSpec
from projections.config.mapping import apply

PROJECTION = ProjectionSpec(
    name="config",
    topics=("config.events",),
    migrations=Path(__file__).parent / "migrations",
    apply=apply,
    tables=("config_values", "config_history"),
)
