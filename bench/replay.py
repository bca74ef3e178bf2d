"""Projection replay into PostgreSQL: the real bulk rebuild (infra.replay.bulk_rebuild,
the Projector folding and COPYing, in POSEIDON_REPLAY_WORKERS forked workers)
rebuilds the wallet read store from offset zero in a child process of its own (so
its memory is its own), against PostgreSQL COPY of the same ledger rows into a
table of the same shape.

`python -m bench.replay --expected N --out F` is that child; it writes its figures to F."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from base.logging import configure
from base.settings import Settings
from bench.procs import peak_rss_mb
from infra.migrations import migrate
from infra.projector import Projector
from infra.replay import bulk_rebuild
from infra.topics import partitions_of
from poseidon import bootstrap

COPY_SCHEMA = "bench_copy"
COPY_REPEATS = 3
CHILD_TIMEOUT = 300.0
UNTIL_GRACE = 3.0
"""Kept for the report's wording; the rebuild returns when its workers have committed."""


async def end_offsets(settings: Settings, topics: list[str]) -> dict[TopicPartition, int]:
    partitions = await partitions_of(settings, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, isolation_level="read_committed", group_id=None)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets([TopicPartition(t, p) for t, ps in partitions.items() for p in ps]))
    finally:
        await consumer.stop()


async def project(expected: int, timeout: float) -> dict:
    """Runs the bulk rebuild (`infra.replay.bulk_rebuild`: POSEIDON_REPLAY_WORKERS
    forked workers sharing the partitions, each folding and COPYing its share) on
    a fresh schema up to the end offsets; the clock stops when every worker has
    committed."""
    settings = bootstrap.settings()
    configure(settings.log_level, "json")
    spec = bootstrap.projection("wallet")
    schema = settings.pg_schema(spec.name)
    conn = await asyncpg.connect(settings.pg_dsn)
    try:
        # Tables exist before the clock starts, as they do for the COPY baseline.
        await migrate(conn, schema, spec.migrations)
    finally:
        await conn.close()
    ends = await end_offsets(settings, [settings.topic(t) for t in spec.topics])
    first: list[float] = []
    started = time.perf_counter()
    applied = await asyncio.wait_for(
        bulk_rebuild(
            spec,
            settings,
            bootstrap.codec(settings),
            schema,
            ends,
            workers=settings.replay_workers,
            on_progress=lambda _: first.append(time.perf_counter()),
        ),
        timeout,
    )
    elapsed = time.perf_counter() - started
    if applied < expected:
        raise RuntimeError(f"the rebuild applied {applied} of {expected} events")
    workers = max(1, min(settings.replay_workers, len({tp.partition for tp in ends})))
    return {
        "events": applied,
        "seconds": round(elapsed, 3),
        "first_batch_seconds": round(first[0] - started, 3) if first else None,
        "per_second": round(applied / elapsed, 1),
        "workers": workers,
        "batch_size": Projector(spec, settings, bootstrap.codec(settings)).batch_size,
        "until_returned": True,
        "end_offsets": sum(ends.values()),
        # The bench child and, with workers, the largest of them (they hold the rows).
        "peak_rss_mb": max(peak_rss_mb(os.getpid()), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
    }


async def copy_same_rows(settings: Settings, repeats: int = COPY_REPEATS) -> dict:
    """Baseline: the ledger rows the projector wrote, in the order it wrote them,
    COPYed into an empty table of the same shape (columns, keys, indexes).
    Connect + COPY are timed; the best of `repeats` fresh tables is the raw limit."""
    source = settings.pg_schema("wallet")
    target = settings.pg_schema(COPY_SCHEMA)
    conn = await asyncpg.connect(settings.pg_dsn)
    try:
        rows = [tuple(r) for r in await conn.fetch(f'SELECT * FROM "{source}".ledger')]  # heap order = insertion order
        await conn.execute(f'CREATE SCHEMA "{target}"')
    finally:
        await conn.close()
    timings = []
    for _ in range(repeats):
        admin = await asyncpg.connect(settings.pg_dsn)
        try:
            await admin.execute(f'DROP TABLE IF EXISTS "{target}".ledger')
            await admin.execute(f'CREATE TABLE "{target}".ledger (LIKE "{source}".ledger INCLUDING ALL)')
        finally:
            await admin.close()
        started = time.perf_counter()
        conn = await asyncpg.connect(settings.pg_dsn)
        try:
            await conn.copy_records_to_table("ledger", records=rows, schema_name=target)
            timings.append(time.perf_counter() - started)
            copied = await conn.fetchval(f'SELECT count(*) FROM "{target}".ledger')
        finally:
            await conn.close()
        if copied != len(rows):
            raise RuntimeError(f"COPY wrote {copied} of {len(rows)} rows")
    best = min(timings)
    return {
        "rows": len(rows),
        "seconds": round(best, 4),
        "per_second": round(len(rows) / best, 1),
        "all_seconds": [round(t, 4) for t in timings],
    }


async def check_read_store(settings: Settings, expected_events: int) -> dict:
    """The replay's output is right, not just fast: one ledger row per movement,
    one wallet row per opening, and balances equal to their ledgers."""
    schema = settings.pg_schema("wallet")
    conn = await asyncpg.connect(settings.pg_dsn)
    try:
        row = await conn.fetchrow(
            f"""SELECT (SELECT count(*) FROM "{schema}".wallets) AS wallets,
                       (SELECT count(*) FROM "{schema}".ledger) AS ledger_rows,
                       (SELECT count(*) FROM "{schema}".wallets w WHERE w.balance <>
                           (SELECT coalesce(sum(balance_delta), 0) FROM "{schema}".ledger l WHERE l.wallet_id = w.wallet_id))
                           AS wallets_off_ledger"""
        )
    finally:
        await conn.close()
    found = dict(row)
    return {**found, "complete": found["wallets"] + found["ledger_rows"] == expected_events and found["wallets_off_ledger"] == 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--expected", type=int, required=True, help="events on the topic (the run stops there)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON report")
    parser.add_argument("--timeout", type=float, default=CHILD_TIMEOUT)
    args = parser.parse_args()
    report = asyncio.run(project(args.expected, args.timeout))
    args.out.write_text(json.dumps(report) + "\n")


if __name__ == "__main__":
    main()
