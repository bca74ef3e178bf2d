"""The Botpress spoke's wiring: a message the Message Hub routed to a bot is
asked of the tenant's Botpress bot (Chat API, per-contact user and conversation
kept), and each reply is recorded as an outbound message in the Message hub —
which the Facebook spoke then delivers. It routes nothing."""

from __future__ import annotations

import uuid

from hubs.message.commands import RecordOutboundMessage
from infra.command_client import new_meta
from infra.spoke import Outcome, PermanentError, SpokeContext, SpokeSpec
from spokes.botpress.actions import ask_bot
from spokes.botpress.mapping_store import opened_store

MESSAGE_ROUTED = "poseidon.message.MessageRouted"
_REPLY_IDS = uuid.UUID("0b9e6c2e-1f53-5d0f-8a57-2e4f6a8c1d23")


def accepts(event_type: str, record: dict) -> bool:
    return event_type == MESSAGE_ROUTED and record.get("spoke") == "botpress"


async def handle(ctx: SpokeContext, event_type: str, record: dict) -> Outcome:
    envelope = record["envelope"]
    outcome, replies = await ask_bot(
        ctx,
        ctx.resources,
        tenant_id=envelope["tenant_id"],
        channel=record["channel"],
        contact_id=record["contact_id"],
        text=record["text"] or "(attachment)",
        message_id=record["message_id"],
    )
    reply_ids = [r for r in outcome.data.get("reply_ids", "").split(",") if r]
    for index, text in enumerate(replies):
        # Ids derived from the routed message and the reply: asking again after a
        # crash records nothing twice (the Message hub answers the duplicate).
        reply_key = reply_ids[index] if index < len(reply_ids) else str(index)
        inbound_id = record["message_id"]
        message_id = f"bot-{uuid.uuid5(_REPLY_IDS, f'{inbound_id}/{reply_key}')}"
        meta = new_meta(
            envelope["aggregate_id"],
            envelope["tenant_id"],
            actor="spoke:botpress",
            command_id=str(uuid.uuid5(_REPLY_IDS, f"{envelope['event_id']}/{reply_key}")),
            correlation_id=envelope["correlation_id"],
            causation_id=envelope["event_id"],
        )
        result = await ctx.commands.send(RecordOutboundMessage(meta, message_id, text, record["message_id"]))
        if not result.accepted and result.rejection != "DuplicateMessage":
            raise PermanentError(f"the Message hub refused the bot's reply: {result.rejection}", code="reply_refused")
    return outcome


SPOKE = SpokeSpec(
    name="botpress",
    system="botpress",
    topics=("message.events",),
    accepts=accepts,
    handle=handle,
    resources=lambda ctx: opened_store(ctx.settings),
)
