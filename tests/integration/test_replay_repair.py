"""Replay for repair on the real stack: a read store rebuilt for one tenant and
up to an end position into a shadow schema, compared with the live one, and
swapped in on confirmation without touching the other tenants' rows."""

from __future__ import annotations

import json
import sys
import uuid

import pytest

from hubs.wallet.commands import CreditFunds, OpenWallet
from infra import replay
from infra.command_client import CommandClient, new_meta
from poseidon import bootstrap
from tests.harness import ROOT, env_for, eventually, fetch, read_topic

pytestmark = pytest.mark.integration

A, B = "tenant-a", "tenant-b"


def replay_cli(settings, *args: str):
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "poseidon.replay_cli", "wallet", "--no-progress", *args],
        cwd=ROOT,
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


async def open_and_credit(client, wallet_id: str, tenant: str, amounts: list[int]) -> None:
    await client.send(OpenWallet(new_meta(wallet_id, tenant), currency="EUR"))
    for amount in amounts:
        await client.send(CreditFunds(new_meta(wallet_id, tenant), amount=amount))


async def at_version(settings, wallet_id: str, version: int) -> bool:
    rows = await fetch(
        settings, settings.pg_schema("wallet"), "SELECT version FROM wallets WHERE wallet_id = $1", uuid.UUID(wallet_id)
    )
    return bool(rows) and rows[0]["version"] >= version


async def tenant_rows(settings, schema: str, tenant: str) -> dict:
    # xmin shows whether a row was rewritten, not only whether it reads the same.
    wallets = await fetch(
        settings, schema, "SELECT *, xmin::text AS x FROM wallets WHERE tenant_id = $1 ORDER BY wallet_id", tenant
    )
    ledger = await fetch(
        settings, schema, "SELECT *, xmin::text AS x FROM ledger WHERE tenant_id = $1 ORDER BY wallet_id, version", tenant
    )
    return {"wallets": [dict(r) for r in wallets], "ledger": [dict(r) for r in ledger]}


def without_xmin(rows: dict) -> dict:
    return {t: [{k: v for k, v in r.items() if k != "x"} for r in rs] for t, rs in rows.items()}


async def test_a_tenant_rebuild_shows_a_corrupted_row_and_its_swap_repairs_it_leaving_other_tenants_untouched(platform):
    settings = platform.settings
    platform.start("processor")
    platform.start("projector")
    a1, a2, b1 = (str(uuid.uuid4()) for _ in range(3))
    async with CommandClient(settings, bootstrap.codec(settings), [bootstrap.hub("wallet")]) as client:
        await open_and_credit(client, a1, A, [100, 200])
        await open_and_credit(client, a2, A, [5])
        await open_and_credit(client, b1, B, [7, 8, 9])
        await eventually(lambda: at_version(settings, a1, 3), timeout=60)
        await eventually(lambda: at_version(settings, a2, 2), timeout=60)
        await eventually(lambda: at_version(settings, b1, 4), timeout=60)
        live = settings.pg_schema("wallet")
        spec, codec = bootstrap.projection("wallet"), bootstrap.codec(settings)

        # A tenant-only rebuild equals the live tenant rows and holds nothing of the other tenant.
        kept = await replay.rebuild(spec, settings, codec, swap=False, keep=True, progress=False, tenant=A)
        assert kept["events"] == 3 + 2
        assert kept["differences"] == {"wallets": 0, "ledger": 0}
        shadow = kept["shadow_schema"]
        assert without_xmin(await tenant_rows(settings, shadow, A)) == without_xmin(await tenant_rows(settings, live, A))
        assert await fetch(settings, shadow, "SELECT * FROM wallets WHERE tenant_id <> $1", A) == []
        await replay.drop_shadow(spec, settings, shadow)

        # A projection bug, simulated: one live row of tenant A is wrong.
        b_before = await tenant_rows(settings, live, B)
        await fetch(settings, live, "UPDATE wallets SET balance = balance + 999 WHERE wallet_id = $1", uuid.UUID(a1))

        shown = replay_cli(settings, "--tenant", A, "--json")
        assert shown.returncode == 0, shown.stderr[-2000:]
        report = json.loads(shown.stdout)
        assert report["kept"] is True and report["swapped"] is False
        wallets_diff = report["diff"]["wallets"]
        assert (wallets_diff["only_live"], wallets_diff["only_shadow"]) == (1, 1)
        assert wallets_diff["only_live_keys"] == wallets_diff["only_shadow_keys"] == [{"wallet_id": a1}]
        assert report["diff"]["ledger"]["only_live"] == report["diff"]["ledger"]["only_shadow"] == 0
        [row] = await fetch(settings, live, "SELECT balance FROM wallets WHERE wallet_id = $1", uuid.UUID(a1))
        assert row["balance"] == 300 + 999, "nothing is swapped without confirmation"

        text = replay_cli(settings, "--tenant", A)
        assert f"--swap {live}_rebuild_" in text.stdout and "1 only live, 1 only in rebuild" in text.stdout
        assert replay_cli(settings, "--drop", text.stdout.split("--swap ")[1].split()[0]).returncode == 0

        swapped = replay_cli(settings, "--swap", report["shadow_schema"], "--json")
        assert swapped.returncode == 0, swapped.stderr[-2000:]
        assert json.loads(swapped.stdout)["swapped"] is True
        [row] = await fetch(settings, live, "SELECT balance FROM wallets WHERE wallet_id = $1", uuid.UUID(a1))
        assert row["balance"] == 300
        assert await tenant_rows(settings, live, B) == b_before
        assert await fetch(settings, live, "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", f"{live}_rebuild_%") == []

        # The live projector carries on over the repaired rows.
        await client.send(CreditFunds(new_meta(a1, A), amount=1))
        await eventually(lambda: at_version(settings, a1, 4), timeout=60)
        [row] = await fetch(settings, live, "SELECT balance FROM wallets WHERE wallet_id = $1", uuid.UUID(a1))
        assert row["balance"] == 301


