"""The Odoo spoke's wiring: every routed message records its contact as a
customer (res.partner) in the tenant's Odoo, capturing a phone number the
customer typed. It reacts to the Message Hub's decisions; it routes nothing."""

from __future__ import annotations

from infra.spoke import Outcome, SpokeContext, SpokeSpec
from spokes.odoo import PER_TENANT_BREAKER, SYSTEM
from spokes.odoo.actions import record_customer
from spokes.odoo.translate import phone_in_text

MESSAGE_ROUTED = "poseidon.message.MessageRouted"
CRM_CHANNELS = frozenset({"facebook"})


def accepts(event_type: str, record: dict) -> bool:
    return event_type == MESSAGE_ROUTED and record.get("channel") in CRM_CHANNELS


async def handle(ctx: SpokeContext, event_type: str, record: dict) -> Outcome:
    contact_id = record["contact_id"]
    return await record_customer(
        ctx,
        tenant_id=record["envelope"]["tenant_id"],
        channel=record["channel"],
        contact_id=contact_id,
        display_name=f"Messenger contact {contact_id[-6:]}",
        phone=phone_in_text(record.get("text", "")),
    )


SPOKE = SpokeSpec(
    name="odoo",
    system=SYSTEM,
    topics=("message.events",),
    accepts=accepts,
    handle=handle,
    per_tenant_breaker=PER_TENANT_BREAKER,
)
