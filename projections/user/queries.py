"""The read queries the user gRPC service runs. Every query is scoped by tenant
(another tenant's profile is indistinguishable from a missing one), and the
masked ones read `profile_directory` only, never a clear email or phone."""

from __future__ import annotations

import uuid

import asyncpg

_FULL = """SELECT tenant_id, principal_id, display_name, email, phone, locale, timezone, version, created_at, updated_at
FROM profiles"""
_MASKED = """SELECT tenant_id, principal_id, display_name, email_masked AS email, phone_masked AS phone, locale, timezone,
    version, created_at, updated_at
FROM profile_directory"""
_ONE = " WHERE tenant_id = $1 AND principal_id = $2"
# Keyset pagination by principal id; $2 NULL starts at the first.
_PAGE = " WHERE tenant_id = $1 AND ($2::uuid IS NULL OR principal_id > $2) ORDER BY principal_id LIMIT $3"

FULL_PROFILE, MASKED_PROFILE = _FULL + _ONE, _MASKED + _ONE
FULL_PAGE, MASKED_PAGE = _FULL + _PAGE, _MASKED + _PAGE
PREFERENCES = """SELECT key, value, updated_at FROM preferences
WHERE tenant_id = $1 AND profile_id = $2 AND value IS NOT NULL ORDER BY key"""
PROFILE_VERSION = "SELECT version FROM profile_directory WHERE tenant_id = $1 AND profile_id = $2"

Conn = asyncpg.Connection | asyncpg.Pool


async def profile(conn: Conn, tenant_id: str, principal_id: uuid.UUID, *, clear_pii: bool) -> asyncpg.Record | None:
    return await conn.fetchrow(FULL_PROFILE if clear_pii else MASKED_PROFILE, tenant_id, principal_id)


async def profile_page(
    conn: Conn, tenant_id: str, after: uuid.UUID | None, limit: int, *, clear_pii: bool
) -> list[asyncpg.Record]:
    return await conn.fetch(FULL_PAGE if clear_pii else MASKED_PAGE, tenant_id, after, limit)


async def profile_version(conn: Conn, tenant_id: str, profile_id: uuid.UUID) -> int | None:
    return await conn.fetchval(PROFILE_VERSION, tenant_id, profile_id)


async def preferences(conn: Conn, tenant_id: str, profile_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(PREFERENCES, tenant_id, profile_id)
