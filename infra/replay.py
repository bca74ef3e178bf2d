"""Rebuilds a read store into a shadow schema — all of it, or one tenant's rows,
up to the present or to an end position — shows how it differs from the live
store, and swaps it in: whole (atomic schema rename) or one tenant (rows
replaced in one transaction). The live projector may keep running throughout.

Rules the swap keeps (nothing ever silently lost):
- A partial shadow (`to_offsets` / `to_time`) is for investigation: swapping it
  needs `force_partial`. A forced whole swap installs the past store *with its
  positions*, so the live projector replays forward from there to the present.
- A tenant swap replaces only that tenant's rows and never moves the live
  positions, so the shadow must have reached every live position: a complete
  shadow is caught up (tenant-filtered) under the lock; a partial one behind
  the live store is refused even with `force_partial` (the events between
  would never be re-applied). A shadow ahead of the live store is fine: the
  live projector re-applies those events idempotently.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from tqdm import tqdm

from base.settings import Settings
from infra.migrations import migrate
from infra.projection import ProjectionSpec
from infra.projector import Projector
from infra.topics import partitions_of
from schemas.codec import Codec

log = structlog.get_logger(__name__)

POSITIONS = 'SELECT topic, partition, next_offset FROM "{schema}".projection_offsets'
PRIMARY_KEY_SQL = """SELECT a.attname FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)"""
COLUMNS_SQL = "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum"


class ReplayError(RuntimeError):
    """The rebuild could not be completed, or its swap was refused."""


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


def tenant_filter(tenant: str | None) -> Callable[[str, dict], bool] | None:
    """Events whose envelope names the tenant (every read-model row's tenant_id comes from there)."""
    if tenant is None:
        return None
    return lambda _name, record: record["envelope"]["tenant_id"] == tenant


def after_time(to_time: datetime | None) -> Callable[[str, dict], bool] | None:
    if to_time is None:
        return None
    return lambda _name, record: record["envelope"]["occurred_at"] > to_time


async def compare(conn: asyncpg.Connection, spec: ProjectionSpec, a: str, b: str) -> dict[str, int]:
    """Rows present in one schema's table but not the other's, per table."""
    return {t: d["only_live"] + d["only_shadow"] for t, d in (await difference(conn, spec, a, b, samples=0)).items()}


async def difference(
    conn: asyncpg.Connection, spec: ProjectionSpec, live: str, shadow: str, *, tenant: str | None = None, samples: int = 5
) -> dict[str, dict[str, Any]]:
    """Per table: rows only in the live store, rows only in the shadow (as
    multisets, EXCEPT ALL), and up to `samples` primary keys of each; only the
    tenant's rows when `tenant` is given."""
    where, args = ("WHERE tenant_id = $1", (tenant,)) if tenant is not None else ("", ())
    out: dict[str, dict[str, Any]] = {}
    for table in spec.tables:
        key = [r[0] for r in await conn.fetch(PRIMARY_KEY_SQL, f'"{shadow}".{table}')] or await _columns(conn, shadow, table)
        cols = ", ".join(f'"{c}"' for c in key)
        entry: dict[str, Any] = {"key": key}
        for side, x, y in (("only_live", live, shadow), ("only_shadow", shadow, live)):
            rows = await conn.fetch(
                f'SELECT {cols}, count(*) OVER () AS n FROM (SELECT * FROM "{x}".{table} {where} '
                f'EXCEPT ALL SELECT * FROM "{y}".{table} {where}) d ORDER BY {cols} LIMIT {max(samples, 1)}',
                *args,
            )
            entry[side] = rows[0]["n"] if rows else 0
            entry[f"{side}_keys"] = [{c: _plain(r[c]) for c in key} for r in rows[:samples]]
        out[table] = entry
    return out


async def rebuild(
    spec: ProjectionSpec,
    settings: Settings,
    codec: Codec,
    *,
    swap: bool = True,
    keep: bool = False,
    progress: bool = True,
    max_catch_ups: int = 5,
    tenant: str | None = None,
    to_offsets: dict[int, int] | int | None = None,
    to_time: datetime | None = None,
    force_partial: bool = False,
    samples: int = 5,
) -> dict[str, Any]:
    """Rebuild into `<schema>_rebuild_<ms>` and compare with the live store.

    `swap`: swap it in (see the module's rules); otherwise `keep` leaves the
    shadow for a later `swap_shadow`/`drop_shadow`, else it is dropped (dry run).
    `tenant`: only events of that tenant; compared and swapped as that tenant's rows.
    `to_offsets`: end offset per partition (or one for all), exclusive.
    `to_time`: each partition stops before its first event that occurred later.
    """
    live = settings.pg_schema(spec.name)
    shadow = f"{live}_rebuild_{int(time.time() * 1000)}"
    topics = [settings.topic(t) for t in spec.topics]
    ends = await end_offsets(settings, topics)
    until = dict(ends)
    if to_offsets is not None:
        until = {
            tp: min(end, to_offsets if isinstance(to_offsets, int) else to_offsets.get(tp.partition, end))
            for tp, end in ends.items()
        }
    partial = to_offsets is not None or to_time is not None
    bar = tqdm(total=sum(until.values()), unit="event", desc=f"rebuild {spec.name}", disable=not progress, mininterval=0.5)
    started = time.perf_counter()
    # A fresh schema: fold and COPY (infra/bulk.py), one worker per share of the
    # partitions; the catch-ups below run the SQL.
    applied = await bulk_rebuild(
        spec,
        settings,
        codec,
        shadow,
        until,
        workers=settings.replay_workers,
        on_progress=bar.update,
        record_filter=tenant_filter(tenant),
        stop_before=after_time(to_time),
    )
    bar.close()
    elapsed = time.perf_counter() - started
    meta = {
        "read_model": spec.name,
        "tenant": tenant,
        "partial": partial,
        "to_offsets": to_offsets,
        "to_time": to_time.isoformat() if to_time else None,
    }
    report: dict[str, Any] = {
        **meta,
        "live_schema": live,
        "shadow_schema": shadow,
        "events": applied,
        "seconds": round(elapsed, 3),
        "events_per_second": round(applied / elapsed, 1) if elapsed > 0 else None,
        "swapped": False,
        "kept": False,
    }
    conn = await asyncpg.connect(settings.dsn_for(spec.name))
    try:
        comment = json.dumps(meta).replace("'", "''")
        await conn.execute(f"COMMENT ON SCHEMA \"{shadow}\" IS '{comment}'")
        report["end_positions"] = await _positions_for_report(conn, shadow)
        live_exists = await _exists(conn, live)
        diff = await difference(conn, spec, live, shadow, tenant=tenant, samples=samples) if live_exists else None
        _set_diff(report, diff)
        if swap:
            await _swap(
                conn,
                spec,
                settings,
                codec,
                shadow,
                meta,
                report,
                force_partial=force_partial,
                max_catch_ups=max_catch_ups,
                samples=samples,
            )
        elif keep:
            report["kept"] = True
        else:
            await conn.execute(f'DROP SCHEMA "{shadow}" CASCADE')
        return report
    finally:
        await conn.close()


async def bulk_rebuild(
    spec: ProjectionSpec,
    settings: Settings,
    codec: Codec,
    schema: str,
    until: dict[TopicPartition, int],
    *,
    workers: int = 1,
    on_progress: Callable[[int], None] | None = None,
    record_filter: Callable[[str, dict], bool] | None = None,
    stop_before: Callable[[str, dict], bool] | None = None,
) -> int:
    """Loads a fresh `schema` up to `until` with the bulk projector (fold + COPY)
    and returns the events applied.

    With `workers` > 1 the partitions are shared out (round robin by number) among
    that many forked processes, each folding and COPYing its own share into the
    same schema: one aggregate's events are in one partition and every read
    model's rows are keyed by aggregate, so the shares never write the same row
    (a read model that broke that would fail the COPY on its key, loudly, not mix
    rows). Each worker commits its rows with its partitions' positions; a worker
    that fails fails the rebuild (the shadow is then incomplete and is not
    swapped). Progress moves as each worker finishes."""
    numbers = sorted({tp.partition for tp in until})
    workers = max(1, min(workers, len(numbers)))
    projector_options = {"schema": schema, "record_filter": record_filter, "stop_before": stop_before, "bulk": True}
    if workers == 1:
        projector = Projector(spec, settings, codec, on_progress=on_progress, **projector_options)
        return await projector.run(until=until)
    conn = await asyncpg.connect(settings.dsn_for(spec.name))
    try:
        await migrate(conn, schema, spec.migrations)  # once, before the workers share the schema
    finally:
        await conn.close()
    context = multiprocessing.get_context("fork")  # the spec's mapping and filters are code: not picklable
    shares = [numbers[i::workers] for i in range(workers)]
    running = []
    for share in shares:
        share_until = {tp: end for tp, end in until.items() if tp.partition in share}
        receive, send = context.Pipe(duplex=False)
        process = context.Process(
            target=_bulk_worker,
            args=(spec, settings, codec, share, share_until, projector_options, send),
            name=f"rebuild-{spec.name}-{'-'.join(map(str, share))}",
        )
        process.start()
        send.close()
        running.append((process, receive, share))
    applied, failures = 0, []
    for process, receive, share in running:
        await asyncio.to_thread(process.join)
        answer = receive.recv() if receive.poll() else {"error": f"exit code {process.exitcode}"}
        receive.close()
        if "error" in answer:
            failures.append(f"partitions {share}: {answer['error']}")
            continue
        applied += answer["applied"]
        if on_progress is not None:
            on_progress(answer["read"])
    if failures:
        raise ReplayError(f"a rebuild worker failed: {'; '.join(failures)}")
    return applied


def _bulk_worker(spec, settings, codec, share, until, options, send) -> None:
    """One forked worker of `bulk_rebuild`: its partitions, its own loop and connections."""
    read = 0

    def progress(n: int) -> None:
        nonlocal read
        read += n

    try:
        projector = Projector(spec, settings, codec, partitions=share, on_progress=progress, **options)
        applied = asyncio.run(projector.run(until=until))
        send.send({"applied": applied, "read": read})
    except BaseException as exc:  # reported to the parent, which fails the rebuild
        send.send({"error": f"{type(exc).__name__}: {exc}"[:2000]})
        raise SystemExit(1) from None
    finally:
        send.close()


async def swap_shadow(
    spec: ProjectionSpec,
    settings: Settings,
    codec: Codec,
    shadow: str,
    *,
    force_partial: bool = False,
    max_catch_ups: int = 5,
    samples: int = 5,
) -> dict[str, Any]:
    """Swap in a shadow kept by an earlier `rebuild(keep=True)`, by name."""
    conn = await asyncpg.connect(settings.dsn_for(spec.name))
    try:
        meta = await _shadow_meta(conn, spec, settings, shadow)
        report: dict[str, Any] = {**meta, "live_schema": settings.pg_schema(spec.name), "shadow_schema": shadow, "swapped": False}
        await _swap(
            conn,
            spec,
            settings,
            codec,
            shadow,
            meta,
            report,
            force_partial=force_partial,
            max_catch_ups=max_catch_ups,
            samples=samples,
        )
        return report
    finally:
        await conn.close()


async def drop_shadow(spec: ProjectionSpec, settings: Settings, shadow: str) -> None:
    """Drop a kept shadow (only ever a rebuild schema of this read model)."""
    conn = await asyncpg.connect(settings.dsn_for(spec.name))
    try:
        await _shadow_meta(conn, spec, settings, shadow)
        await conn.execute(f'DROP SCHEMA "{shadow}" CASCADE')
    finally:
        await conn.close()


async def _swap(
    conn: asyncpg.Connection,
    spec: ProjectionSpec,
    settings: Settings,
    codec: Codec,
    shadow: str,
    meta: dict[str, Any],
    report: dict[str, Any],
    *,
    force_partial: bool,
    max_catch_ups: int,
    samples: int,
) -> None:
    live, tenant, partial = settings.pg_schema(spec.name), meta["tenant"], meta["partial"]
    if partial and not force_partial:
        raise ReplayError(
            f"{shadow} is a partial rebuild (up to {meta['to_offsets'] or meta['to_time']}): for investigation only, not swapped."
            " Swap it anyway with --force-partial (see `poseidon replay --help`), or drop it."
        )
    live_exists = await _exists(conn, live)
    if tenant is not None and not live_exists:
        raise ReplayError(f"no live store {live} to replace tenant {tenant}'s rows in: rebuild it whole instead")
    for _ in range(max_catch_ups):
        behind: dict[TopicPartition, int] = {}
        async with conn.transaction():
            if live_exists:
                # Waits for the live projector's open batch and holds off its next one.
                await conn.execute(f'LOCK TABLE "{live}".projection_offsets IN EXCLUSIVE MODE')
                live_pos = await _positions(conn, live)
                shadow_pos = await _positions(conn, shadow)
                behind = {tp: off for tp, off in live_pos.items() if shadow_pos.get(tp, 0) < off}
                if behind and partial:
                    if tenant is not None:
                        raise ReplayError(
                            f"refused: the live store is past the partial shadow's end on {_fmt(behind)}; replacing tenant "
                            f"{tenant}'s rows would lose those events for good (a tenant swap cannot rewind live "
                            f"positions); {shadow} kept"
                        )
                    behind = {}  # Forced whole swap: the live projector replays forward from the shadow's positions.
            if not behind:
                if live_exists:
                    _set_diff(report, await difference(conn, spec, live, shadow, tenant=tenant, samples=samples))
                if tenant is not None:
                    for table in spec.tables:
                        cols = ", ".join(f'"{c}"' for c in await _columns(conn, live, table))
                        await conn.execute(f'DELETE FROM "{live}".{table} WHERE tenant_id = $1', tenant)
                        await conn.execute(
                            f'INSERT INTO "{live}".{table} ({cols}) SELECT {cols} FROM "{shadow}".{table} WHERE tenant_id = $1',
                            tenant,
                        )
                    await conn.execute(f'DROP SCHEMA "{shadow}" CASCADE')
                else:
                    if live_exists:
                        await conn.execute(f'ALTER SCHEMA "{live}" RENAME TO "{shadow}_old"')
                    await conn.execute(f'ALTER SCHEMA "{shadow}" RENAME TO "{live}"')
                    await conn.execute(f'COMMENT ON SCHEMA "{live}" IS NULL')
                    if live_exists:
                        # Dropping the old tables in the same transaction invalidates
                        # every cached plan on them, so readers re-resolve to the new ones.
                        await conn.execute(f'DROP SCHEMA "{shadow}_old" CASCADE')
                report["swapped"] = True
        if report["swapped"]:
            log.info("read store rebuilt and swapped in", **{k: v for k, v in report.items() if k not in ("differences", "diff")})
            return
        log.info("live projector moved on during the rebuild; catching up", partitions=len(behind))
        await Projector(spec, settings, codec, schema=shadow, record_filter=tenant_filter(tenant)).run(until=behind)
    raise ReplayError(f"the live projector kept moving; gave up after {max_catch_ups} catch-ups ({shadow} kept)")


async def _shadow_meta(conn: asyncpg.Connection, spec: ProjectionSpec, settings: Settings, shadow: str) -> dict[str, Any]:
    if not shadow.startswith(f"{settings.pg_schema(spec.name)}_rebuild_"):
        raise ReplayError(f"{shadow} is not a rebuild of {spec.name}")
    comment = await conn.fetchval("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1", shadow)
    if comment is None:
        raise ReplayError(f"no kept rebuild {shadow}")
    return json.loads(comment)


async def _exists(conn: asyncpg.Connection, schema: str) -> bool:
    return await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema) == 1


async def _positions(conn: asyncpg.Connection, schema: str) -> dict[TopicPartition, int]:
    return {TopicPartition(r[0], r[1]): r[2] for r in await conn.fetch(POSITIONS.format(schema=schema))}


async def _positions_for_report(conn: asyncpg.Connection, schema: str) -> dict[str, int]:
    return {f"{tp.topic}:{tp.partition}": off for tp, off in sorted((await _positions(conn, schema)).items())}


async def _columns(conn: asyncpg.Connection, schema: str, table: str) -> list[str]:
    return [r[0] for r in await conn.fetch(COLUMNS_SQL, f'"{schema}".{table}')]


def _set_diff(report: dict[str, Any], diff: dict[str, dict[str, Any]] | None) -> None:
    report["diff"] = diff
    report["differences"] = None if diff is None else {t: d["only_live"] + d["only_shadow"] for t, d in diff.items()}


def _fmt(positions: dict[TopicPartition, int]) -> str:
    return ", ".join(f"{tp.topic}:{tp.partition}@{off}" for tp, off in sorted(positions.items()))


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)
