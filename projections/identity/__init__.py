"""Identity read model: principals (sealed credentials, TOTP state, lockout) and
refresh-token families (sessions) in the `identity` schema. Only the Identity
gRPC service reads it; sealed values stay sealed here."""

from pathlib import Path

from infra.projection import ProjectionSpec
from projections.identity.mapping import apply

PROJECTION = ProjectionSpec(
    name="identity",
    topics=("identity.events",),
    migrations=Path(__file__).parent / "migrations",
    apply=apply,
    tables=("principals", "refresh_families"),
)
