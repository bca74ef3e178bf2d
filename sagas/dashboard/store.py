"""Reads of the saga hub's read store (`<prefix>saga`: sagas, saga_events) and of
the Message hub's routing columns for the dashboard. Read only: it never writes."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from base.settings import Settings
from projections.message import queries as message_queries
from sagas.dashboard.rules import STATES, SagaFilter, StatsWindow, TypeStats, is_uuid, type_stats

SAGA_COLUMNS = (
    "saga_id::text AS saga_id, tenant_id, saga_type, state, current_step, correlation_id, started_at, updated_at, version, "
    "error, trace_id"
)


class SagaStore:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, message_pool: asyncpg.Pool | None = None):
        """`pool`: the saga read store's; `message_pool`: the Message read store's when
        it lives in another database (POSEIDON_PG_DSN_MESSAGE), else `pool`."""
        self.pool = pool
        self.message_pool = message_pool or pool
        self.saga_schema = f'"{settings.pg_schema("saga")}"'
        self.message_schema = settings.pg_schema("message")

    async def list(self, f: SagaFilter) -> tuple[list[asyncpg.Record], int]:
        where, args = f.where()
        limit, offset = f.limit_offset()
        n = len(args)
        rows = await self.pool.fetch(
            f"SELECT {SAGA_COLUMNS} FROM {self.saga_schema}.sagas {where} "
            f"ORDER BY updated_at DESC, saga_id LIMIT ${n + 1} OFFSET ${n + 2}",
            *args,
            limit,
            offset,
        )
        total = await self.pool.fetchval(f"SELECT count(*) FROM {self.saga_schema}.sagas {where}", *args)
        return rows, total

    async def counts(self, f: SagaFilter | None = None) -> dict[str, int]:
        """Sagas per state under the filter's other criteria (the state filter itself ignored)."""
        where, args = (f or SagaFilter()).where(with_state=False)
        rows = await self.pool.fetch(f"SELECT state, count(*) AS n FROM {self.saga_schema}.sagas {where} GROUP BY state", *args)
        counts = dict.fromkeys(STATES, 0)
        counts.update({r["state"]: r["n"] for r in rows})
        return counts

    async def stats(self, window: StatsWindow) -> list[TypeStats]:
        """Per saga type over the window: counts per state, durations of the finished
        (percentiles computed by PostgreSQL), the most frequent errors (masked)."""
        counts, durations, failures = [
            await self.pool.fetch(sql, *args) for sql, args in window.queries(f"{self.saga_schema}.sagas")
        ]
        return type_stats(counts, durations, failures)

    async def ids(self, f: SagaFilter, limit: int) -> list[asyncpg.Record]:
        where, args = f.where()
        return await self.pool.fetch(
            f"SELECT saga_id::text AS saga_id, tenant_id, current_step, state FROM {self.saga_schema}.sagas {where} "
            f"ORDER BY started_at LIMIT ${len(args) + 1}",
            *args,
            limit,
        )

    async def saga(self, saga_id: str) -> asyncpg.Record | None:
        if not is_uuid(saga_id):
            return None  # saga ids are UUIDs: anything else names no saga
        return await self.pool.fetchrow(
            f"SELECT {SAGA_COLUMNS} FROM {self.saga_schema}.sagas WHERE saga_id = $1::text::uuid", saga_id
        )

    async def timeline(self, saga_id: str) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            f"SELECT version, event_type, step, summary, occurred_at, actor FROM {self.saga_schema}.saga_events "
            "WHERE saga_id = $1::text::uuid ORDER BY version",
            saga_id,
        )

    async def routing(self, tenant_id: str, correlation_id: str) -> asyncpg.Record | None:
        """The routing decision of the inbound message that shares the saga's
        correlation id, through the Message read model's own query."""
        if not correlation_id:
            return None
        return await message_queries.routing_by_correlation(self.message_pool, self.message_schema, tenant_id, correlation_id)

    async def now(self) -> datetime:
        return await self.pool.fetchval("SELECT now()")

    async def changed_since(self, since: datetime, limit: int = 500) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            f"SELECT saga_id::text AS saga_id, state, version, updated_at, current_step FROM {self.saga_schema}.sagas "
            "WHERE updated_at > $1 ORDER BY updated_at LIMIT $2",
            since,
            limit,
        )
