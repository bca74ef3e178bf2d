"""The consumer-group member every long-running reader uses (router, saga
driver, spokes): reads only committed records, commits by hand after handling,
and lets a dead member's partitions move on within seconds."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer

from base.settings import Settings


def group_consumer(
    settings: Settings, topics: Sequence[str], group: str, *, offset_reset: str = "earliest", **overrides: Any
) -> AIOKafkaConsumer:
    """`topics` and `group` are logical names (the topic prefix is added here)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "group_id": settings.topic(group),
        "isolation_level": "read_committed",
        "enable_auto_commit": False,
        "auto_offset_reset": offset_reset,
        # A killed member's partitions move on in seconds, not aiokafka's defaults.
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 2_000,
    }
    return AIOKafkaConsumer(*[settings.topic(t) for t in topics], **{**options, **overrides})


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
