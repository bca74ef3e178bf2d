"""The read queries the billing gRPC service runs. Every query is keyed by the
tenant id the caller was authorised for; no query can reach another tenant's row."""

from __future__ import annotations

import asyncpg

ENTITLEMENT = """SELECT tenant_id, entitlement_id, plan, message_quota, period_start, period_end, features, status,
    cancel_reason, reported_used, version, updated_at
FROM entitlements WHERE tenant_id = $1"""


async def entitlement(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(ENTITLEMENT, tenant_id)
