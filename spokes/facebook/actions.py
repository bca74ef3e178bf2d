"""What the Facebook spoke does, as handle-ready functions of plain arguments: each makes
its Send API call through SpokeContext.call (retries + the tenant's breaker) and
returns an Outcome. A reply Messenger would refuse is refused here, without a call."""

from __future__ import annotations

from datetime import datetime

from infra.spoke import Outcome, SpokeContext
from spokes.facebook.client import FacebookClient
from spokes.facebook.translate import Refusal, attachment_message, messaging_type_for, text_message

SPOKE_NAME = "facebook"
SYSTEM = "facebook-graph"
SEND_MESSAGE = "send_message"


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
) -> Outcome:
    """Sends `text` to the person `psid` of `page_id` as a RESPONSE within 24 h of their
    last message, as a MESSAGE_TAG with an allowed `tag` after that, or refuses (failed
    Outcome, no HTTP call). `page_token`: the tenant's page access token (default: the
    settings' development token). Failures of the call itself are raised (SpokeError);
    `at_most_once`: a call whose outcome is unknown is not retried."""
    try:
        messaging_type, tag = messaging_type_for(last_inbound_at, now, tag)
        body = text_message(psid, text, messaging_type, tag)
    except Refusal as refused:
        return _refused(refused, page_id)
    return await _send(ctx, tenant_id, page_id, page_token, body, messaging_type, tag, at_most_once)


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
    token = page_token or ctx.settings.facebook_page_token
    sent = await ctx.call(tenant_id, SEND_MESSAGE, lambda: client.send(token, body), at_most_once=at_most_once)
    data = {"page_id": page_id, "messaging_type": messaging_type}
    if tag:
        data["tag"] = tag
    return Outcome(SEND_MESSAGE, detail=f"sent as {messaging_type}", external_id=sent.message_id, data=data)


def _refused(refused: Refusal, page_id: str) -> Outcome:
    return Outcome(SEND_MESSAGE, succeeded=False, detail=refused.reason, error_code=refused.code, data={"page_id": page_id})
