"""Projection replay into PostgreSQL: the real Projector rebuilds the wallet read
store from offset zero in a child process of its own (so its memory is its own),
against PostgreSQL COPY of the same ledger rows into a table of the same shape.

`python -m bench.replay --expected N --out F` is that child; it writes its figures to F."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from base.logging import configure
from base.settings import Settings
from bench.procs import peak_rss_mb
from infra.migrations import migrate
from infra.projector import Projector
from infra.topics import partitions_of
from poseidon import bootstrap

COPY_SCHEMA = "bench_copy"
COPY_REPEATS = 3
CHILD_TIMEOUT = 300.0
# Once every expected event is applied, how long run(until=…) may take to notice.
UNTIL_GRACE = 3.0


async def end_offsets(settings: Settings, topics: list[str]) -> dict[TopicPartition, int]:
    partitions = await partitions_of(settings, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, isolation_level="read_committed", group_id=None)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets([TopicPartition(t, p) for t, ps in partitions.items() for p in ps]))
    finally:
        await consumer.stop()


async def project(expected: int, timeout: float) -> dict:
    """Runs `Projector.run(until=end offsets)` on a fresh schema; the clock stops
    when the batch holding the last expected event has committed."""
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
    done = asyncio.Event()
    marks: dict[str, float] = {}

    def progress(_: int) -> None:
        marks.setdefault("first_batch", time.perf_counter())
        if projector.applied >= expected and not done.is_set():
            marks["last_batch"] = time.perf_counter()
            done.set()

    projector = Projector(spec, settings, bootstrap.codec(settings), on_progress=progress, bulk=True)
    started = time.perf_counter()
    run = asyncio.create_task(projector.run(until=ends))
    waiter = asyncio.create_task(done.wait())
    await asyncio.wait({run, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    if run.done() and run.exception() is not None:
        raise run.exception()
    if not done.is_set():
        run.cancel()
        raise TimeoutError(f"projector applied {projector.applied} of {expected} events in {timeout:.0f}s")
    until_returned = True
    if not run.done():
        finished, _ = await asyncio.wait({run}, timeout=UNTIL_GRACE)
        until_returned = bool(finished)
        if not finished:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
    elapsed = marks["last_batch"] - started
    return {
        "events": projector.applied,
        "seconds": round(elapsed, 3),
        "first_batch_seconds": round(marks["first_batch"] - started, 3),
        "per_second": round(projector.applied / elapsed, 1),
        "batch_size": projector.batch_size,
        "until_returned": until_returned,
        "end_offsets": sum(ends.values()),
        "peak_rss_mb": peak_rss_mb(os.getpid()),
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
