"""Crash safety and replay on the real stack: SIGKILLed processor and projector
neither lose nor double anything; a rebuilt read store equals the live one."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import uuid

import pytest

from hubs.wallet.commands import CaptureFunds, CreditFunds, DebitFunds, OpenWallet, ReleaseFunds, ReserveFunds
from infra.command_client import CommandClient, new_meta
from poseidon import bootstrap
from tests.harness import channel, eventually, fetch, read_topic

pytestmark = pytest.mark.integration

TENANT = "tenant-crash"
START = 1_000_000


async def projected_version(settings, wallet_id: str) -> int:
    rows = await fetch(
        settings, settings.pg_schema("wallet"), "SELECT version FROM wallets WHERE wallet_id = $1", uuid.UUID(wallet_id)
    )
    return rows[0]["version"] if rows else 0


async def test_killing_the_processor_and_projector_mid_stream_of_debits_leaves_the_ledger_exact(platform):
    settings = platform.settings
    platform.start("processor")
    platform.start("projector")
    rng = random.Random(7)
    wallet_id = str(uuid.uuid4())
    async with CommandClient(settings, bootstrap.codec(settings), [bootstrap.hub("wallet")]) as client:
        await client.send(OpenWallet(new_meta(wallet_id, TENANT), currency="EUR"))
        await client.send(CreditFunds(new_meta(wallet_id, TENANT), amount=START))
        debits = [DebitFunds(new_meta(wallet_id, TENANT), amount=rng.randint(1, 2500)) for _ in range(1000)]
        futures = [await client.submit(d) for d in debits]

        # Let part of the stream be decided, then pull the plug mid-transaction.
        await eventually(lambda: _resolved_at_least(futures, 100), timeout=60)
        platform.kill("wallet-processor")
        resolved_before = sum(f.done() for f in futures)
        assert resolved_before < len(futures), "the kill must land mid-stream"
        platform.start("processor")
        await eventually(lambda: _resolved_at_least(futures, 600), timeout=240)
        platform.kill("wallet-projector")
        platform.start("projector")
        results = await asyncio.wait_for(asyncio.gather(*futures), timeout=240)

    accepted = [d for d, r in zip(debits, results, strict=True) if r.accepted]
    refused = [r for r in results if not r.accepted]
    assert accepted and refused, "the amounts are chosen so that the wallet runs dry part-way"
    assert {r.rejection for r in refused} == {"InsufficientFunds"}
    expected_balance = START - sum(d.amount for d in accepted)
    final_version = 2 + len(accepted)

    # The log: every accepted debit exactly once, versions contiguous, hash chain unbroken across the kill.
    records = [r for r in await read_topic(settings, settings.topic("wallet.events"), timeout=30) if r.key == wallet_id.encode()]
    codec = bootstrap.codec(settings)
    events = [codec.decode(r.value).record for r in records]
    assert [e["envelope"]["aggregate_version"] for e in events] == list(range(1, final_version + 1))
    debit_entries = [e["entry_id"] for e in events[2:]]
    assert sorted(debit_entries) == sorted(d.meta.command_id for d in accepted)
    assert events[-1]["balance_after"] == expected_balance
    for previous, current in zip(records, events[1:], strict=False):
        assert current["envelope"]["previous_hash"] == hashlib.sha256(previous.value).hexdigest()

    # The read store: caught up, sum of movements equals balance, no entry twice, none missing.
    await eventually(lambda: _at_version(settings, wallet_id, final_version), timeout=180)
    schema = settings.pg_schema("wallet")
    [wallet] = await fetch(settings, schema, "SELECT balance, version FROM wallets WHERE wallet_id = $1", uuid.UUID(wallet_id))
    [ledger] = await fetch(
        settings,
        schema,
        "SELECT sum(balance_delta) AS total, count(*) AS n, count(DISTINCT entry_id) AS distinct_entries"
        " FROM ledger WHERE wallet_id = $1",
        uuid.UUID(wallet_id),
    )
    assert wallet["balance"] == expected_balance
    assert ledger["total"] == expected_balance
    assert ledger["n"] == ledger["distinct_entries"] == 1 + len(accepted)


async def _resolved_at_least(futures, n: int) -> bool:
    return sum(f.done() for f in futures) >= n


async def _at_version(settings, wallet_id: str, version: int) -> bool:
    return await projected_version(settings, wallet_id) >= version


async def test_a_replay_rebuilds_the_read_store_identical_to_the_live_one_and_swaps_it_in(platform):
    settings = platform.settings
    for role in ("processor", "projector", "grpc"):
        platform.start(role)
    wallets = [str(uuid.uuid4()) for _ in range(3)]
    async with CommandClient(settings, bootstrap.codec(settings), [bootstrap.hub("wallet")]) as client:
        for i, w in enumerate(wallets):
            await client.send(OpenWallet(new_meta(w, f"tenant-{i % 2}"), currency="EUR"))
            t = f"tenant-{i % 2}"
            for n in range(5):
                await client.send(CreditFunds(new_meta(w, t), amount=100 + n))
            await client.send(ReserveFunds(new_meta(w, t), reservation_id="r1", amount=50))
            await client.send(ReserveFunds(new_meta(w, t), reservation_id="r2", amount=30))
            await client.send(CaptureFunds(new_meta(w, t), reservation_id="r1"))
            await client.send(ReleaseFunds(new_meta(w, t), reservation_id="r2"))
            await client.send(DebitFunds(new_meta(w, t), amount=7))
        for w in wallets:
            await eventually(lambda w=w: _at_version(settings, w, 11), timeout=60)

        schema = settings.pg_schema("wallet")
        before = await _dump(settings, schema)
        done = platform.run_cli("replay", "wallet", "--no-progress", "--confirm", "--json")
        assert done.returncode == 0, done.stderr[-2000:]
        report = json.loads(done.stdout)
        assert report["swapped"] is True
        assert report["differences"] == {"wallets": 0, "ledger": 0}
        assert report["events"] == 3 * 11
        assert await _dump(settings, schema) == before

        # The live projector and the gRPC server carry on against the swapped-in store.
        await client.send(CreditFunds(new_meta(wallets[0], "tenant-0"), amount=1))
        await eventually(lambda: _at_version(settings, wallets[0], 12), timeout=60)

        from schemas.protos import wallet_pb2, wallet_pb2_grpc

        async with channel(settings, "wallet") as ch:
            reply = await wallet_pb2_grpc.WalletQueryStub(ch).GetBalance(
                wallet_pb2.GetBalanceRequest(tenant_id="tenant-0", wallet_id=wallets[0])
            )
        assert reply.version == 12 and reply.balance == 100 + 101 + 102 + 103 + 104 - 50 - 7 + 1


async def _dump(settings, schema: str) -> dict:
    wallets = await fetch(settings, schema, "SELECT * FROM wallets ORDER BY wallet_id")
    ledger = await fetch(settings, schema, "SELECT * FROM ledger ORDER BY wallet_id, version")
    return {"wallets": [dict(r) for r in wallets], "ledger": [dict(r) for r in ledger]}
