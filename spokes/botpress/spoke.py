"""The Botpress spoke's wiring: the inbound-message saga's `AskBot` step asks the
tenant's own Botpress bot (the bot connection of its subscription to the routed app:
spokes/botpress/bots.py) (Chat API, per-contact user and conversation kept) and
records each reply as an outbound message in the Message hub; the replies are the
step's result, which the saga's next step delivers. It routes nothing: the saga
asks only for messages the Message Hub routed to the bot."""

from __future__ import annotations

import dataclasses
import json
import uuid

from hubs.message.commands import RecordOutboundMessage
from infra.command_client import new_meta
from infra.spoke import Outcome, PermanentError, ReauthorizationRequired, SpokeCall, SpokeContext, SpokeSpec
from schemas.contracts import spoke_actor
from spokes.botpress.actions import ask_bot_replies
from spokes.botpress.bots import opened_resources

ACTOR = spoke_actor("botpress")
"""Actor of the replies it records; the Facebook spoke leaves those to the saga."""
_REPLY_IDS = uuid.UUID("0b9e6c2e-1f53-5d0f-8a57-2e4f6a8c1d23")


async def ask(ctx: SpokeContext, call: SpokeCall) -> Outcome:
    p = call.payload
    inbound_id = p["message_id"]
    bots, app_id = ctx.resources.bots, p.get("app_id", "")
    bot = await bots.of(call.tenant_id, app_id)
    try:
        outcome, replies = await ask_bot_replies(
            ctx,
            ctx.resources.store,
            webhook_id=bot.webhook_id,
            tenant_id=call.tenant_id,
            channel=p["channel"],
            contact_id=p["contact_id"],
            text=p["text"] or "(attachment)",
            choice=p.get("choice", ""),
            message_id=inbound_id,
        )
    except ReauthorizationRequired:
        bots.forget(call.tenant_id, app_id)  # a bot connected again since is read at the next try
        raise
    reply_ids = [r for r in outcome.data.get("reply_ids", "").split(",") if r]
    recorded = []
    for index, reply in enumerate(replies):
        # Ids derived from the inbound message and the bot's reply id: asking again
        # (a retried step, a crash) records nothing twice (the hub answers the duplicate).
        reply_key = reply_ids[index] if index < len(reply_ids) else str(index)
        message_id = f"bot-{uuid.uuid5(_REPLY_IDS, f'{inbound_id}/{reply_key}')}"
        meta = new_meta(
            p["conversation_id"],
            call.tenant_id,
            actor=ACTOR,
            command_id=str(uuid.uuid5(_REPLY_IDS, f"{inbound_id}/{reply_key}/record")),
            correlation_id=call.correlation_id,
            causation_id=call.event_id,
        )
        # The rich content travels through the Message hub as data, beside its text form.
        content = json.dumps(reply.content, sort_keys=True, separators=(",", ":")) if reply.content else ""
        result = await ctx.commands.send(RecordOutboundMessage(meta, message_id, reply.text, inbound_id, content))
        if not result.accepted and result.rejection != "DuplicateMessage":
            raise PermanentError(f"the Message hub refused the bot's reply: {result.rejection}", code="reply_refused")
        recorded.append({"message_id": message_id, "text": reply.text, "content": content, "degraded": reply.degraded})
    return dataclasses.replace(outcome, result={"replies": recorded})


SPOKE = SpokeSpec(
    name="botpress",
    ops_index=2,
    system="botpress",
    requests={"AskBot": ask},
    resources=lambda ctx: opened_resources(ctx.settings),
)
