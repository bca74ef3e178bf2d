"""User read model: profiles (clear PII), the masked member directory and
preferences in the `user` schema."""

from pathlib import Path

from infra.projection import ProjectionSpec
from projections.user.mapping import apply

PROJECTION = ProjectionSpec(
    name="user",
    topics=("user.events",),
    migrations=Path(__file__).parent / "migrations",
    apply=apply,
    tables=("profiles", "profile_directory", "preferences"),
)
