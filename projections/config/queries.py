"""The read queries the config gRPC service runs. Every query is scoped to what
one tenant may see: the global scope, one environment, and that tenant's own
scope — rows are matched on tenant_id too, so another tenant's values can never
be selected, whatever the request says."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from hubs.config.aggregate import PLATFORM_TENANT

# $1 tenant id, $2 environment ('' for none: no environment is named ''), $3 the platform tenant.
_VISIBLE = """(
    (tenant_id = $3 AND scope_kind = 'global' AND scope_id = '')
    OR (tenant_id = $3 AND scope_kind = 'environment' AND scope_id = $2)
    OR (tenant_id = $1 AND scope_kind = 'tenant' AND scope_id = $1))"""

VALUES_OF_KEY = f"""SELECT scope_kind, scope_id, key, value_json, version, changed_at
FROM config_values WHERE key = $4 AND {_VISIBLE}"""

# Keys are COLLATE "C" in the table, so SQL order, `>` and Python's sorted() agree.
VALUES_PAGE = f"""WITH visible AS (
    SELECT scope_kind, scope_id, key, value_json, version, changed_at FROM config_values
    WHERE value_json IS NOT NULL AND starts_with(key, $4) AND key > $5 AND {_VISIBLE}
), page AS (SELECT DISTINCT key FROM visible ORDER BY key LIMIT $6)
SELECT v.* FROM visible v JOIN page USING (key) ORDER BY v.key"""

CHANGES_OF_KEY_UNTIL = f"""SELECT scope_kind, scope_id, key, version, changed_at, value_json
FROM config_history WHERE key = $4 AND changed_at <= $5 AND {_VISIBLE}"""


async def values_of_key(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, environment: str, key: str
) -> list[asyncpg.Record]:
    """The key's current row at each scope the tenant sees (unset rows included)."""
    return await conn.fetch(VALUES_OF_KEY, tenant_id, environment, PLATFORM_TENANT, key)


async def values_page(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, environment: str, prefix: str, after_key: str, limit: int
) -> list[asyncpg.Record]:
    """Set values of the first `limit` keys after `after_key` that start with `prefix`, every visible scope's row."""
    return await conn.fetch(VALUES_PAGE, tenant_id, environment, PLATFORM_TENANT, prefix, after_key, limit)


async def changes_until(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, environment: str, key: str, at: datetime
) -> list[asyncpg.Record]:
    """Every recorded change of the key at the tenant's visible scopes made at or before `at`."""
    return await conn.fetch(CHANGES_OF_KEY_UNTIL, tenant_id, environment, PLATFORM_TENANT, key, at)
