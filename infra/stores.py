"""The PostgreSQL pools of a process that reads more than one read store. A
read store may live in a database of its own (POSEIDON_PG_DSN_<STORE>), so a
pool is opened per database on first use; stores in one database share it.
Queries through these pools name their schema (they set no search_path)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from base.settings import Settings


async def keep_session(conn: asyncpg.Connection) -> None:
    """A read pool's connection reset that costs no round trip. Before any reset,
    asyncpg itself rolls back a transaction a failed caller left open and drops
    listeners; its default reset then runs `RESET ALL`, `UNLISTEN *`, `CLOSE ALL`
    and an advisory unlock on every release — one more round trip per query,
    measured as a tenth of the gRPC server's CPU at 1,000 calls/s. Queries on
    these pools leave nothing for it to undo (no SET, LISTEN, cursor or advisory
    lock left held; the session settings are the pool's `server_settings`)."""


class Stores:
    def __init__(self, settings: Settings, **pool_options: Any):
        self.settings = settings
        self.pool_options = {"min_size": 1, "max_size": 4, "reset": keep_session, **pool_options}
        self._pools: dict[str, asyncpg.Pool] = {}
        self._opening = asyncio.Lock()

    async def pool(self, store: str) -> asyncpg.Pool:
        dsn = self.settings.dsn_for(store)
        if dsn not in self._pools:
            async with self._opening:  # concurrent first callers share one pool
                if dsn not in self._pools:
                    self._pools[dsn] = await asyncpg.create_pool(dsn, **self.pool_options)
        return self._pools[dsn]

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.close()


@asynccontextmanager
async def lazy_pool(settings: Settings, store: str, max_size: int = 2) -> AsyncIterator[asyncpg.Pool]:
    """A small pool on `store`'s read store (wherever its database is) that connects on
    first use, so whoever holds it starts while PostgreSQL is away; closed on exit."""
    pool = await asyncpg.create_pool(
        settings.dsn_for(store),
        min_size=0,
        max_size=max_size,
        server_settings={"search_path": settings.pg_schema(store)},
        reset=keep_session,
    )
    try:
        yield pool
    finally:
        await pool.close()
