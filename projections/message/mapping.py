"""Pure mapping of message events to read-store statements. Every statement is
idempotent on its own (keys and version guards), so a replayed event changes
nothing. Never logs: message text passes through here."""

from __future__ import annotations

import json
import uuid

from infra.projection import Statement

# Phases: rows that others update exist first; inserts of one kind batch together;
# updates run in event order within their phase (their version guards need it).
STARTED, RECORDED, HISTORY, MESSAGE_UPDATED, CONVERSATION_UPDATED = 0, 1, 2, 3, 4

START = """INSERT INTO conversations (tenant_id, conversation_id, channel, channel_account_id, contact_id, status,
    message_count, started_at, last_message_at, last_activity_at, version, updated_at)
VALUES ($1, $2, $3, $4, $5, 'open', 0, $6, NULL, $6, $7, $6) ON CONFLICT DO NOTHING"""
MESSAGE = """INSERT INTO messages (tenant_id, conversation_id, message_id, sequence, direction, text, attachments,
    in_reply_to, status, status_reason, received_at, created_at, updated_at, version)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9, '', $10, $11, $11, $12) ON CONFLICT DO NOTHING"""
HISTORY_ROW = """INSERT INTO message_status_history (tenant_id, conversation_id, version, message_id, status,
    previous_status, reason, event_id, correlation_id, occurred_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING"""
STATUS = """UPDATE messages SET status = $4, status_reason = $5, updated_at = $6, version = $7
WHERE tenant_id = $1 AND conversation_id = $2 AND message_id = $3 AND version < $7"""
# One routing decision per message (the hub refuses a second one): a plain SET is idempotent.
ROUTING = """UPDATE messages SET routed_app_id = $4, routed_spoke = $5, routing_rule = $6, routing_reason = $7,
    routing_facts = $8::jsonb, updated_at = $9
WHERE tenant_id = $1 AND conversation_id = $2 AND message_id = $3"""
# One statement for every conversation change (NULL keeps a column), so a batch of them is one executemany.
CONVERSATION = """UPDATE conversations SET status = COALESCE($3, status), message_count = COALESCE($4, message_count),
    last_message_at = COALESCE($5, last_message_at), last_activity_at = COALESCE($5, last_activity_at),
    version = $6, updated_at = $7
WHERE tenant_id = $1 AND conversation_id = $2 AND version < $6"""

INBOUND, OUTBOUND = "inbound", "outbound"
RECEIVED, QUEUED = "received", "queued"


def apply(event_type: str, record: dict) -> list[Statement]:
    env = record["envelope"]
    tenant_id, conversation_id = env["tenant_id"], uuid.UUID(env["aggregate_id"])
    version, at = env["aggregate_version"], env["occurred_at"]
    kind = event_type.rsplit(".", 1)[-1]

    def history(message_id: str, status: str, previous: str = "", reason: str = "") -> Statement:
        args = (tenant_id, conversation_id, version, message_id, status, previous, reason, uuid.UUID(env["event_id"]),
                env["correlation_id"], at)  # fmt: skip
        return Statement(HISTORY_ROW, args, phase=HISTORY)

    def conversation(status: str | None = None, message_count: int | None = None, message_at=None) -> Statement:
        return Statement(
            CONVERSATION, (tenant_id, conversation_id, status, message_count, message_at, version, at), phase=CONVERSATION_UPDATED
        )

    def message(direction: str, status: str, attachments: list, in_reply_to: str, received_at) -> Statement:
        args = (tenant_id, conversation_id, record["message_id"], record["sequence"], direction, record["text"],
                _json(attachments), in_reply_to, status, received_at, at, version)  # fmt: skip
        return Statement(MESSAGE, args, phase=RECORDED)

    if kind == "ConversationStarted":
        args = (tenant_id, conversation_id, record["channel"], record["channel_account_id"], record["contact_id"], at, version)
        return [Statement(START, args, phase=STARTED)]
    if kind == "InboundMessageRecorded":
        return [
            message(INBOUND, RECEIVED, record["attachments"], "", record["received_at"]),
            history(record["message_id"], RECEIVED),
            conversation(message_count=record["sequence"], message_at=at),
        ]
    if kind == "OutboundMessageRecorded":
        return [
            message(OUTBOUND, QUEUED, [], record["in_reply_to"], None),
            history(record["message_id"], QUEUED),
            conversation(message_count=record["sequence"], message_at=at),
        ]
    if kind == "DeliveryStatusUpdated":
        message_id, status, reason = record["message_id"], record["status"], record["reason"]
        return [
            history(message_id, status, record["previous_status"], reason),
            Statement(STATUS, (tenant_id, conversation_id, message_id, status, reason, at, version), phase=MESSAGE_UPDATED),
            conversation(),
        ]
    if kind in ("MessageRouted", "MessageRejected"):
        app_id, spoke = record.get("app_id", ""), record.get("spoke", "")
        facts = json.dumps(record["facts"], sort_keys=True, separators=(",", ":"))
        args = (tenant_id, conversation_id, record["message_id"], app_id, spoke, record["rule"], record["reason"], facts, at)
        return [Statement(ROUTING, args, phase=MESSAGE_UPDATED), conversation()]
    if kind == "ConversationClosed":
        return [conversation(status="closed")]
    if kind == "ConversationReopened":
        return [conversation(status="open")]
    raise ValueError(f"the message read model has no mapping for {event_type}")


def _json(attachments: list) -> str:
    keys = ("kind", "key", "content_type", "size_bytes")
    # The platform's URL (InboundMessageRecorded v2) only where there is one.
    return json.dumps(
        [{**{k: a[k] for k in keys}, **({"url": a["url"]} if a.get("url") else {})} for a in attachments], separators=(",", ":")
    )