async def test_a_rebuild_to_an_end_position_shows_the_past_state_and_is_never_swapped_in_unforced(platform):
    settings = platform.settings
    platform.start("processor")
    platform.start("projector")
    wallet_id, other = str(uuid.uuid4()), str(uuid.uuid4())
    credits = [10, 20, 40, 80, 160]
    async with CommandClient(settings, bootstrap.codec(settings), [bootstrap.hub("wallet")]) as client:
        await open_and_credit(client, wallet_id, A, credits)
        await open_and_credit(client, other, B, [1])
    await eventually(lambda: at_version(settings, wallet_id, 6), timeout=60)
    await eventually(lambda: at_version(settings, other, 2), timeout=60)
    spec, codec, live = bootstrap.projection("wallet"), bootstrap.codec(settings), settings.pg_schema("wallet")
    ours = [r for r in await read_topic(settings, settings.topic("wallet.events")) if r.key == wallet_id.encode()]
    before_fourth = ours[4]  # open, three credits; then the fourth credit

    async def balance_in(schema: str) -> int:
        [row] = await fetch(settings, schema, "SELECT balance FROM wallets WHERE wallet_id = $1", uuid.UUID(wallet_id))
        return row["balance"]

    refused = replay_cli(settings, "--to-offset", f"{before_fourth.partition}:{before_fourth.offset}", "--confirm")
    assert refused.returncode == 1 and "partial rebuild" in refused.stderr and "--force-partial" in refused.stderr
    assert await balance_in(live) == sum(credits)

    kept = await replay.rebuild(
        spec,
        settings,
        codec,
        swap=False,
        keep=True,
        progress=False,
        tenant=A,
        to_offsets={before_fourth.partition: before_fourth.offset},
    )
    shadow = kept["shadow_schema"]
    assert kept["partial"] is True
    assert await balance_in(shadow) == 10 + 20 + 40
    assert kept["diff"]["wallets"]["only_shadow_keys"] == [{"wallet_id": wallet_id}]
    with pytest.raises(replay.ReplayError, match="partial rebuild"):
        await replay.swap_shadow(spec, settings, codec, shadow)
    with pytest.raises(replay.ReplayError, match="live store is past"):
        await replay.swap_shadow(spec, settings, codec, shadow, force_partial=True)
    assert await balance_in(live) == sum(credits)
    await replay.drop_shadow(spec, settings, shadow)

    # To a time: each partition stops before its first event that occurred later.
    decoded = [codec.decode(r.value).record for r in ours]
    cut = decoded[2]["envelope"]["occurred_at"]
    by_time = await replay.rebuild(spec, settings, codec, swap=False, keep=True, progress=False, to_time=cut)
    assert by_time["partial"] is True
    expected = sum(e["amount"] for e in decoded[1:] if e["envelope"]["occurred_at"] <= cut)
    assert 10 <= expected < sum(credits)
    assert await balance_in(by_time["shadow_schema"]) == expected
    await replay.drop_shadow(spec, settings, by_time["shadow_schema"])
