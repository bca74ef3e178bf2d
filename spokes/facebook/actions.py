"""What the Facebook spoke does, as handle-ready functions of plain arguments: each makes
its Send API call through SpokeContext.call (retries + the tenant's breaker) with the
tenant's own page token for the page (spokes/facebook/tokens.py) and returns an
Outcome. A reply Messenger would refuse is refused here, without a call. A stored
token Facebook refuses (190 and friends) is reported to the Tenant hub: the channel
needs reauthorization (RequireChannelReauthorization, once per stored token)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime

import structlog

from hubs.tenant.commands import RequireChannelReauthorization, channel_account_id
from infra.command_client import new_meta
from infra.spoke import Outcome, ReauthorizationRequired, SpokeContext
from schemas.contracts import spoke_actor
from spokes.facebook.client import FacebookClient
from spokes.facebook.translate import Refusal, attachment_message, messaging_type_for, rich_message

SPOKE_NAME = "facebook"
SYSTEM = "facebook-graph"
SEND_MESSAGE = "send_message"
TAKE_THREAD_CONTROL = "take_thread_control"
_REAUTHORIZATION_IDS = uuid.UUID("0b7c8e43-3f0e-5d5e-a1f4-6d1c2b9e7a10")

log = structlog.get_logger(__name__)


async def send_reply(
    ctx: SpokeContext,
    *,
    tenant_id: str,
    page_id: str,
    psid: str,
    text: str,
    last_inbound_at: datetime | None,
    now: datetime,
    tag: str = "",
    page_token: str = "",
    at_most_once: bool = False,
    content: str = "",
) -> Outcome:
    """Sends `text` to the person `psid` of `page_id` as a RESPONSE within 24 h of their
    last message, as a MESSAGE_TAG with an allowed `tag` after that, or refuses (failed
    Outcome, no HTTP call). `page_token`: the tenant's page access token (default: the
    settings' development token). Failures of the call itself are raised (SpokeError);
    `at_most_once`: a call whose outcome is unknown is not retried. `content`: rich
    content (JSON, spokes/botpress/translate.reply_content) sent as quick replies, a
    template or an attachment; what Messenger cannot take goes as `text`, and the
    outcome's `data["degraded"]` says why."""
    try:
        messaging_type, tag = messaging_type_for(last_inbound_at, now, tag)
        body, degraded = rich_message(psid, text, _content(content), messaging_type, tag)
    except Refusal as refused:
        return _refused(refused, page_id)
    outcome = await _send(ctx, tenant_id, page_id, page_token, body, messaging_type, tag, at_most_once)
    if degraded:
        log.info("rich reply sent as text", tenant_id=tenant_id, page_id=page_id, reason=degraded)
        return dataclasses.replace(outcome, data={**outcome.data, "degraded": degraded[:500]})
    return outcome


def _content(content: str) -> dict | None:
    """Recorded rich content; content that does not read as such is reported by rich_message as degraded."""
    if not content:
        return None
    try:
        parsed = json.loads(content)
    except ValueError:
        return {"type": "unreadable"}
    return parsed if isinstance(parsed, dict) else {"type": "unreadable"}


async def send_attachment_reply(
    ctx: SpokeContext,
    *,
    tenant_id: str,
    page_id: str,
    psid: str,
    attachment_type: str,
    url: str,
    last_inbound_at: datetime | None,
    now: datetime,
    tag: str = "",
    page_token: str = "",
) -> Outcome:
    """As send_reply, for an image/audio/video/file Facebook fetches from `url`."""
    try:
        messaging_type, tag = messaging_type_for(last_inbound_at, now, tag)
        body = attachment_message(psid, attachment_type, url, messaging_type, tag)
    except Refusal as refused:
        return _refused(refused, page_id)
    return await _send(ctx, tenant_id, page_id, page_token, body, messaging_type, tag)


async def _send(
    ctx: SpokeContext,
    tenant_id: str,
    page_id: str,
    page_token: str,
    body: dict,
    messaging_type: str,
    tag: str,
    at_most_once: bool = False,
) -> Outcome:
    client = FacebookClient.for_context(ctx)
    token, sealed = await resolve_page_token(ctx, tenant_id, page_id, page_token)
    try:
        sent = await ctx.call(tenant_id, SEND_MESSAGE, lambda: client.send(token, body), at_most_once=at_most_once)
    except ReauthorizationRequired as exc:
        await _token_refused(ctx, tenant_id, page_id, sealed, exc)
        raise
    data = {"page_id": page_id, "messaging_type": messaging_type}
    if tag:
        data["tag"] = tag
    return Outcome(SEND_MESSAGE, detail=f"sent as {messaging_type}", external_id=sent.message_id, data=data)


async def take_thread_back(ctx: SpokeContext, *, tenant_id: str, page_id: str, psid: str, reason: str) -> Outcome:
    """Messenger's Handover Protocol: take the person's thread back from the app that
    holds it (the Page Inbox), because the conversation was handed back to the bot here."""
    client = FacebookClient.for_context(ctx)
    token, sealed = await resolve_page_token(ctx, tenant_id, page_id, "")
    metadata = f"handed back to the bot: {reason}"[:1000]
    try:
        await ctx.call(tenant_id, TAKE_THREAD_CONTROL, lambda: client.take_thread_control(token, psid, metadata))
    except ReauthorizationRequired as exc:
        await _token_refused(ctx, tenant_id, page_id, sealed, exc)
        raise
    return Outcome(TAKE_THREAD_CONTROL, detail="thread control taken back from the app that held it", data={"page_id": page_id})


async def resolve_page_token(ctx: SpokeContext, tenant_id: str, page_id: str, given: str = "") -> tuple[str, str]:
    """(token, sealed form) of the tenant's page: `given` when there is one, else the
    tenant's own (sealed form non-empty), else the settings' development token."""
    tokens = getattr(ctx.resources, "tokens", None)
    if given:
        return given, ""
    if tokens is not None:
        found = await tokens.of(tenant_id, page_id)
        return found.token, found.sealed
    return ctx.settings.facebook_page_token, ""


async def _token_refused(ctx: SpokeContext, tenant_id: str, page_id: str, sealed: str, exc: ReauthorizationRequired) -> None:
    tokens = getattr(ctx.resources, "tokens", None)
    if tokens is not None:
        tokens.forget(tenant_id, page_id)
    if sealed:  # the tenant's own token, not the development fallback
        await report_reauthorization(ctx, tenant_id, page_id, sealed, exc.reason)


async def report_reauthorization(ctx: SpokeContext, tenant_id: str, page_id: str, sealed: str, reason: str) -> None:
    """Tell the Tenant hub that Facebook refused the page's stored token. The command id
    derives from that stored token, so every refusal of it is one decision; a token the
    tenant rotated since gets its own. A refusal by the hub (already awaiting, moved) is fine."""
    if ctx.commands is None:
        return
    meta = new_meta(
        channel_account_id("facebook", page_id),
        tenant_id,
        actor=spoke_actor(SPOKE_NAME),
        command_id=str(uuid.uuid5(_REAUTHORIZATION_IDS, f"{tenant_id}/{page_id}/{sealed}")),
    )
    result = await ctx.commands.send(RequireChannelReauthorization(meta, reason=reason[:200]))
    log.warning(
        "page token refused; channel needs reauthorization",
        tenant_id=tenant_id,
        page_id=page_id,
        recorded=result.accepted,
        rejection=result.rejection,
    )


def _refused(refused: Refusal, page_id: str) -> Outcome:
    return Outcome(SEND_MESSAGE, succeeded=False, detail=refused.reason, error_code=refused.code, data={"page_id": page_id})
