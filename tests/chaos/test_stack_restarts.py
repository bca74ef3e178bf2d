"""The Kafka broker and PostgreSQL restarted under load, on a private stack (not
the shared dev stack): no process is restarted by the test; the platform must
recover by itself, and nothing accepted is lost or done twice."""

from __future__ import annotations

import asyncio
import time

import pytest

from infra.command_client import CommandClient
from poseidon import bootstrap
from tests.chaos.private_stack import PrivateStack
from tests.chaos.world import (
    PROCESSES,
    charge_findings,
    charges,
    check_message_path,
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

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

WALLET_START = 10_000


@pytest.fixture(scope="module")
def private_stack():
    stack = PrivateStack()
    try:
        seconds = stack.run("up")
        say(f"private stack up in {seconds:.0f}s: Kafka 127.0.0.1:{stack.kafka_port}, PostgreSQL 127.0.0.1:{stack.pg_port}")
        yield stack
    finally:
        stack.destroy()
        say("private stack stopped and removed")


@pytest.fixture(scope="module")
def stack(private_stack):
    """Overrides the session's stack: namespace and platform of this module live on the private one."""
    return private_stack.settings()


async def test_kafka_and_postgresql_restarted_under_load_the_platform_recovers_by_itself(platform, private_stack, chaos):
    rng = chaos.rng
    async with message_world(platform, PROCESSES) as world:
        settings = world.settings
        async with CommandClient(settings, bootstrap.codec(settings), [bootstrap.hub("wallet")]) as client:
            wallets = await open_wallets(client, 3, WALLET_START)

            async def outage(service: str) -> None:
                await asyncio.sleep(rng.uniform(3.0, 8.0))
                stopped = await asyncio.to_thread(private_stack.run, f"stop-{service}")
                down_s = rng.uniform(5.0, 12.0)
                await asyncio.sleep(down_s)
                started = await asyncio.to_thread(private_stack.run, f"start-{service}")
                chaos.did.append(f"{service} stopped ({stopped:.0f}s), down {down_s:.0f}s more, started ({started:.0f}s)")
                say(chaos.did[-1])

            async def disruptions() -> None:
                await outage("kafka")
                await asyncio.sleep(rng.uniform(10.0, 20.0))
                await outage("postgres")

            async def traffic(stop: asyncio.Event):
                return await asyncio.gather(
                    send_traffic(world, per_s=1.5, tag="stack", stop=stop, max_count=150),
                    drive_wallets(client, wallets, rng, per_s=5.0, stop=stop, max_count=500),
                )

            started = time.monotonic()
            hooks, _ = await during(traffic, disruptions(), tail_s=5.0)
            chaos.did.insert(0, "webhooks at 1.5/s and wallet commands at 5/s throughout; no process restarted by the test")
            results = await settle_wallets(client, wallets)
        found = await check_message_path(world, hooks, timeout=420)
        recovered_s = time.monotonic() - started
        dead = [name for name, proc in platform.procs.items() if proc.popen.poll() is not None]
        expected = expected_wallets(wallets, results, WALLET_START)
        problems = await ledger_findings(settings, wallets, expected)
        wallet, sagas = await charges(world, found.accepted)
        problems += charge_findings(wallet, sagas, found.answered)
        if found.accepted == found.answered and not found.duplicates:
            await outbound_settled(world, found.accepted)
        message_diff, _ = await asyncio.to_thread(replay_differences, platform, "message")
        wallet_diff, _ = await asyncio.to_thread(replay_differences, platform, "wallet")
        accepted = sum(r.accepted for r in results)
        chaos.figures.update(
            messages=found.line(),
            wallet=f"{len(results)} commands, {accepted} accepted, {len(wallets.unsent)} refused by the broker at submit; "
            + ("; ".join(wallets.notes) or "every result received"),
            **{
                "processes exited": ", ".join(dead) or "none",
                "sagas": saga_states(sagas),
                "replay": f"message {message_diff}, wallet {wallet_diff}",
                "from first webhook to checks done": f"{recovered_s:.0f} s",
            },
        )
        chaos.found += found.problems()
        chaos.found += problems
        chaos.found += [f"{name} exited and stayed down" for name in dead]
        for name, diff in (("message", message_diff), ("wallet", wallet_diff)):
            if any(diff.values()):
                chaos.found.append(f"{name} read store differs from its replay: {diff}")
        assert not dead, {name: platform.tail(name) for name in dead}
        assert not found.problems(), chaos.found
        assert not problems, problems
        assert not any(message_diff.values()) and not any(wallet_diff.values())
