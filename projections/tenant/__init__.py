"""Tenant read model: tenants, memberships, pending invitations and the channel
registry (`channel_accounts`) and each tenant's own Odoo connection
(`odoo_connections`, key sealed) in the `tenant` schema. Its `memberships` table is
what every gRPC role check reads; `channel_accounts` is what the Message Hub's
router resolves page ids with."""

from pathlib import Path

from infra.projection import ProjectionSpec
from projections.tenant.mapping import apply

PROJECTION = ProjectionSpec(
    name="tenant",
    topics=("tenant.events",),
    migrations=Path(__file__).parent / "migrations",
    apply=apply,
    tables=("tenants", "memberships", "invitations", "channel_accounts", "odoo_connections"),
)
