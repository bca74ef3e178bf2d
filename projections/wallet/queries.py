"""The read queries the wallet gRPC service runs. Every query is scoped by
tenant: another tenant's wallet is indistinguishable from a missing one."""

from __future__ import annotations

import uuid

import asyncpg

BALANCE = """SELECT wallet_id, tenant_id, currency, balance, reserved, version, updated_at
FROM wallets WHERE wallet_id = $1 AND tenant_id = $2"""
LEDGER_PAGE = """SELECT version, kind, amount, balance_delta, reserved_delta, entry_id, reservation_id, reference,
    event_id, correlation_id, occurred_at
FROM ledger WHERE wallet_id = $1 AND tenant_id = $2 AND version > $3 ORDER BY version LIMIT $4"""


async def balance(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, wallet_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(BALANCE, wallet_id, tenant_id)


async def ledger_page(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, wallet_id: uuid.UUID, after_version: int, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(LEDGER_PAGE, wallet_id, tenant_id, after_version, limit)


async def open_wallet_of(conn: asyncpg.Connection | asyncpg.Pool, schema: str, tenant_id: str) -> str | None:
    """The tenant's open wallet (the oldest, if several), for callers outside the
    wallet gRPC server (another search_path: the schema is named)."""
    return await conn.fetchval(
        f'SELECT wallet_id::text FROM "{schema}".wallets WHERE tenant_id = $1 AND closed_at IS NULL ORDER BY opened_at LIMIT 1',
        tenant_id,
    )
