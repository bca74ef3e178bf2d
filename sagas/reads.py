"""The read models a saga trigger's lookup may consult, each through its own
query module (never another hub's tables directly). The driver builds one over
its stores' pools and hands it to `Trigger.lookup`, so saga definitions stay pure."""

from __future__ import annotations

from base.settings import Settings
from infra.stores import Stores
from projections.wallet import queries as wallet_queries


class ReadStores:
    def __init__(self, stores: Stores, settings: Settings):
        self.stores, self.settings = stores, settings

    async def open_wallet_of(self, tenant_id: str) -> str | None:
        """The tenant's open wallet (the oldest, if several), or None."""
        pool = await self.stores.pool("wallet")
        return await wallet_queries.open_wallet_of(pool, self.settings.pg_schema("wallet"), tenant_id)
