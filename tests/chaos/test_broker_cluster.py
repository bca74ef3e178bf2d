"""A broker of a three-node cluster SIGKILLed under load, then restarted, on a
private cluster (topics at replication 3, min ISR 2): the other two take over
its partitions and the controller quorum goes on; the test restarts no
platform process, and nothing accepted is lost or done twice."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.chaos.private_stack import partitions, running_private_stack, seconds_until
from tests.chaos.world import say, under_load

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

BROKERS = 3


@pytest.fixture(scope="module")
def private_cluster():
    with running_private_stack(brokers=BROKERS) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def stack(private_cluster):
    """Overrides the session's stack: namespace and platform of this module live on the private cluster."""
    return private_cluster.settings()


async def test_a_broker_killed_under_load_its_partitions_move_and_nothing_accepted_is_lost_or_doubled(
    platform, private_cluster, chaos
):
    rng = chaos.rng

    async def broker_outage() -> None:
        await asyncio.sleep(rng.uniform(3.0, 8.0))
        node, down_s = rng.randint(1, BROKERS), rng.uniform(12.0, 20.0)
        settings = platform.settings
        before = await partitions(settings)
        led = sum(p["leader"] == node for p in before.values())
        killed = time.monotonic()
        await asyncio.to_thread(private_cluster.run, "kill-broker", str(node))
        say(f"SIGKILL broker {node} (leader of {led} of {len(before)} partitions)")
        moved_s = await seconds_until(settings, lambda parts: all(p["leader"] not in (node, -1) for p in parts.values()))
        await asyncio.sleep(max(0.0, killed + down_s - time.monotonic()))
        started = await asyncio.to_thread(private_cluster.run, "start-broker", str(node))
        in_sync_s = await seconds_until(settings, lambda parts: all(len(p["isr"]) == len(p["replicas"]) for p in parts.values()))
        chaos.did.append(
            f"SIGKILL broker {node} of {BROKERS} (leader of {led} of {len(before)} partitions), restarted {down_s:.0f}s later"
        )
        chaos.figures["takeover"] = "every partition led by a live broker " + (
            f"{moved_s:.1f} s after the kill" if moved_s is not None else "not within 120 s"
        )
        chaos.figures["recovery"] = f"broker {node} answering {started:.0f} s after its restart, every replica in sync " + (
            f"{started + in_sync_s:.1f} s after the restart" if in_sync_s is not None else "not within 120 s after that"
        )
        say(f"{chaos.did[-1]}; {chaos.figures['takeover']}; {chaos.figures['recovery']}")
        if moved_s is None or in_sync_s is None:
            chaos.found.append("the cluster did not take over or did not get back in sync")

    await under_load(platform, chaos, broker_outage)
    assert not chaos.found, chaos.found
