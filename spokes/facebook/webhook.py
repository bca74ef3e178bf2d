"""The Messenger webhook: the verification handshake, the X-Hub-Signature-256 check,
and each parsed item mapped to one `poseidon.ingress.InboundReceived` record, stored
through infra.ingress before Facebook gets its 200. It decides nothing about the
messages (the Message hub routes) and does not deduplicate (see infra.ingress)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from infra.hub import envelope
from infra.ingress import INGRESS, error, new_id, request_id
from spokes.facebook.translate import (
    HANDOVER,
    POSTBACK,
    UNSUPPORTED,
    InboundItem,
    InvalidWebhook,
    parse_webhook,
    signature_header,
    signature_matches,
)

PLATFORM = "facebook"
PATH = "/webhooks/facebook"
SIGNATURE_HEADER = "X-Hub-Signature-256"
ACTOR = "ingress:facebook"
EVENT_TYPE = "poseidon.ingress.InboundReceived"
_compact_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
"""`json.dumps(value, separators=(",", ":"), ensure_ascii=False)` without building an encoder per call."""


def expected_signature(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of the raw body keyed by the app secret>`, as Facebook signs."""
    return signature_header(secret, body)


def verify_signature(header: str | None, secret: str, body: bytes) -> bool:
    """Whether the X-Hub-Signature-256 header signs exactly `body` (constant-time compare)."""
    return signature_matches(secret, body, header)


def verify_subscription(query: Mapping[str, str], verify_token: str) -> tuple[int, str]:
    """The answer to Facebook's `GET` handshake: (200, hub.challenge) when
    hub.mode is subscribe and hub.verify_token is ours, else (4xx, reason)."""
    if query.get("hub.mode") != "subscribe":
        return 400, "hub.mode must be subscribe"
    challenge = query.get("hub.challenge", "")
    if not challenge:
        return 400, "hub.challenge is missing"
    token = query.get("hub.verify_token", "")
    if not hmac.compare_digest(token.encode(), verify_token.encode()):
        return 403, "hub.verify_token does not match"
    return 200, challenge


def raw_events(body: Mapping[str, Any]) -> Iterator[Any]:
    """Each event JSON of a body `parse_webhook` accepted, in the order it returns
    their items (entries in order, messaging before standby)."""
    for entry in body["entry"]:
        for key in ("messaging", "standby"):
            yield from entry.get(key, ())


def message_id_of(item: InboundItem) -> str:
    """The platform message id the Message hub deduplicates on. Postbacks have no
    stable mid on every API version: 'postback:<psid>:<timestamp>' is the same
    on every re-delivery of the same tap."""
    if item.kind in (POSTBACK, HANDOVER):
        return f"{item.kind}:{item.psid}:{item.timestamp_ms}"
    return item.mid


def inbound_record(
    item: InboundItem,
    raw: Any,
    *,
    request_id: str,
    now: datetime,
    new_id: Callable[[], str] = new_id,
) -> dict[str, Any]:
    """One InboundReceived record for one item. The correlation id is new here and
    follows the message through routing, spokes and replies; the causation id is
    the HTTP request that brought it."""
    aggregate_id = f"{PLATFORM}/{item.page_id}/{item.psid}"
    return {
        "envelope": envelope(
            EVENT_TYPE,
            event_id=new_id(),
            aggregate_id=aggregate_id,
            correlation_id=new_id(),
            causation_id=request_id,
            occurred_at=now,
            actor=ACTOR,
        ),
        "platform": PLATFORM,
        "kind": item.kind,
        "account_id": item.page_id,
        "contact_id": item.psid,
        "message_id": message_id_of(item),
        # A postback's text is its button title (what the person saw and "said");
        # its payload, like a quick reply's, is in `raw`.
        # A handover's text is the app that holds the thread now (the router needs no more of it).
        "text": (item.title or item.payload) if item.kind == POSTBACK else item.app_id if item.kind == HANDOVER else item.text,
        "attachments": [{"type": a.type, "url": a.url} for a in item.attachments],
        "choice": item.choice,
        "mids": list(item.mids),
        "watermark": item.watermark_ms,
        "sent_at": item.at,
        "tenant_hint": "",
        "raw": _compact_json(raw),
    }


def records_of(body: Mapping[str, Any], *, request_id: str, now: datetime) -> tuple[list[dict[str, Any]], list[InboundItem]]:
    """(records to store, items left out) for a decoded webhook body; raises InvalidWebhook.

    Left out: kinds we do not handle yet (reactions, opt-ins, referrals…) and
    standby items (another app holds the thread; InboundReceived has no field to
    say so, and acting on them would answer over that app)."""
    items = parse_webhook(body)
    raws = list(raw_events(body))
    if len(raws) != len(items):  # parse_webhook's order is the contract raw_events relies on
        raise InvalidWebhook(f"{len(items)} items parsed but {len(raws)} events found")
    records, skipped = [], []
    for item, raw in zip(items, raws, strict=True):
        if item.kind == UNSUPPORTED or item.standby:
            skipped.append(item)
            continue
        records.append(inbound_record(item, raw, request_id=request_id, now=now))
    return records, skipped


# ---------------------------------------------------------------- HTTP handlers


async def verify(request: web.Request) -> web.Response:
    status, answer = verify_subscription(request.query, request.app[INGRESS].settings.facebook_verify_token)
    if status != 200:
        return error(status, answer)
    return web.Response(text=answer, content_type="text/plain")


async def receive(request: web.Request) -> web.Response:
    """Authenticate, split and store; see infra.ingress for the answers."""
    ingress = request.app[INGRESS]
    body = await ingress.read_body(request)
    header = request.headers.get(SIGNATURE_HEADER)
    if not header:
        ingress.signature_failed(request, "missing")
        return error(401, f"{SIGNATURE_HEADER} is missing")
    if not verify_signature(header, ingress.settings.facebook_app_secret, body):
        ingress.signature_failed(request, "invalid")
        return error(403, f"{SIGNATURE_HEADER} does not match the body")
    # From here on the body is Facebook's: whatever is wrong with it is kept, not dropped.
    decoded, refused = await ingress.json_of(request, body)
    if refused is not None:
        return refused
    try:
        records, skipped = records_of(decoded, request_id=request_id(request), now=datetime.now(UTC))
    except InvalidWebhook as exc:
        return await ingress.dead_letter(request, body, f"invalid webhook: {exc.reason}", "InvalidWebhook")
    if skipped:
        ingress.skipped(PLATFORM, [("standby" if item.standby else item.kind) for item in skipped])
    return await ingress.accept(request, records)


SECRETS = ("facebook_app_secret", "facebook_verify_token")
"""Settings these routes verify requests with: ingress refuses to start while one is
empty or (outside development mode) the built-in default."""


def routes() -> list[web.RouteDef]:
    return [web.get(PATH, verify), web.post(PATH, receive)]
