"""The typing indicator: `sender_action: typing_on` to the contact when the Message hub
routes their message to the bot, so Messenger shows "typing…" while the bot thinks.
Best effort and cheap: one Send API call with a short timeout, no retries, skipped
while the tenant's Send API breaker is open or when the decision is old (a spoke
catching up after a restart); it never fails, delays or blocks the reply, which the
inbound-message saga delivers on its own path."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog

from infra.outage import PLATFORM_OUTAGE
from infra.spoke import Outcome, SpokeContext, SpokeError
from spokes.facebook.actions import resolve_page_token
from spokes.facebook.client import FacebookClient
from spokes.facebook.translate import InvalidOutbound, sender_action_message

log = structlog.get_logger(__name__)

MESSAGE_ROUTED = "poseidon.message.MessageRouted"
OPERATION = "typing_on"
BOT_SPOKE = "botpress"
TIMEOUT_S = 2.0
"""The indicator's one call, at most: a slow Graph API must not hold the conversation's next record."""
FRESH_S = 30.0
"""A decision older than this is not worth a typing indicator (the reply is likely out already)."""


def wants_typing(event_type: str, record: Mapping[str, Any]) -> bool:
    """A Messenger message the hub routed to the bot."""
    return event_type == MESSAGE_ROUTED and record.get("channel") == "facebook" and record.get("spoke") == BOT_SPOKE


async def show_typing(ctx: SpokeContext, record: Mapping[str, Any], *, now: datetime | None = None) -> Outcome:
    envelope = record["envelope"]
    tenant_id, page_id = envelope["tenant_id"], record["channel_account_id"]
    data = {"page_id": page_id}
    decided = envelope.get("occurred_at")
    if isinstance(decided, datetime) and ((now or datetime.now(UTC)) - decided).total_seconds() > FRESH_S:
        return Outcome(OPERATION, detail="decision too old for a typing indicator: not shown", data=data)
    if ctx.breaker(tenant_id).current_state == "open":
        return Outcome(OPERATION, detail="Send API breaker open: not shown", data=data)
    try:
        body = sender_action_message(record["contact_id"], "typing_on")
        async with asyncio.timeout(TIMEOUT_S):
            token, _ = await resolve_page_token(ctx, tenant_id, page_id)
            await FacebookClient.for_context(ctx).send(token, body)
    except (SpokeError, InvalidOutbound, httpx.HTTPError, TimeoutError, *PLATFORM_OUTAGE) as exc:
        # The read store of page tokens away too: the reply's own path waits for it, not this.
        code = getattr(exc, "code", "") or type(exc).__name__
        log.info("typing indicator not shown", tenant_id=tenant_id, page_id=page_id, code=code)
        return Outcome(
            OPERATION, succeeded=False, detail=f"not shown (best effort): {code}"[:200], error_code=str(code), data=data
        )
    return Outcome(OPERATION, detail="typing indicator shown", data=data)
