"""The tenant's delivery policy for a message whose earlier send has an unknown
outcome (the spoke died, or the connection broke, between the Send API call and
its answer): `at_most_once` reports "outcome unknown" and never sends it again;
`at_least_once` sends it again (the person may get it twice). The tenant sets it
in the Config hub (`facebook.delivery_policy` = "at_least_once"); the default is
the platform's setting. Values are read from the Config read store and kept for
a short while: a change takes effect within `TTL_S`."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import structlog

from base.settings import Settings
from hubs.config.resolve import ScopedValue, effective
from infra.stores import lazy_pool
from projections.config.queries import values_of_key

log = structlog.get_logger(__name__)

KEY = "facebook.delivery_policy"
AT_MOST_ONCE, AT_LEAST_ONCE = "at_most_once", "at_least_once"
POLICIES = (AT_MOST_ONCE, AT_LEAST_ONCE)
TTL_S = 30.0
SCOPED_FIELDS = ("scope_kind", "scope_id", "key", "value_json", "version", "changed_at")


class DeliveryPolicies:
    def __init__(self, pool: asyncpg.Pool | None, default: str):
        self.pool, self.default = pool, default
        self._known: dict[str, tuple[float, str]] = {}

    async def of(self, tenant_id: str) -> str:
        known = self._known.get(tenant_id)
        if known is not None and known[0] > time.monotonic():
            return known[1]
        policy = await self._read(tenant_id)
        self._known[tenant_id] = (time.monotonic() + TTL_S, policy)
        return policy

    async def _read(self, tenant_id: str) -> str:
        if self.pool is None:
            return self.default
        try:
            rows = await values_of_key(self.pool, tenant_id, "", KEY)
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            return self.default  # no Config read store here: the platform's default
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            # The store is away: the platform's default for now, asked again soon.
            log.warning("delivery policy unreadable; using the default", tenant_id=tenant_id, error=type(exc).__name__)
            return self.default
        value = effective(ScopedValue(**{f: r[f] for f in SCOPED_FIELDS}) for r in rows)
        chosen = json.loads(value.value_json) if value is not None and value.value_json is not None else self.default
        if chosen not in POLICIES:
            log.warning("unknown delivery policy; using the default", tenant_id=tenant_id, default=self.default)
            return self.default
        return chosen


@asynccontextmanager
async def opened_policies(settings: Settings) -> AsyncIterator[DeliveryPolicies]:
    """For the spoke's lifetime: a small pool on the Config read store (wherever its
    database is), connecting on first use, so the spoke starts while PostgreSQL is away."""
    async with lazy_pool(settings, "config") as pool:
        yield DeliveryPolicies(pool, settings.facebook_delivery_policy)
