"""SIGKILL at seeded random moments while traffic flows, restart, then prove:
no accepted message lost, none answered twice, the wallet ledger balanced, and
every read store equal to a replay of the log."""

from __future__ import annotations

import asyncio

import pytest

from infra.command_client import CommandClient
from poseidon import bootstrap
from tests.chaos.world import (
    WALLET_PROCESSES,
    charge_findings,
    charges,
    check_message_path,
    churn,
    drive_wallets,
    during,
    expected_wallets,
    ledger_findings,
    message_world,
    open_wallets,
    outbound_settled,
    replay_differences,
    saga_states,
    say,
    send_traffic,
    settle_wallets,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

# A hub processor, a projector, the ingress server, a spoke worker, and the two deciders between them.
MESSAGE_PATH_VICTIMS = ["message-processor", "message-projector", "ingress", "spoke-botpress", "router", "saga-driver"]
WALLET_START = 10_000


async def test_sigkilled_processes_lose_no_accepted_message_and_answer_each_exactly_once(platform, chaos):
    async with message_world(platform) as world:
        victims = chaos.rng.sample(MESSAGE_PATH_VICTIMS, len(MESSAGE_PATH_VICTIMS))
        hooks = await during(
            lambda stop: send_traffic(world, per_s=2.0, tag="kill", stop=stop, max_count=160),
            churn(platform, victims, chaos.rng, chaos.did),
        )
        chaos.did.insert(0, f"webhooks at 2/s, each retried until 200 as Facebook does, while: {', '.join(victims)} were killed")
        found = await check_message_path(world, hooks)
        chaos.figures.update(
            messages=found.line(),
            restarts=len(victims),
        )
        wallet, sagas = await charges(world, found.accepted)
        chaos.figures.update(
            wallet=f"balance {wallet['balance']}, {wallet['captures']} charges captured", sagas=saga_states(sagas)
        )
        if found.accepted == found.answered and not found.duplicates:
            await outbound_settled(world, found.accepted)
        differences, rebuilds = await asyncio.to_thread(replay_differences, platform, "message")
        chaos.figures["replay message"] = f"differences {differences} after {rebuilds} rebuild(s)"
        chaos.found += charge_findings(wallet, sagas, found.answered)
        chaos.found += found.problems()
        if any(differences.values()):
            chaos.found.append(f"message read store differs from its replay: {differences}")
        assert not found.problems(), chaos.found
        assert not charge_findings(wallet, sagas, found.answered), wallet
        assert not any(differences.values()), differences


async def test_sigkilled_wallet_processor_and_projector_keep_the_ledger_balanced_and_equal_to_a_replay(platform, chaos):
    settings = platform.settings
    for name, args in WALLET_PROCESSES:
        platform.launch(name, *args)
    victims = [name for name, _ in WALLET_PROCESSES] * 2
    chaos.rng.shuffle(victims)
    async with CommandClient(settings, bootstrap.codec(settings), [bootstrap.hub("wallet")]) as client:
        traffic = await open_wallets(client, 4, WALLET_START)
        await during(
            lambda stop: drive_wallets(client, traffic, chaos.rng, per_s=12.0, stop=stop, max_count=700),
            churn(platform, victims, chaos.rng, chaos.did, first_s=(1.0, 5.0)),
        )
        chaos.did.insert(0, f"{len(traffic.commands)} credit/debit/reserve/capture/release commands at 12/s on 4 wallets, while:")
        results = await settle_wallets(client, traffic)
    accepted = sum(r.accepted for r in results)
    duplicates = sum(r.duplicate for r in results)
    rejections = sorted({r.rejection for r in results if not r.accepted})
    expected = expected_wallets(traffic, results, WALLET_START)
    problems = await ledger_findings(settings, traffic, expected)
    differences, rebuilds = await asyncio.to_thread(replay_differences, platform, "wallet")
    chaos.figures.update(
        commands=f"{len(results)} sent, {accepted} accepted, {len(results) - accepted} refused ({', '.join(rejections)}), "
        f"{duplicates} answered as already decided" + "".join(f"; {note}" for note in traffic.notes),
        wallets="; ".join(f"{w[:8]} balance {b} reserved {r} ({m} movements)" for w, (b, r, m) in expected.items()),
        **{"replay wallet": f"differences {differences} after {rebuilds} rebuild(s)"},
    )
    chaos.found += problems
    if any(differences.values()):
        chaos.found.append(f"wallet read store differs from its replay: {differences}")
    say(f"wallet: {chaos.figures['commands']}")
    assert not problems, problems
    assert not any(differences.values()), differences
