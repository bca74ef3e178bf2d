"""The read queries the tenant gRPC service runs. Every tenant-scoped query is
keyed by tenant id; the caller-scoped ones ("my tenants", "my invitations") by
the caller's principal id and nothing else."""

from __future__ import annotations

import asyncpg

from infra.stores import Stores

TENANT = """SELECT t.tenant_id, t.name, t.version, t.created_at, t.updated_at,
    (SELECT count(*) FROM memberships m WHERE m.tenant_id = t.tenant_id) AS member_count
FROM tenants t WHERE t.tenant_id = $1"""
MEMBERS_PAGE = """SELECT principal_id, role, joined_at FROM memberships
WHERE tenant_id = $1 AND principal_id > $2 ORDER BY principal_id LIMIT $3"""
INVITATIONS_PAGE = """SELECT i.principal_id, t.name, i.role, i.invited_by, i.invited_at FROM invitations i
JOIN tenants t ON t.tenant_id = i.tenant_id
WHERE i.tenant_id = $1 AND i.principal_id > $2 ORDER BY i.principal_id LIMIT $3"""
TENANTS_OF = """SELECT t.tenant_id, t.name, m.role, m.joined_at FROM memberships m
JOIN tenants t ON t.tenant_id = m.tenant_id
WHERE m.principal_id = $1 AND m.tenant_id > $2 ORDER BY m.tenant_id LIMIT $3"""
INVITATIONS_OF = """SELECT i.tenant_id, t.name, i.role, i.invited_by, i.invited_at FROM invitations i
JOIN tenants t ON t.tenant_id = i.tenant_id
WHERE i.principal_id = $1 AND i.tenant_id > $2 ORDER BY i.tenant_id LIMIT $3"""

# The channel registry: resolved by (channel, account) for platform principals
# only (the router); listed per tenant for its members.
CHANNEL_ACCOUNT = """SELECT channel, account_id, tenant_id, connected, version, connected_at, updated_at,
    proof, needs_reauthorization, reauthorization_reason
FROM channel_accounts WHERE channel = $1 AND account_id = $2"""
CHANNELS_PAGE = """SELECT channel, account_id, tenant_id, connected, version, connected_at, updated_at,
    proof, needs_reauthorization, reauthorization_reason
FROM channel_accounts WHERE tenant_id = $1 AND (channel, account_id) > ($2, $3)
ORDER BY channel, account_id LIMIT $4"""
CHANNEL_VERSION = "SELECT version FROM channel_accounts WHERE channel = $1 AND account_id = $2 AND tenant_id = $3"

Conn = asyncpg.Connection | asyncpg.Pool


async def member_role(conn: Conn, schema: str, tenant_id: str, principal_id: str) -> str | None:
    """The principal's role in the tenant, read live from the tenant read store in
    `schema` (callers outside the tenant's gRPC server have another search_path).
    No read store yet means nobody is a member of anything."""
    try:
        return await conn.fetchval(
            f'SELECT role FROM "{schema}".memberships WHERE tenant_id = $1 AND principal_id = $2', tenant_id, principal_id
        )
    except asyncpg.UndefinedTableError:
        return None


def role_lookup(stores: Stores, schema: str):
    """`member_role` in the Tenant read store (wherever its database is): what
    `infra.security.Authorizer` is given."""

    async def role_of(tenant_id: str, principal_id: str) -> str | None:
        return await member_role(await stores.pool("tenant"), schema, tenant_id, principal_id)

    return role_of


async def tenant(conn: Conn, tenant_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(TENANT, tenant_id)


async def members_page(conn: Conn, tenant_id: str, after_principal: str, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(MEMBERS_PAGE, tenant_id, after_principal, limit)


async def invitations_page(conn: Conn, tenant_id: str, after_principal: str, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(INVITATIONS_PAGE, tenant_id, after_principal, limit)


async def tenants_of(conn: Conn, principal_id: str, after_tenant: str, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(TENANTS_OF, principal_id, after_tenant, limit)


async def invitations_of(conn: Conn, principal_id: str, after_tenant: str, limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(INVITATIONS_OF, principal_id, after_tenant, limit)


async def channel_account(conn: Conn, channel: str, account_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(CHANNEL_ACCOUNT, channel, account_id)


async def channels_page(conn: Conn, tenant_id: str, after: tuple[str, str], limit: int) -> list[asyncpg.Record]:
    return await conn.fetch(CHANNELS_PAGE, tenant_id, after[0], after[1], limit)


async def channel_version(conn: Conn, tenant_id: str, channel: str, account_id: str) -> int:
    return await conn.fetchval(CHANNEL_VERSION, channel, account_id, tenant_id) or 0


CHANNEL_CREDENTIALS = """SELECT tenant_id, connected, sealed_token, needs_reauthorization
FROM channel_accounts WHERE channel = $1 AND account_id = $2"""


async def channel_credentials(conn: Conn, channel: str, account_id: str) -> asyncpg.Record | None:
    """The owner of an account and its sealed token (for the spoke that sends with it; never shown)."""
    return await conn.fetchrow(CHANNEL_CREDENTIALS, channel, account_id)


async def channels_needing_reauthorization(conn: Conn, schema: str, limit: int) -> list[asyncpg.Record]:
    """Connected accounts whose stored token was refused, newest first, for the operators'
    dashboard (which reaches this store with another search_path): never the token."""
    return await conn.fetch(
        f"""SELECT tenant_id, channel, account_id, reauthorization_reason, updated_at FROM "{schema}".channel_accounts
        WHERE needs_reauthorization AND connected ORDER BY updated_at DESC LIMIT $1""",
        limit,
    )


ODOO_CONNECTION = """SELECT tenant_id, url, database, login, sealed_api_key, protocol, version, connected_at, updated_at
FROM odoo_connections WHERE tenant_id = $1"""


async def odoo_connection(conn: Conn, tenant_id: str) -> asyncpg.Record | None:
    """The tenant's own Odoo connection, its API key sealed (the Odoo spoke opens it; never shown)."""
    return await conn.fetchrow(ODOO_CONNECTION, tenant_id)
