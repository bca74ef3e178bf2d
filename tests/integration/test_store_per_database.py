"""A read store in a database of its own (POSEIDON_PG_DSN_WALLET): the wallet
projector fills it there, the gRPC server answers from it, and its role checks
still reach the Tenant read store in the shared database."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from hubs.wallet.commands import CreditFunds, OpenWallet
from infra.command_client import CommandClient, new_meta
from poseidon import bootstrap
from schemas.protos import wallet_pb2, wallet_pb2_grpc
from tests.harness import channel, eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def wallet_database(platform):
    name = f"{platform.settings.schema_prefix}wallet_db".lower()
    admin = await asyncpg.connect(platform.settings.pg_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = platform.settings.pg_dsn.rsplit("/", 1)[0] + f"/{name}"
    yield dsn
    platform.stop_all()
    admin = await asyncpg.connect(platform.settings.pg_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_a_read_store_in_its_own_database_is_filled_and_queried_there(platform, wallet_database):
    platform.settings = platform.settings.with_(pg_dsns={"wallet": wallet_database})
    settings = platform.settings
    for role in ("processor", "projector", "grpc"):
        platform.start(role)
    wallet_id, tenant = str(uuid.uuid4()), "tenant-own-db"
    async with CommandClient(settings, bootstrap.codec(settings), [bootstrap.hub("wallet")]) as client:
        await client.send(OpenWallet(new_meta(wallet_id, tenant), currency="EUR"))
        await client.send(CreditFunds(new_meta(wallet_id, tenant), amount=42))

    schema = settings.pg_schema("wallet")

    async def balance_in(dsn: str) -> int | None:
        conn = await asyncpg.connect(dsn)
        try:
            if not await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".wallets'):
                return None
            return await conn.fetchval(f'SELECT balance FROM "{schema}".wallets WHERE wallet_id = $1', uuid.UUID(wallet_id))
        finally:
            await conn.close()

    await eventually(lambda: _equals(balance_in(wallet_database), 42), timeout=60)
    assert await balance_in(settings.pg_dsn) is None  # nothing of the wallet store in the shared database

    async with channel(settings, "wallet") as ch:
        reply = await wallet_pb2_grpc.WalletQueryStub(ch).GetBalance(
            wallet_pb2.GetBalanceRequest(tenant_id=tenant, wallet_id=wallet_id)
        )
    assert reply.balance == 42


async def _equals(awaitable, expected) -> bool:
    return await awaitable == expected
