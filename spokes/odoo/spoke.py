"""The Odoo spoke's wiring: the inbound-message saga's `UpsertPartner` step records
the message's contact as a customer (res.partner) in the tenant's Odoo, capturing
a phone number the customer typed; its compensation `ArchiveCreatedPartner`
archives the partner when this saga created it. It routes nothing."""

from __future__ import annotations

import dataclasses

from infra.spoke import Outcome, SpokeCall, SpokeContext, SpokeSpec
from spokes.odoo import PER_TENANT_BREAKER, SYSTEM
from spokes.odoo.actions import archive_partner, record_customer
from spokes.odoo.translate import phone_in_text


async def upsert_partner(ctx: SpokeContext, call: SpokeCall) -> Outcome:
    p = call.payload
    contact_id = p["contact_id"]
    outcome = await record_customer(
        ctx,
        tenant_id=call.tenant_id,
        channel=p["channel"],
        contact_id=contact_id,
        display_name=f"Messenger contact {contact_id[-6:]}",
        phone=phone_in_text(p.get("text", "")),
    )
    created = outcome.data.get("created") == "true"
    return dataclasses.replace(outcome, result={"partner_id": int(outcome.external_id), "created": created})


async def archive_created_partner(ctx: SpokeContext, call: SpokeCall) -> Outcome:
    return await archive_partner(ctx, tenant_id=call.tenant_id, partner_id=int(call.payload["partner_id"]))


SPOKE = SpokeSpec(
    name="odoo",
    ops_index=3,
    system=SYSTEM,
    per_tenant_breaker=PER_TENANT_BREAKER,
    requests={"UpsertPartner": upsert_partner, "ArchiveCreatedPartner": archive_created_partner},
)
