"""The read queries the Identity gRPC service runs, always within the platform
tenant that owns every principal."""

from __future__ import annotations

import uuid

import asyncpg

PRINCIPAL = """SELECT principal_id, login, kind, sealed_password, totp_status, totp_enrollment_id, totp_sealed_secret,
    totp_last_step, failed_logins, locked_until, version
FROM principals WHERE principal_id = $1 AND tenant_id = $2"""
FAMILY = """SELECT family_id, principal_id, family_proof, generation, status, expires_at
FROM refresh_families WHERE family_id = $1 AND principal_id = $2 AND tenant_id = $3"""


async def principal(conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, principal_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(PRINCIPAL, principal_id, tenant_id)


async def family(
    conn: asyncpg.Connection | asyncpg.Pool, tenant_id: str, principal_id: uuid.UUID, family_id: uuid.UUID
) -> asyncpg.Record | None:
    return await conn.fetchrow(FAMILY, family_id, principal_id, tenant_id)
