"""The Facebook spoke's wiring. Two ways a message goes out through the Send API
(24-hour window and tags applied), each reporting its delivery status back to the
Message hub (sent with the platform's message id, or failed with the reason):

* the inbound-message saga's `SendReply` step delivers the bot's replies (the
  `ask_bot` step's result) — a failure fails the step and the saga compensates;
* every other outbound message recorded for a Messenger conversation (an agent's
  reply, an operator's message) is sent when its OutboundMessageRecorded arrives.
  Replies the bot recorded are left to the saga, so none is sent twice.

Delivery and read receipts come back through ingress and the router. It routes nothing."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

from hubs.message.commands import UpdateDeliveryStatus
from infra.command_client import new_meta
from infra.spoke import Outcome, PermanentError, SpokeCall, SpokeContext, SpokeSpec
from schemas.contracts import spoke_actor
from spokes.facebook.actions import SPOKE_NAME, SYSTEM, send_reply

OUTBOUND_RECORDED = "poseidon.message.OutboundMessageRecorded"
SAGA_DELIVERED_ACTORS = frozenset({spoke_actor("botpress")})
"""Outbound messages recorded by these actors are delivered by the inbound-message saga."""
_STATUS_IDS = uuid.UUID("6f1c1a52-4c4e-5b1e-9d35-0c6f2a3b7e11")


def accepts(event_type: str, record: dict) -> bool:
    return (
        event_type == OUTBOUND_RECORDED
        and record.get("channel") == "facebook"
        and record["envelope"].get("actor") not in SAGA_DELIVERED_ACTORS
    )


async def handle(ctx: SpokeContext, event_type: str, record: dict) -> Outcome:
    envelope = record["envelope"]
    last_inbound = record.get("last_inbound_at")
    outcome = await _send(
        ctx,
        tenant_id=envelope["tenant_id"],
        page_id=record["channel_account_id"],
        psid=record["contact_id"],
        text=record["text"],
        last_inbound_at=last_inbound if last_inbound and last_inbound.timestamp() > 0 else None,
    )
    await report_status(
        ctx,
        outcome,
        conversation_id=envelope["aggregate_id"],
        tenant_id=envelope["tenant_id"],
        message_id=record["message_id"],
        correlation_id=envelope["correlation_id"],
        causation_id=envelope["event_id"],
        key=envelope["event_id"],
    )
    return outcome


async def send_replies(ctx: SpokeContext, call: SpokeCall) -> Outcome:
    """The saga's `SendReply` step: every reply the bot gave, in order; the first
    failure fails the step (the replies sent before it stay sent)."""
    p = call.payload
    last_inbound = datetime.fromisoformat(p["last_inbound_at"]) if p.get("last_inbound_at") else None
    sent: list[str] = []
    outcome = Outcome("send_message", detail="no reply to send")
    for reply in p["replies"]:
        outcome = await _send(
            ctx, tenant_id=call.tenant_id, page_id=p["page_id"], psid=p["psid"], text=reply["text"], last_inbound_at=last_inbound
        )
        await report_status(
            ctx,
            outcome,
            conversation_id=p["conversation_id"],
            tenant_id=call.tenant_id,
            message_id=reply["message_id"],
            correlation_id=call.correlation_id,
            causation_id=call.event_id,
            key=reply["message_id"],
        )
        if not outcome.succeeded:
            return outcome
        sent.append(outcome.external_id)
    return dataclasses.replace(outcome, detail=f"{len(sent)} reply(ies) sent", result={"sent": sent})


async def _send(ctx: SpokeContext, *, tenant_id: str, page_id: str, psid: str, text: str, last_inbound_at) -> Outcome:
    try:
        return await send_reply(
            ctx,
            tenant_id=tenant_id,
            page_id=page_id,
            psid=psid,
            text=text,
            last_inbound_at=last_inbound_at,
            now=datetime.now(UTC),
        )
    except PermanentError as exc:  # e.g. re-authorisation needed: the message failed, say so
        return Outcome(operation="send_message", succeeded=False, detail=exc.reason, error_code=exc.code)


async def report_status(
    ctx: SpokeContext,
    outcome: Outcome,
    *,
    conversation_id: str,
    tenant_id: str,
    message_id: str,
    correlation_id: str,
    causation_id: str,
    key: str,
) -> None:
    """Tell the Message hub what became of one outbound message. The command id
    derives from `key` and the status: a resend after a crash is answered, not applied twice."""
    status = "sent" if outcome.succeeded else "failed"
    meta = new_meta(
        conversation_id,
        tenant_id,
        actor=spoke_actor(SPOKE_NAME),
        command_id=str(uuid.uuid5(_STATUS_IDS, f"{key}/{status}")),
        correlation_id=correlation_id,
        causation_id=causation_id,
    )
    if outcome.succeeded:
        command = UpdateDeliveryStatus(meta, message_id, "sent", "", outcome.external_id)
    else:
        command = UpdateDeliveryStatus(meta, message_id, "failed", outcome.detail[:500])
    result = await ctx.commands.send(command)
    if not result.accepted and result.rejection != "InvalidStatusTransition":
        raise PermanentError(f"the Message hub refused the delivery status: {result.rejection}", code="status_refused")


SPOKE = SpokeSpec(
    name=SPOKE_NAME,
    ops_index=1,
    system=SYSTEM,
    topics=("message.events",),
    accepts=accepts,
    handle=handle,
    requests={"SendReply": send_replies},
)
