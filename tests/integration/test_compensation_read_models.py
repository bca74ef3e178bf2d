"""The read-store side of the onboarding compensations against the real
PostgreSQL: WalletClosed sets the wallet's closed_at, TenantArchived the tenant's
archived_at, through the projections' own migrations and mappings."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from infra.migrations import migrate
from projections.tenant import PROJECTION as TENANT
from projections.wallet import PROJECTION as WALLET

pytestmark = pytest.mark.integration


def envelope(aggregate_id: str, version: int, tenant: str = "acme") -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "aggregate_id": aggregate_id,
        "aggregate_version": version,
        "tenant_id": tenant,
        "correlation_id": "c",
        "occurred_at": datetime.now(UTC),
        "actor": "saga:tenant_onboarding",
    }


async def project(conn, spec, events: list[tuple[str, dict]]) -> None:
    for name, record in events:
        for st in sorted(spec.apply(name, record), key=lambda s: s.phase):
            await conn.execute(st.sql, *st.args)


async def test_closing_a_wallet_and_archiving_a_tenant_show_in_their_read_stores(namespace):
    conn = await asyncpg.connect(namespace.pg_dsn)
    try:
        for spec in (WALLET, TENANT):
            schema = namespace.pg_schema(spec.name)
            await migrate(conn, schema, spec.migrations)
        wallet_id = str(uuid.uuid4())
        await conn.execute(f'SET search_path TO "{namespace.pg_schema("wallet")}"')
        await project(conn, WALLET, [("poseidon.wallet.WalletOpened", {"envelope": envelope(wallet_id, 1), "currency": "EUR"})])
        closed = ("poseidon.wallet.WalletClosed", {"envelope": envelope(wallet_id, 2), "reason": "compensated"})
        await project(conn, WALLET, [closed, closed])
        row = await conn.fetchrow("SELECT version, closed_at FROM wallets WHERE wallet_id = $1", uuid.UUID(wallet_id))
        assert row["version"] == 2 and row["closed_at"] is not None

        await conn.execute(f'SET search_path TO "{namespace.pg_schema("tenant")}"')
        await project(conn, TENANT, [("poseidon.tenant.TenantCreated", {"envelope": envelope("acme", 1), "name": "Acme"})])
        await project(
            conn, TENANT, [("poseidon.tenant.TenantArchived", {"envelope": envelope("acme", 3), "reason": "compensated"})]
        )
        row = await conn.fetchrow("SELECT version, archived_at FROM tenants WHERE tenant_id = 'acme'")
        assert row["version"] == 3 and row["archived_at"] is not None
    finally:
        await conn.close()
