"""The read models a saga trigger's lookup may consult, each through its own
query module (never another hub's tables directly). The driver builds one over
its pool and hands it to `Trigger.lookup`, so saga definitions stay pure."""

from __future__ import annotations

import asyncpg

from base.settings import Settings
from projections.wallet import queries as wallet_queries


class ReadStores:
    def __init__(self, pool: asyncpg.Pool, settings: Settings):
        self.pool, self.settings = pool, settings

    async def open_wallet_of(self, tenant_id: str) -> str | None:
        """The tenant's open wallet (the oldest, if several), or None."""
        return await wallet_queries.open_wallet_of(self.pool, self.settings.pg_schema("wallet"), tenant_id)
