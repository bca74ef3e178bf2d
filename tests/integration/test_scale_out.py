"""Two instances of the wallet hub's processor and projector share the work
(consumer groups: each owns some partitions) and one of each is SIGKILLed
mid-stream: the other takes its partitions over, nothing is lost or decided
twice, the read store is exact, and the takeover time is reported."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest

from hubs.wallet.commands import CreditFunds, OpenWallet
from infra.command_client import CommandClient, CommandTimeout, new_meta
from poseidon import bootstrap
from tests.harness import eventually, fetch, read_topic

pytestmark = pytest.mark.integration

TENANT = "tenant-scale"
WALLETS = 8
CREDITS = 60


def owned_partitions(platform, name: str) -> int:
    """How many partitions the instance said it was assigned last (its own JSON log)."""
    owned = 0
    for line in platform.procs[name].log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "partitions assigned":
            owned = entry["partitions"]
    return owned


async def send_until_answered(client: CommandClient, command) -> object:
    """Resend with the same command id until an answer comes: the way a client
    rides out a takeover. The processor answers a resend with the first outcome."""
    while True:
        try:
            return await client.send(command, timeout=10)
        except CommandTimeout:
            continue


async def test_two_instances_share_partitions_and_one_killed_is_taken_over_without_loss_or_doubling(platform):
    settings = platform.settings
    first = platform.launch("processor-a", "processor", "wallet")
    platform.launch("processor-b", "processor", "wallet")
    platform.launch("projector-a", "projector", "wallet")
    platform.launch("projector-b", "projector", "wallet")
    wallets = [str(uuid.uuid4()) for _ in range(WALLETS)]
    async with CommandClient(settings, bootstrap.codec(settings), [bootstrap.hub("wallet")]) as client:
        for w in wallets:
            await send_until_answered(client, OpenWallet(new_meta(w, TENANT), currency="EUR"))
        await eventually(lambda: _both_own_some(platform, "processor-a", "processor-b"), timeout=60)

        credits = [CreditFunds(new_meta(wallets[i % WALLETS], TENANT), amount=1 + i % 7) for i in range(CREDITS * WALLETS)]
        half = len(credits) // 2
        before = await asyncio.gather(*(send_until_answered(client, c) for c in credits[:half]))
        assert owned_partitions(platform, "processor-a") > 0, "the victim must own partitions when it dies"
        platform.kill("processor-a")
        platform.kill("projector-a")
        killed_at = time.monotonic()
        # Every wallet gets commands after the kill, so the victim's partitions must be taken over.
        after = await asyncio.wait_for(asyncio.gather(*(send_until_answered(client, c) for c in credits[half:])), timeout=240)
        takeover_s = time.monotonic() - killed_at
        results = [*before, *after]
    assert first.popen.returncode is not None
    assert all(r.accepted for r in results)
    print(f"\ntakeover: every command answered {takeover_s:.1f} s after the kill")
    assert takeover_s < 60

    # The log: each credit applied exactly once, per wallet versions contiguous.
    codec = bootstrap.codec(settings)
    events = [codec.decode(r.value).record for r in await read_topic(settings, settings.topic("wallet.events"), timeout=30)]
    credited = [e["entry_id"] for e in events if "entry_id" in e]
    assert sorted(credited) == sorted(c.meta.command_id for c in credits)
    for w in wallets:
        versions = [e["envelope"]["aggregate_version"] for e in events if e["envelope"]["aggregate_id"] == w]
        assert versions == list(range(1, CREDITS + 2))

    # The read store, kept by the surviving projector alone after the kill: exact.
    expected = {w: sum(c.amount for c in credits if c.meta.aggregate_id == w) for w in wallets}
    schema = settings.pg_schema("wallet")

    async def caught_up() -> bool:
        rows = await fetch(settings, schema, "SELECT wallet_id, balance, version FROM wallets")
        return len(rows) == WALLETS and all(r["version"] == CREDITS + 1 for r in rows)

    await eventually(caught_up, timeout=120)
    rows = await fetch(settings, schema, "SELECT wallet_id::text AS w, balance FROM wallets")
    assert {r["w"]: r["balance"] for r in rows} == expected
    [ledger] = await fetch(settings, schema, "SELECT count(*) AS n, count(DISTINCT entry_id) AS d FROM ledger")
    assert ledger["n"] == ledger["d"] == len(credits)


async def _both_own_some(platform, a: str, b: str) -> bool:
    return owned_partitions(platform, a) > 0 and owned_partitions(platform, b) > 0
