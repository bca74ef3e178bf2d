"""App read model: apps and tenants' subscriptions with their guards, in the `app` schema."""

from pathlib import Path

from infra.projection import ProjectionSpec
from projections.app.mapping import apply

PROJECTION = ProjectionSpec(
    name="app",
    topics=("app.events",),
    migrations=Path(__file__).parent / "migrations",
    apply=apply,
    tables=("apps", "subscriptions"),
)
