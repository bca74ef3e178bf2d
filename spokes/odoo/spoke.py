"""The Odoo spoke's wiring: the inbound-message saga's `UpsertPartner` step records
the message's contact as a customer (res.partner) in the tenant's Odoo, capturing
a phone number the customer typed; its compensation `ArchiveCreatedPartner`
archives the partner when this saga created it. Every call goes to the tenant's own
Odoo (spokes/odoo/connections.py), under that tenant's breaker. It routes nothing."""

from __future__ import annotations

import dataclasses

from infra.spoke import Outcome, ReauthorizationRequired, SpokeCall, SpokeContext, SpokeSpec
from spokes.odoo import PER_TENANT_BREAKER, SYSTEM
from spokes.odoo.actions import archive_partner, record_customer
from spokes.odoo.client import OdooConnection
from spokes.odoo.connections import opened_connections
from spokes.odoo.translate import phone_in_text


async def upsert_partner(ctx: SpokeContext, call: SpokeCall) -> Outcome:
    p = call.payload
    contact_id = p["contact_id"]
    try:
        outcome = await record_customer(
            ctx,
            tenant_id=call.tenant_id,
            channel=p["channel"],
            contact_id=contact_id,
            display_name=f"Messenger contact {contact_id[-6:]}",
            phone=phone_in_text(p.get("text", "")),
            connection=await connection_of(ctx, call.tenant_id),
        )
    except ReauthorizationRequired:
        _forget(ctx, call.tenant_id)  # a key saved again since is read at the next try
        raise
    created = outcome.data.get("created") == "true"
    return dataclasses.replace(outcome, result={"partner_id": int(outcome.external_id), "created": created})


async def archive_created_partner(ctx: SpokeContext, call: SpokeCall) -> Outcome:
    connection = await connection_of(ctx, call.tenant_id)
    return await archive_partner(ctx, tenant_id=call.tenant_id, partner_id=int(call.payload["partner_id"]), connection=connection)


async def connection_of(ctx: SpokeContext, tenant_id: str) -> OdooConnection | None:
    """The tenant's own Odoo connection (None without the runner's resources: the settings')."""
    return None if ctx.resources is None else await ctx.resources.of(tenant_id)


def _forget(ctx: SpokeContext, tenant_id: str) -> None:
    if ctx.resources is not None:
        ctx.resources.forget(tenant_id)


SPOKE = SpokeSpec(
    name="odoo",
    ops_index=3,
    system=SYSTEM,
    per_tenant_breaker=PER_TENANT_BREAKER,
    requests={"UpsertPartner": upsert_partner, "ArchiveCreatedPartner": archive_created_partner},
    resources=lambda ctx: opened_connections(ctx.settings),
)
