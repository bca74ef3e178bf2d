"""Tenant read model: tenants, memberships and pending invitations in the
`tenant` schema. Its `memberships` table is what every gRPC role check reads."""

from pathlib import Path

from infra.projection import ProjectionSpec
from projections.tenant.mapping import apply

PROJECTION = ProjectionSpec(
    name="tenant",
    topics=("tenant.events",),
    migrations=Path(__file__).parent / "migrations",
    apply=apply,
    tables=("tenants", "memberships", "invitations"),
)
