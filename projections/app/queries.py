"""The read queries the App gRPC service runs. Every query names the asking
tenant: a subscription is read only with its own tenant id, and an app only if
that tenant publishes it or it is public — another tenant's private app is
indistinguishable from a missing one."""

from __future__ import annotations

import uuid

import asyncpg

_APP_COLUMNS = "app_id, tenant_id, name, kind, channels, visibility, version, registered_at, updated_at"
_VISIBLE_TO = "(tenant_id = $1 OR visibility = 'public')"
APP = f"SELECT {_APP_COLUMNS} FROM apps WHERE app_id = $2 AND {_VISIBLE_TO}"
APPS_PAGE = f"SELECT {_APP_COLUMNS} FROM apps WHERE {_VISIBLE_TO} AND ($2::uuid IS NULL OR app_id > $2) ORDER BY app_id LIMIT $3"

_SUBSCRIPTION_COLUMNS = (
    "tenant_id, app_id, subscription_id, active, channels, page_ids, business_hours::text AS business_hours, "
    "version, subscribed_at, updated_at, bot_webhook_id"
)
SUBSCRIPTION = f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE tenant_id = $1 AND app_id = $2"
SUBSCRIPTIONS_PAGE = f"""SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions
WHERE tenant_id = $1 AND ($2::uuid IS NULL OR app_id > $2) AND (active OR NOT $3) ORDER BY app_id LIMIT $4"""
# The routing check in one round trip: the subscription and, if the tenant may use
# it, the app (the same visibility rule as APP, on the subscription's tenant).
ROUTING = """SELECT s.active, s.channels, s.page_ids, s.business_hours::text AS business_hours,
    a.tenant_id AS app_tenant_id, a.visibility AS app_visibility, a.channels AS app_channels
FROM subscriptions s
LEFT JOIN apps a ON a.app_id = s.app_id AND (a.tenant_id = s.tenant_id OR a.visibility = 'public')
WHERE s.tenant_id = $1 AND s.app_id = $2"""

# The Botpress spoke's and ingress's view of a tenant's bots: sealed, opened only there.
BOT_CONNECTION = """SELECT app_id, bot_webhook_id, bot_sealed_secret FROM subscriptions
WHERE tenant_id = $1 AND active AND bot_webhook_id <> '' AND ($2::uuid IS NULL OR app_id = $2)
ORDER BY subscribed_at, app_id LIMIT 1"""
BOT_SECRETS = """SELECT app_id, bot_webhook_id, bot_sealed_secret FROM subscriptions
WHERE tenant_id = $1 AND active AND bot_webhook_id <> ''"""


async def bot_connection(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, app_id: uuid.UUID | None
) -> asyncpg.Record | None:
    """The bot connection of the tenant's active subscription to `app_id` (None: its
    oldest active subscription that has one). Secret sealed."""
    return await conn.fetchrow(BOT_CONNECTION, tenant_id, app_id)


async def bot_secrets(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str) -> list[asyncpg.Record]:
    """The bot connections of the tenant's active subscriptions (sealed secrets): what its bots' pushes may carry."""
    return await conn.fetch(BOT_SECRETS, tenant_id)


async def app(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, app_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(APP, tenant_id, app_id)


async def apps_page(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, after: uuid.UUID | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(APPS_PAGE, tenant_id, after, limit)


async def subscription(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, app_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(SUBSCRIPTION, tenant_id, app_id)


async def subscriptions_page(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, after: uuid.UUID | None, active_only: bool, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(SUBSCRIPTIONS_PAGE, tenant_id, after, active_only, limit)


async def routing(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, app_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(ROUTING, tenant_id, app_id)
