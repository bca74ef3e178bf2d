"""Pure mapping of message events to read-store statements. Every statement is
idempotent on its own (keys and version guards), so a replayed event changes
nothing. Never logs: message text passes through here."""

from __future__ import annotations

import json
import uuid

from infra.projection import Const, Insert, Keep, P, Statement, Update

# Phases: rows that others update exist first; inserts of one kind batch together;
# updates run in event order within their phase (their version guards need it).
STARTED, RECORDED, HISTORY, MESSAGE_UPDATED, CONVERSATION_UPDATED = 0, 1, 2, 3, 4

START_ROW = Insert(
    "conversations",
    {"tenant_id": 1, "conversation_id": 2, "channel": 3, "channel_account_id": 4, "contact_id": 5,
     "status": Const("'open'", "open"), "message_count": Const("0", 0), "started_at": 6,
     "last_message_at": Const("NULL", None), "last_activity_at": 6, "version": 7, "updated_at": 6},
    key=("tenant_id", "conversation_id"),
    any_conflict=True,
)  # fmt: skip
START = START_ROW.sql
MESSAGE_ROW = Insert(
    "messages",
    {"tenant_id": 1, "conversation_id": 2, "message_id": 3, "sequence": 4, "direction": 5, "text": 6,
     "attachments": P(7, "jsonb"), "in_reply_to": 8, "status": 9, "status_reason": Const("''", ""), "received_at": 10,
     "created_at": 11, "updated_at": 11, "version": 12},
    key=("tenant_id", "conversation_id", "message_id"),
    unique=(("tenant_id", "conversation_id", "sequence"),),
    any_conflict=True,
)  # fmt: skip
MESSAGE = MESSAGE_ROW.sql
HISTORY_ENTRY = Insert(
    "message_status_history",
    {"tenant_id": 1, "conversation_id": 2, "version": 3, "message_id": 4, "status": 5, "previous_status": 6,
     "reason": 7, "event_id": 8, "correlation_id": 9, "occurred_at": 10},
    key=("tenant_id", "conversation_id", "version"),
    unique=(("event_id",),),
    any_conflict=True,
)  # fmt: skip
HISTORY_ROW = HISTORY_ENTRY.sql
STATUS_ROW = Update(
    "messages",
    key={"tenant_id": 1, "conversation_id": 2, "message_id": 3},
    set={"status": 4, "status_reason": 5, "updated_at": 6, "version": 7},
    guard=7,
)
STATUS = STATUS_ROW.sql
# One routing decision per message (the hub refuses a second one): a plain SET is idempotent.
ROUTING_ROW = Update(
    "messages",
    key={"tenant_id": 1, "conversation_id": 2, "message_id": 3},
    set={"routed_app_id": 4, "routed_spoke": 5, "routing_rule": 6, "routing_reason": 7, "routing_facts": P(8, "jsonb"),
         "updated_at": 9},
)  # fmt: skip
ROUTING = ROUTING_ROW.sql
# One statement for every conversation change (NULL keeps a column), so a batch of them is one executemany.
CONVERSATION_ROW = Update(
    "conversations",
    key={"tenant_id": 1, "conversation_id": 2},
    set={"status": Keep(3), "message_count": Keep(4), "last_message_at": Keep(5), "last_activity_at": Keep(5),
         "version": 6, "updated_at": 7, "handled_by": Keep(8), "agent_id": Keep(9)},
    guard=6,
)  # fmt: skip
CONVERSATION = CONVERSATION_ROW.sql

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
        return HISTORY_ENTRY.statement(args, phase=HISTORY)

    def conversation(
        status: str | None = None, message_count: int | None = None, message_at=None, handled_by=None, agent_id=None
    ) -> Statement:
        args = (tenant_id, conversation_id, status, message_count, message_at, version, at, handled_by, agent_id)
        return CONVERSATION_ROW.statement(args, phase=CONVERSATION_UPDATED)

    def message(direction: str, status: str, attachments: list, in_reply_to: str, received_at) -> Statement:
        args = (tenant_id, conversation_id, record["message_id"], record["sequence"], direction, record["text"],
                _json(attachments), in_reply_to, status, received_at, at, version)  # fmt: skip
        return MESSAGE_ROW.statement(args, phase=RECORDED)

    if kind == "ConversationStarted":
        args = (tenant_id, conversation_id, record["channel"], record["channel_account_id"], record["contact_id"], at, version)
        return [START_ROW.statement(args, phase=STARTED)]
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
            STATUS_ROW.statement((tenant_id, conversation_id, message_id, status, reason, at, version), phase=MESSAGE_UPDATED),
            conversation(),
        ]
    if kind in ("MessageRouted", "MessageRejected"):
        app_id, spoke = record.get("app_id", ""), record.get("spoke", "")
        facts = json.dumps(record["facts"], sort_keys=True, separators=(",", ":"))
        args = (tenant_id, conversation_id, record["message_id"], app_id, spoke, record["rule"], record["reason"], facts, at)
        return [ROUTING_ROW.statement(args, phase=MESSAGE_UPDATED), conversation()]
    if kind == "ConversationClosed":
        return [conversation(status="closed")]
    if kind == "ConversationReopened":
        return [conversation(status="open")]
    if kind == "AgentRequested":
        return [conversation(handled_by="awaiting_agent", agent_id="")]
    if kind == "ConversationTaken":
        return [conversation(handled_by="agent", agent_id=record["agent_id"])]
    if kind == "ConversationHandedBack":
        return [conversation(handled_by="bot", agent_id="")]
    raise ValueError(f"the message read model has no mapping for {event_type}")


def _json(attachments: list) -> str:
    keys = ("kind", "key", "content_type", "size_bytes")
    # The platform's URL (InboundMessageRecorded v2) only where there is one.
    return json.dumps(
        [{**{k: a[k] for k in keys}, **({"url": a["url"]} if a.get("url") else {})} for a in attachments], separators=(",", ":")
    )
