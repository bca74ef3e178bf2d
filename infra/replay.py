"""Rebuilds a read store from offset zero into a fresh shadow schema, compares
it with the live one, and swaps it in atomically. The live projector may keep
running: the swap waits for its current batch, and afterwards it notices the
stored positions changed and continues from the rebuilt store's positions."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from tqdm import tqdm

from infra.projection import ProjectionSpec
from infra.projector import Projector
from infra.topics import partitions_of
from poseidon.settings import Settings
from schemas.codec import Codec

log = structlog.get_logger(__name__)

POSITIONS = 'SELECT topic, partition, next_offset FROM "{schema}".projection_offsets'


class ReplayError(RuntimeError):
    """The rebuild could not be completed or swapped in."""


async def end_offsets(settings: Settings, topics: list[str]) -> dict[TopicPartition, int]:
    """Last stable offsets (read_committed): what a rebuild must reach."""
    partitions = await partitions_of(settings, topics)
    tps = [TopicPartition(t, p) for t, ps in partitions.items() for p in ps]
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, isolation_level="read_committed", group_id=None)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def compare(conn: asyncpg.Connection, spec: ProjectionSpec, a: str, b: str) -> dict[str, int]:
    """Rows present in one schema's table but not the other's, per table."""
    diffs = {}
    for table in spec.tables:
        diffs[table] = await conn.fetchval(
            f'SELECT count(*) FROM ((TABLE "{a}".{table} EXCEPT ALL TABLE "{b}".{table}) '
            f'UNION ALL (TABLE "{b}".{table} EXCEPT ALL TABLE "{a}".{table})) d'
        )
    return diffs


async def rebuild(
    spec: ProjectionSpec,
    settings: Settings,
    codec: Codec,
    *,
    swap: bool = True,
    progress: bool = True,
    max_catch_ups: int = 5,
) -> dict[str, Any]:
    live = settings.pg_schema(spec.name)
    shadow = f"{live}_rebuild_{int(time.time() * 1000)}"
    topics = [settings.topic(t) for t in spec.topics]
    ends = await end_offsets(settings, topics)
    total = sum(ends.values())
    bar = tqdm(total=total, unit="event", desc=f"rebuild {spec.name}", disable=not progress, mininterval=0.5)
    started = time.perf_counter()
    projector = Projector(spec, settings, codec, schema=shadow, on_progress=bar.update)
    await projector.run(until=ends)
    bar.close()
    elapsed = time.perf_counter() - started
    report: dict[str, Any] = {
        "read_model": spec.name,
        "live_schema": live,
        "shadow_schema": shadow,
        "events": projector.applied,
        "seconds": round(elapsed, 3),
        "events_per_second": round(projector.applied / elapsed, 1) if elapsed > 0 else None,
        "swapped": False,
    }
    conn = await asyncpg.connect(settings.pg_dsn)
    try:
        live_exists = await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", live) == 1
        if not swap:
            report["differences"] = await compare(conn, spec, live, shadow) if live_exists else None
            await conn.execute(f'DROP SCHEMA "{shadow}" CASCADE')
            return report
        for _ in range(max_catch_ups):
            behind: dict[TopicPartition, int] = {}
            async with conn.transaction():
                if live_exists:
                    # Waits for the live projector's open batch and holds off its next one.
                    await conn.execute(f'LOCK TABLE "{live}".projection_offsets IN EXCLUSIVE MODE')
                    live_pos = {TopicPartition(r[0], r[1]): r[2] for r in await conn.fetch(POSITIONS.format(schema=live))}
                    shadow_pos = {TopicPartition(r[0], r[1]): r[2] for r in await conn.fetch(POSITIONS.format(schema=shadow))}
                    behind = {tp: off for tp, off in live_pos.items() if shadow_pos.get(tp, 0) < off}
                if not behind:
                    if live_exists:
                        report["differences"] = await compare(conn, spec, live, shadow)
                        await conn.execute(f'ALTER SCHEMA "{live}" RENAME TO "{shadow}_old"')
                    await conn.execute(f'ALTER SCHEMA "{shadow}" RENAME TO "{live}"')
                    if live_exists:
                        # Dropping the old tables in the same transaction invalidates
                        # every cached plan on them, so readers re-resolve to the new ones.
                        await conn.execute(f'DROP SCHEMA "{shadow}_old" CASCADE')
                    report["swapped"] = True
            if report["swapped"]:
                log.info("read store rebuilt and swapped in", **{k: v for k, v in report.items() if k != "differences"})
                return report
            log.info("live projector moved on during the rebuild; catching up", partitions=len(behind))
            await Projector(spec, settings, codec, schema=shadow).run(until=behind)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{shadow}" CASCADE')
        raise ReplayError(f"the live projector kept moving; gave up after {max_catch_ups} catch-ups")
    finally:
        await conn.close()
