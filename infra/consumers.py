"""The consumer-group member every long-running reader uses (router, saga
driver, spokes): reads only committed records, commits by hand after handling,
and lets a dead member's partitions move on within seconds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from base.settings import Settings

log = structlog.get_logger(__name__)


class Handover(ConsumerRebalanceListener):
    """A group member's rebalance listener. Before this member gives its partitions up
    it awaits `before_revoke` (the keyed loop finishing and committing the records it
    holds: otherwise their next owner handles them at the same time). Each assignment
    is logged ("partitions assigned", as processors and projectors write): when a
    member dies, the survivor's next line is the moment its partitions have a live
    owner again (the chaos tests time takeovers by it)."""

    def __init__(self, group: str):
        self.group = group
        self.before_revoke: Callable[[], Awaitable[None]] | None = None

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if revoked and self.before_revoke is not None:
            await self.before_revoke()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("partitions assigned", group=self.group, partitions=len(assigned))


class GroupConsumer(AIOKafkaConsumer):
    """An AIOKafkaConsumer subscribed with its `handover` listener."""

    handover: Handover


def fetch_options(settings: Settings) -> dict[str, int]:
    """How every consumer on the message path fetches (POSEIDON_FETCH_MIN_BYTES,
    POSEIDON_FETCH_MAX_WAIT_MS): one place, so the latency/CPU trade-off is one setting."""
    return {"fetch_min_bytes": settings.fetch_min_bytes, "fetch_max_wait_ms": settings.fetch_max_wait_ms}


def group_consumer(
    settings: Settings, topics: Sequence[str], group: str, *, offset_reset: str = "earliest", **overrides: Any
) -> GroupConsumer:
    """`topics` and `group` are logical names (the topic prefix is added here).
    Subscribed with a `Handover` listener (`consumer.handover`)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "group_id": settings.topic(group),
        "isolation_level": "read_committed",
        "enable_auto_commit": False,
        "auto_offset_reset": offset_reset,
        # A killed member's partitions move on in seconds, not aiokafka's defaults.
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 2_000,
        **fetch_options(settings),
    }
    consumer = GroupConsumer(**{**options, **overrides})
    consumer.handover = Handover(group)
    consumer.subscribe([settings.topic(t) for t in topics], listener=consumer.handover)
    return consumer


async def pin_positions(consumer: AIOKafkaConsumer) -> None:
    """Wait for this member's partitions and fix its start positions now, so a
    record produced after this returns is never skipped by a `latest` reset.
    Partitions the group has no committed offset for get one at once: a member
    killed before it committed anything there must resume from here after a
    restart, not from the end again (which would skip what came in meanwhile)."""
    while not consumer.assignment():
        await asyncio.sleep(0.05)
        await consumer.getmany(timeout_ms=50, max_records=0)
    fresh = {}
    for tp in consumer.assignment():
        position = await consumer.position(tp)
        if await consumer.committed(tp) is None:
            fresh[tp] = position
    if fresh:
        await consumer.commit(fresh)
