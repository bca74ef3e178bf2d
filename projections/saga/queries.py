"""Queries on the saga read store that the saga driver runs (the dashboard has its
own). Each takes an asyncpg connection or pool whose search_path is the schema."""

from __future__ import annotations

OVERDUE = """SELECT saga_id::text, tenant_id, current_step, pending_attempt, correlation_id FROM sagas
WHERE deadline_at IS NOT NULL AND deadline_at < $1 AND state IN ('waiting', 'compensating')
ORDER BY deadline_at LIMIT $2"""


async def overdue_requests(conn, now, limit: int = 100) -> list:
    """Requests past their deadline with no answer recorded yet."""
    return await conn.fetch(OVERDUE, now, limit)


SAGA_COLUMNS = "saga_id, tenant_id, saga_type, state, current_step, correlation_id, error, version, started_at, updated_at"
SAGA = f"SELECT {SAGA_COLUMNS} FROM sagas WHERE saga_id = $1 AND tenant_id = $2"
TIMELINE = """SELECT version, event_type, step, summary, actor, occurred_at FROM saga_events
WHERE saga_id = $1 AND tenant_id = $2 ORDER BY version"""
SAGA_PAGE = f"""SELECT {SAGA_COLUMNS} FROM sagas
WHERE tenant_id = $1 AND ($2 = '' OR state = $2) AND saga_id > $3 ORDER BY saga_id LIMIT $4"""


async def saga(conn, tenant_id: str, saga_id) -> object | None:
    return await conn.fetchrow(SAGA, saga_id, tenant_id)


async def timeline(conn, tenant_id: str, saga_id) -> list:
    return await conn.fetch(TIMELINE, saga_id, tenant_id)


async def saga_page(conn, tenant_id: str, state: str, after, limit: int) -> list:
    return await conn.fetch(SAGA_PAGE, tenant_id, state, after, limit)
