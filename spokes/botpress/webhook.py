"""Botpress callbacks: the Chat integration's webhook pushes each `message_created`
signal to `POST /webhooks/botpress/{tenant_id}` with its secret in `x-bp-secret`;
each bot message becomes one `poseidon.ingress.InboundReceived` (kind bot_reply),
stored through infra.ingress under the same rules as Facebook's webhook. Routes
nothing; our own user's messages echoed back are counted and left out.

Push body (the Chat API's signal, as tests/standins/botpress.py sends it):
`{"type": "message_created", "data": {"id", "createdAt", "conversationId", "userId",
"payload": {"type": "text", "text": ...}, "metadata"?, "isBot": true}}`.
The push names neither the bot nor our contact: the record's account id is the
tenant (its callback URL stands for its bot) and its contact id is the Botpress
conversation id, which the Botpress spoke maps to our contact. The secret authenticates
the tenant in the path: a tenant that connected bots of its own (ConnectBot) is pushed
to with one of their webhook secrets (read sealed from the App read store, opened for
that tenant, kept 10 s: spokes/botpress/bots.py) and nothing else; a tenant without one
with the platform's (POSEIDON_BOTPRESS_WEBHOOK_SECRET, the development bot's)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from infra.hub import envelope
from infra.ingress import INGRESS, error, new_id, request_id
from infra.spoke import RetryableError
from spokes.botpress.bots import BotConnections, opened_bots
from spokes.botpress.translate import PUSH_SECRET_HEADER, ChatMessage, MalformedAnswer, parse_push, push_is_authentic, reply_text

PLATFORM = "botpress"
KIND = "bot_reply"
PATH = "/webhooks/botpress/{tenant_id}"
ACTOR = "ingress:botpress"
EVENT_TYPE = "poseidon.ingress.InboundReceived"
MEDIA_URL_FIELDS = {"image": "imageUrl", "audio": "audioUrl", "video": "videoUrl", "file": "fileUrl"}
_TENANT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def attachments_of(payload: Mapping[str, Any]) -> list[dict[str, str]]:
    kind = payload.get("type")
    url = payload.get(MEDIA_URL_FIELDS.get(kind, ""), "") if isinstance(kind, str) else ""
    return [{"type": kind, "url": url}] if isinstance(url, str) and url else []


def inbound_record(
    message: ChatMessage,
    raw: Any,
    *,
    tenant_id: str,
    request_id: str,
    now: datetime,
    new_id: Callable[[], str] = new_id,
) -> dict[str, Any]:
    """One InboundReceived (bot_reply) for one bot message pushed for `tenant_id`."""
    return {
        "envelope": envelope(
            EVENT_TYPE,
            event_id=new_id(),
            aggregate_id=f"{PLATFORM}/{tenant_id}/{message.conversation_id}",
            tenant_id=tenant_id,
            correlation_id=new_id(),
            causation_id=request_id,
            occurred_at=now,
            actor=ACTOR,
        ),
        "platform": PLATFORM,
        "kind": KIND,
        "account_id": tenant_id,
        "contact_id": message.conversation_id,
        "message_id": message.id,
        "text": reply_text(message.payload) or "",
        "attachments": attachments_of(message.payload),
        "mids": [],
        "watermark": 0,
        "sent_at": message.created_at,
        "tenant_hint": tenant_id,
        "raw": json.dumps(raw, separators=(",", ":"), ensure_ascii=False),
    }


async def receive(request: web.Request) -> web.Response:
    ingress = request.app[INGRESS]
    tenant_id = request.match_info["tenant_id"]
    body = await ingress.read_body(request)
    secret = request.headers.get(PUSH_SECRET_HEADER)
    if not secret:
        ingress.signature_failed(request, "missing")
        return error(401, f"{PUSH_SECRET_HEADER} is missing")
    try:
        expected = await _push_secrets(request, tenant_id)
    except RetryableError:
        return error(503, "cannot check the push's secret now; send it again")
    if not any(push_is_authentic(secret, s) for s in expected):
        ingress.signature_failed(request, "invalid")
        return error(403, f"{PUSH_SECRET_HEADER} is not ours")
    if not _TENANT_ID.match(tenant_id):
        return await ingress.dead_letter(request, body, "tenant id in the path is not an id", "InvalidTenant")
    decoded, refused = await ingress.json_of(request, body)
    if refused is not None:
        return refused
    try:
        message = parse_push(decoded)
    except MalformedAnswer as exc:
        return await ingress.dead_letter(request, body, f"invalid push: {exc}", "InvalidPush")
    if message is None:
        # Label values from a fixed set: metric labels must not grow with what callers send.
        user_message = isinstance(decoded, Mapping) and decoded.get("type") == "message_created"
        ingress.skipped(PLATFORM, ["user_message" if user_message else "other_signal"])
        return await ingress.accept(request, [])
    record = inbound_record(message, decoded["data"], tenant_id=tenant_id, request_id=request_id(request), now=datetime.now(UTC))
    return await ingress.accept(request, [record])


async def _push_secrets(request: web.Request, tenant_id: str) -> list[str]:
    """The secrets a push for `tenant_id` may carry: its own bots' if it has any, else the
    platform's development bot's — in development mode only: in production a tenant
    without a bot of its own has no bot that could push (the one shared secret must not
    open every such tenant)."""
    settings = request.app[INGRESS].settings
    platform = [settings.botpress_webhook_secret] if settings.dev_mode else []
    holder = request.app.get(BOTS)  # absent: an application made without the webhooks' setups
    bots = holder.connections if holder is not None else None
    if bots is None or not _TENANT_ID.match(tenant_id):
        return platform
    own = await bots.push_secrets(tenant_id)
    return platform if own is None else own


class _Bots:
    """The tenants' bot connections, for the ingress application's lifetime."""

    connections: BotConnections | None = None


BOTS = web.AppKey("botpress_bots", _Bots)


def setup(app: web.Application) -> None:
    """Gives the ingress application the tenants' bots (a small pool on the App read
    store, connecting on first use, closed with the application)."""
    bots = app[BOTS] = _Bots()

    async def opened(app: web.Application):
        async with opened_bots(app[INGRESS].settings) as connections:
            bots.connections = connections
            yield
            bots.connections = None

    app.cleanup_ctx.append(opened)


SECRETS = ("botpress_webhook_secret",)
"""Settings these routes verify requests with (see the Facebook webhook's)."""


def routes() -> list[web.RouteDef]:
    return [web.post(PATH, receive)]
