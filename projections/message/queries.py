"""The read queries the message gRPC service runs. Every query is scoped by
tenant: another tenant's conversation or message is indistinguishable from a
missing one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

_CONVERSATION_COLUMNS = """conversation_id, tenant_id, channel, channel_account_id, contact_id, status, message_count,
    started_at, last_message_at, last_activity_at, version, updated_at, handled_by, agent_id"""
_MESSAGE_COLUMNS = """message_id, conversation_id, sequence, direction, text, attachments::text AS attachments, in_reply_to,
    status, status_reason, received_at, created_at, updated_at,
    routing_rule, routing_reason, routed_app_id, routed_spoke, routing_facts::text AS routing_facts"""

CONVERSATION = f"SELECT {_CONVERSATION_COLUMNS} FROM conversations WHERE tenant_id = $1 AND conversation_id = $2"
# Keyset pagination, newest activity first; the cursor is the last row's (last_activity_at, conversation_id).
# The filters are fixed clauses with their own parameters (an empty one matches everything): no SQL is built from input.
CONVERSATIONS_PAGE = f"""SELECT {_CONVERSATION_COLUMNS} FROM conversations c
WHERE tenant_id = $1 AND (last_activity_at, conversation_id) < ($2, $3)
  AND ($5 = '' OR channel = $5) AND ($6 = '' OR contact_id = $6)
  AND ($7 = '' OR EXISTS (SELECT 1 FROM messages m WHERE m.tenant_id = c.tenant_id
                          AND m.conversation_id = c.conversation_id AND m.text ILIKE $7 ESCAPE '\\'))
  AND ($8 = '' OR handled_by = $8) AND ($9 = '' OR agent_id = $9)
ORDER BY last_activity_at DESC, conversation_id DESC LIMIT $4"""
MESSAGES_PAGE = f"""SELECT {_MESSAGE_COLUMNS} FROM messages
WHERE tenant_id = $1 AND conversation_id = $2 AND sequence > $3 ORDER BY sequence LIMIT $4"""
MESSAGE = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1 AND conversation_id = $2 AND message_id = $3"
HISTORY = """SELECT status, previous_status, reason, version, event_id, occurred_at FROM message_status_history
WHERE tenant_id = $1 AND conversation_id = $2 AND message_id = $3 ORDER BY version"""

FIRST_CURSOR = (datetime.max.replace(tzinfo=UTC), uuid.UUID(int=(1 << 128) - 1))
"""Sorts after every row: the cursor of the first page."""


async def conversation(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, conversation_id: uuid.UUID):
    return await conn.fetchrow(CONVERSATION, tenant_id, conversation_id)


async def conversations_page(
    conn: asyncpg.Connection | asyncpg.Pool,
    tenant_id: str,
    channel: str | None,
    before: tuple[datetime, uuid.UUID],
    limit: int,
    contact_id: str = "",
    text: str = "",
    handled_by: str = "",
    agent_id: str = "",
) -> list[asyncpg.Record]:
    """A page of the tenant's conversations, optionally of one channel, one contact,
    with a message containing `text` (any case; LIKE's wildcards in it are literal),
    handled by the bot / awaiting an agent / held by an agent, or held by one agent."""
    pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" if text else ""
    return await conn.fetch(
        CONVERSATIONS_PAGE, tenant_id, before[0], before[1], limit, channel or "", contact_id, pattern, handled_by, agent_id
    )


async def messages_page(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, conversation_id: uuid.UUID, after_sequence: int, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(MESSAGES_PAGE, tenant_id, conversation_id, after_sequence, limit)


async def message(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, conversation_id: uuid.UUID, message_id: str):
    return await conn.fetchrow(MESSAGE, tenant_id, conversation_id, message_id)


async def history(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, conversation_id: uuid.UUID, message_id: str
) -> list[asyncpg.Record]:
    return await conn.fetch(HISTORY, tenant_id, conversation_id, message_id)


async def routing_by_correlation(
    conn: asyncpg.Connection | asyncpg.Pool, schema: str, tenant_id: str, correlation_id: str
) -> asyncpg.Record | None:
    """The routing decision of the tenant's inbound message whose status history
    carries `correlation_id` (what a saga started for it shares), or None. Names its
    schema: callers outside the Message hub hold pools of other stores."""
    try:
        return await conn.fetchrow(
            "SELECT m.message_id, m.routed_app_id, m.routed_spoke, m.routing_rule, m.routing_reason, "
            f'm.routing_facts::text AS facts FROM "{schema}".messages m JOIN "{schema}".message_status_history h '
            "ON h.tenant_id = m.tenant_id AND h.conversation_id = m.conversation_id AND h.message_id = m.message_id "
            "WHERE m.tenant_id = $1 AND h.correlation_id = $2 AND m.direction = 'inbound' LIMIT 1",
            tenant_id,
            correlation_id,
        )
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return None
