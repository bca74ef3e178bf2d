"""The Facebook spoke's wiring: every outbound message the Message Hub records
for a Messenger conversation is sent through the Send API (24-hour window and
tags applied), and its delivery status is reported back to the Message hub
(sent with the platform's message id, or failed with the reason). Delivery and
read receipts come back through ingress and the router. It routes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hubs.message.commands import UpdateDeliveryStatus
from infra.command_client import new_meta
from infra.spoke import Outcome, PermanentError, SpokeContext, SpokeSpec
from spokes.facebook.actions import SPOKE_NAME, SYSTEM, send_reply

OUTBOUND_RECORDED = "poseidon.message.OutboundMessageRecorded"
_STATUS_IDS = uuid.UUID("6f1c1a52-4c4e-5b1e-9d35-0c6f2a3b7e11")


def accepts(event_type: str, record: dict) -> bool:
    return event_type == OUTBOUND_RECORDED and record.get("channel") == "facebook"


async def handle(ctx: SpokeContext, event_type: str, record: dict) -> Outcome:
    envelope = record["envelope"]
    last_inbound = record.get("last_inbound_at")
    try:
        outcome = await send_reply(
            ctx,
            tenant_id=envelope["tenant_id"],
            page_id=record["channel_account_id"],
            psid=record["contact_id"],
            text=record["text"],
            last_inbound_at=last_inbound if last_inbound and last_inbound.timestamp() > 0 else None,
            now=datetime.now(UTC),
        )
    except PermanentError as exc:  # e.g. re-authorisation needed: the message failed, say so
        outcome = Outcome(operation="send_message", succeeded=False, detail=exc.reason, error_code=exc.code)
    if outcome.succeeded:
        status = UpdateDeliveryStatus(_meta(envelope, "sent"), record["message_id"], "sent", "", outcome.external_id)
    else:
        status = UpdateDeliveryStatus(_meta(envelope, "failed"), record["message_id"], "failed", outcome.detail[:500])
    result = await ctx.commands.send(status)
    if not result.accepted and result.rejection != "InvalidStatusTransition":
        raise PermanentError(f"the Message hub refused the delivery status: {result.rejection}", code="status_refused")
    return outcome


def _meta(envelope: dict, status: str):
    # Deterministic command id: a resend after a crash is answered, not applied twice.
    command_id = str(uuid.uuid5(_STATUS_IDS, f"{envelope['event_id']}/{status}"))
    return new_meta(
        envelope["aggregate_id"],
        envelope["tenant_id"],
        actor=f"spoke:{SPOKE_NAME}",
        command_id=command_id,
        correlation_id=envelope["correlation_id"],
        causation_id=envelope["event_id"],
    )


SPOKE = SpokeSpec(name=SPOKE_NAME, system=SYSTEM, topics=("message.events",), accepts=accepts, handle=handle)
