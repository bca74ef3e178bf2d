"""The Kafka broker and PostgreSQL restarted under load, on a private stack (not
the shared dev stack) — Kafka and PostgreSQL stopped cleanly, then PostgreSQL
SIGKILLed (crash recovery on its next start): no process is restarted by the
test; the platform must recover by itself, and nothing accepted is lost or done twice."""

from __future__ import annotations

import asyncio

import pytest

from tests.chaos.private_stack import running_private_stack
from tests.chaos.world import say, under_load

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]


@pytest.fixture(scope="module")
def private_stack():
    with running_private_stack() as stack:
        yield stack


@pytest.fixture(scope="module")
def stack(private_stack):
    """Overrides the session's stack: namespace and platform of this module live on the private one."""
    return private_stack.settings()


async def test_kafka_and_postgresql_restarted_and_postgresql_sigkilled_under_load_the_platform_recovers_by_itself(
    platform, private_stack, chaos
):
    rng = chaos.rng

    async def outage(service: str, kill: bool = False) -> None:
        await asyncio.sleep(rng.uniform(3.0, 8.0))
        if kill:
            pid = await asyncio.to_thread(private_stack.kill_postgres)
            stopped = f"SIGKILLed (postmaster {pid})"
        else:
            stopped = f"stopped ({await asyncio.to_thread(private_stack.run, f'stop-{service}'):.0f}s)"
        down_s = rng.uniform(5.0, 12.0)
        await asyncio.sleep(down_s)
        started = await asyncio.to_thread(private_stack.run, f"start-{service}")
        chaos.did.append(f"{service} {stopped}, down {down_s:.0f}s more, started ({started:.0f}s)")
        say(chaos.did[-1])

    async def disruptions() -> None:
        await outage("kafka")
        await asyncio.sleep(rng.uniform(10.0, 20.0))
        await outage("postgres")
        await asyncio.sleep(rng.uniform(10.0, 20.0))
        await outage("postgres", kill=True)

    await under_load(platform, chaos, disruptions)
