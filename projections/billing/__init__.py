"""Billing read model: each tenant's entitlement in the `billing` schema. It reads
`billing.events`; issue 4 adds `message.events` to count platform-observed usage."""

from pathlib import Path

from infra.projection import ProjectionSpec
from projections.billing.mapping import apply

PROJECTION = ProjectionSpec(
    name="billing",
    topics=("billing.events",),
    migrations=Path(__file__).parent / "migrations",
    apply=apply,
    tables=("entitlements",),
)
