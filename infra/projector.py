"""The one projector every read model runs on: reads event topics with
read_committed isolation, applies each event's statements to PostgreSQL and
stores the next offset per partition in the same transaction, so a crash at any
point neither loses nor doubles a row. Undecodable events go to `<topic>.dlq`.
It owns no mapping: that is the read model's pure `apply`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from contextlib import nullcontext

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from base.logging import bind_correlation
from base.settings import Settings
from infra import metrics, tracing
from infra.bulk import BulkLoad, cycle_collection_paused
from infra.consumers import fetch_options
from infra.dlq import DeadLetters
from infra.migrations import migrate
from infra.ops import OpsServer
from infra.outage import PLATFORM_OUTAGE, TakeoverFailed
from infra.projection import ProjectionSpec, Statement
from infra.provenance import EventKeys
from infra.service import serve_until_stopped
from infra.topics import partitions_of
from schemas.codec import Codec, DecodeError

log = structlog.get_logger(__name__)

POSITIONS_SQL = "SELECT topic, partition, next_offset FROM projection_offsets"
LOCK_POSITIONS_SQL = "SELECT topic, partition, next_offset FROM projection_offsets FOR UPDATE"
SEED_POSITION_SQL = """INSERT INTO projection_offsets (topic, partition, next_offset) VALUES ($1, $2, 0)
ON CONFLICT (topic, partition) DO NOTHING"""
SAVE_POSITION_SQL = """INSERT INTO projection_offsets (topic, partition, next_offset) VALUES ($1, $2, $3)
ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset"""


_STOP = object()


class PositionMoved(Exception):
    """The stored position is not where this projector left it (a rebuilt store
    was swapped in, or another instance wrote): re-seek to the stored one."""


class Projector:
    """Projects one read model into one PostgreSQL schema.

    `run(until=...)` stops once every partition reached the given offsets (used
    by replay) and never applies a record at or past them; it reads every
    partition itself. `run()` without `until` is the live projector: it joins
    the read model's consumer group (`poseidon-<model>-projector`), so several
    instances share the partitions; the group only assigns them — positions stay
    in PostgreSQL, each assigned partition starts from its stored one, and the
    check under `FOR UPDATE` before every batch keeps two instances that briefly
    both hold a partition during a rebalance from applying a record twice.
    `serve()` runs the live projector forever with ops endpoint and reconnects.

    `record_filter(event_type, record)`: events it refuses are read and passed
    over (their offsets still advance), as a per-tenant rebuild needs.
    `stop_before(event_type, record)`: with `until`, a partition ends just
    before the first event it accepts (a point-in-time rebuild); the stored
    position is that event's offset, so a later run resumes exactly there.

    `bulk`: the schema is a fresh shadow being rebuilt with `until`: rows are
    folded in memory and COPYed once when every partition has reached its end,
    in one transaction with the positions (infra/bulk.py). Nothing is written
    before then, so `applied` and the last `on_progress` move only at that commit.
    """

    def __init__(
        self,
        spec: ProjectionSpec,
        settings: Settings,
        codec: Codec,
        *,
        schema: str | None = None,
        batch_size: int = 2000,
        on_progress: Callable[[int], None] | None = None,
        record_filter: Callable[[str, dict], bool] | None = None,
        stop_before: Callable[[str, dict], bool] | None = None,
        bulk: bool = False,
        partitions: Collection[int] | None = None,
    ):
        """`partitions`: with `until`, read only these partition numbers of each
        topic (one worker of a parallel rebuild, infra/replay.bulk_rebuild)."""
        self.spec, self.settings, self.codec = spec, settings, codec
        self.only = frozenset(partitions) if partitions is not None else None
        self.schema = schema or settings.pg_schema(spec.name)
        self.batch_size = batch_size
        self.on_progress = on_progress
        self.record_filter = record_filter
        self.stop_before = stop_before
        self._until: dict[TopicPartition, int] | None = None
        self.process_name = f"{spec.name}-projector"
        self.topics = [settings.topic(t) for t in spec.topics]
        # Every topic a read model projects is a hub's events: each checked against that hub's keys.
        self.event_keys = {settings.topic(t): EventKeys.of(settings, t.rpartition(".")[0]) for t in spec.topics}
        self.positions: dict[TopicPartition, int] = {}
        self.applied = 0
        self._healthy = False
        self._bulk = BulkLoad(self.schema) if bulk else None
        self._folded = 0
        """Bulk: events read and folded (or run as SQL) but not committed yet."""
        self._bulk_positions: dict[TopicPartition, int] = {}
        self._using_store = asyncio.Lock()
        """Held while a batch is applied and while a rebalance seeks: one connection, one statement at a time."""

    async def serve(self) -> None:
        ops = OpsServer(
            self.settings.ops_host,
            self.settings.ops_port_for("projector", self.spec.name),
            self.process_name,
            {"projecting": lambda: self._healthy},
        )
        # Kafka or PostgreSQL away: wait and resume from the stored positions.
        # Any PostgresError restarts it too: the whole lifetime is one store's statements.
        transient = (*PLATFORM_OUTAGE, asyncpg.PostgresError)
        await serve_until_stopped("projector", self.run, ops, transient, lambda: {"applied": self.applied})

    async def run(self, until: dict[TopicPartition, int] | None = None) -> int:
        if self._bulk is not None and until is None:
            raise ValueError("a bulk load needs `until`: its rows are written when every partition reached it")
        self._until = dict(until) if until is not None else None
        conn = await asyncpg.connect(
            self.settings.dsn_for(self.spec.name),
            server_settings={"search_path": self.schema, "application_name": self.process_name},
        )
        live = self._until is None
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            isolation_level="read_committed",
            enable_auto_commit=False,
            group_id=self.settings.topic(f"poseidon-{self.spec.name}-projector") if live else None,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            **(fetch_options(self.settings) if live else {}),
            # A killed instance's partitions move to the others after this.
            session_timeout_ms=10000,
            heartbeat_interval_ms=2000,
        )
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all", enable_idempotence=True)
        try:
            await migrate(conn, self.schema, self.spec.migrations)
            if live:
                consumer.subscribe(self.topics, listener=_StartFromStored(self, conn, consumer))
            await consumer.start()
            await producer.start()
            if not live:
                partitions = await partitions_of(self.settings, self.topics)
                only = self.only
                consumer.assign([TopicPartition(t, p) for t, ps in partitions.items() for p in ps if only is None or p in only])
                await self._seek_to_stored(conn, consumer, list(consumer.assignment()))
            self._healthy = True
            log.info("projecting", schema=self.schema, topics=self.topics, positions=self._positions_for_log())
            with cycle_collection_paused() if self._bulk is not None else nullcontext():
                return await self._project(conn, consumer, producer, live)
        finally:
            self._healthy = False
            await consumer.stop()
            await producer.stop()
            await conn.close()

    async def _project(self, conn: asyncpg.Connection, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, live: bool) -> int:
        """The loop of `run`: returns once `until` is reached (never without it)."""
        while True:
            # The consumer's position steps over transaction markers, which
            # the end offsets count; the stored positions do not.
            if self._until is not None and all([await consumer.position(tp) >= end for tp, end in self._until.items()]):
                if self._bulk is not None:
                    await self._finish_bulk(conn)
                return self.applied
            batch = await consumer.getmany(timeout_ms=500, max_records=self.batch_size)
            async with self._using_store:
                tps = list(consumer.assignment())
                if live and (lost := [tp for tp in tps if tp not in self.positions]):
                    raise TakeoverFailed(f"assigned but no stored position read: {lost}")
                batch = {tp: records for tp, records in batch.items() if tp in self.positions and tp in tps}
                if batch:
                    try:
                        await self._apply_batch(conn, producer, batch)
                    except PositionMoved as moved:
                        log.warning("stored position moved; re-seeking", detail=str(moved))
                        await self._seek_to_stored(conn, consumer, tps)
                        continue
            self._record_lag(consumer, tps)

    async def _seek_to_stored(self, conn: asyncpg.Connection, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        stored = {TopicPartition(r["topic"], r["partition"]): r["next_offset"] for r in await conn.fetch(POSITIONS_SQL)}
        for tp in list(self.positions):
            if tp not in tps:
                del self.positions[tp]  # assigned to another instance now
        for tp in tps:
            self.positions[tp] = stored.get(tp, 0)
            consumer.seek(tp, self.positions[tp])

    async def _apply_batch(
        self, conn: asyncpg.Connection, producer: AIOKafkaProducer, batch: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        if self._bulk is not None:
            await self._fold_batch(conn, producer, batch)
            return
        if tracing.enabled():
            # One span per batch: in the first record's trace, linked to the others'.
            headers = [r.headers for records in batch.values() for r in records]
            with tracing.batch_span(f"{self.spec.name} projection batch", headers, records=len(headers)):
                await self._apply(conn, producer, batch)
        else:
            await self._apply(conn, producer, batch)

    async def _apply(
        self, conn: asyncpg.Connection, producer: AIOKafkaProducer, batch: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        started = time.perf_counter()
        # Decoded and mapped (dead letters sent) before the positions are locked: the
        # lock is held for the SQL only. A batch whose position moved meanwhile is
        # read again from the stored position; its dead letters may then be sent
        # twice (the same origin coordinates), never lost.
        statements, new_positions, read, count = await self._read_batch(producer, batch)
        async with conn.transaction():
            stored = {TopicPartition(r["topic"], r["partition"]): r["next_offset"] for r in await conn.fetch(LOCK_POSITIONS_SQL)}
            for tp in batch:
                if stored.get(tp, 0) != self.positions.get(tp, 0):
                    raise PositionMoved(
                        f"{tp.topic}[{tp.partition}] stored {stored.get(tp, 0)}, ours {self.positions.get(tp, 0)}"
                    )
            await _execute(conn, statements)
            await conn.executemany(SAVE_POSITION_SQL, [(tp.topic, tp.partition, off) for tp, off in new_positions.items()])
        self.positions.update(new_positions)
        self.applied += count
        metrics.RECORDS_PROCESSED.labels(self.process_name, self.spec.name, "applied").inc(count)
        metrics.LATENCY.labels(self.process_name, self.spec.name).observe(time.perf_counter() - started)
        if self.on_progress is not None:
            self.on_progress(read)

    async def _fold_batch(
        self, conn: asyncpg.Connection, producer: AIOKafkaProducer, batch: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        """Bulk: no position check (nobody else writes a shadow being built) and
        nothing committed per batch; statements that cannot fold run as SQL."""
        statements, new_positions, read, count = await self._read_batch(producer, batch)
        left = await self._bulk.fold(conn, statements)
        if left:
            async with conn.transaction():
                await _execute(conn, left)
        self.positions.update(new_positions)
        self._bulk_positions.update(new_positions)
        self._folded += count
        if self.on_progress is not None:
            self.on_progress(read)

    async def _finish_bulk(self, conn: asyncpg.Connection) -> None:
        started = time.perf_counter()
        async with conn.transaction():
            rows = await self._bulk.spill(conn)
            await conn.executemany(SAVE_POSITION_SQL, [(tp.topic, tp.partition, off) for tp, off in self._bulk_positions.items()])
        self._bulk_positions.clear()
        self.applied += self._folded
        metrics.RECORDS_PROCESSED.labels(self.process_name, self.spec.name, "applied").inc(self._folded)
        log.info(
            "bulk load written",
            schema=self.schema,
            events=self._folded,
            rows=rows,
            seconds=round(time.perf_counter() - started, 3),
        )
        self._folded = 0
        if self.on_progress is not None:
            self.on_progress(0)

    async def _read_batch(
        self, producer: AIOKafkaProducer, batch: dict[TopicPartition, list[ConsumerRecord]]
    ) -> tuple[list[Statement], dict[TopicPartition, int], int, int]:
        """The batch's statements in event order, the next position of each
        partition it moved, records read, and events that gave statements."""
        statements: list[Statement] = []
        new_positions: dict[TopicPartition, int] = {}
        count = read = 0
        for tp, records in batch.items():
            end = self._until.get(tp) if self._until is not None else None
            for record in records:
                if record.offset < self.positions[tp]:
                    continue
                if end is not None and record.offset >= end:
                    break
                applied = await self._statements_for(producer, record)
                if applied is _STOP:
                    self._until[tp] = record.offset
                    new_positions[tp] = record.offset
                    break
                new_positions[tp] = record.offset + 1
                read += 1
                if applied is not None:
                    statements.extend(applied)
                    count += 1
        return statements, new_positions, read, count

    async def _statements_for(self, producer: AIOKafkaProducer, record: ConsumerRecord) -> list[Statement] | None | object:
        """The record's statements; None if the filter passes over it; _STOP if
        its partition ends before it."""
        try:
            decoded = self.codec.decode(record.value)
            forged = self.event_keys[record.topic].problem(record.value, record.headers)
            if forged:
                # Not applied: a record nobody with the hub's key wrote, however well it imitates the chain.
                log.warning("event refused: not signed by its hub", topic=record.topic, offset=record.offset, reason=forged)
                await self._dead_letter(producer, record, forged, "ForgedEvent")
                return []
            if self.stop_before is not None and self._until is not None and self.stop_before(decoded.name, decoded.record):
                return _STOP
            if self.record_filter is not None and not self.record_filter(decoded.name, decoded.record):
                return None
            if self._bulk is None:  # a rebuild logs per rebuild, not per event
                bind_correlation(decoded.record.get("envelope", {}).get("correlation_id"), projector=self.spec.name)
            return self.spec.apply(decoded.name, decoded.record)
        except (DecodeError, ValueError, KeyError, TypeError) as exc:
            reason = exc.reason if isinstance(exc, DecodeError) else f"{type(exc).__name__}: {exc}"
            await self._dead_letter(producer, record, reason, type(exc).__name__)
            return []

    async def _dead_letter(self, producer: AIOKafkaProducer, record: ConsumerRecord, reason: str, error_type: str) -> None:
        # Sent before the PostgreSQL commit: a crash in between may repeat a dead
        # letter, never lose one.
        dead_letters = DeadLetters(producer, self.codec, self.process_name, event="dead-lettering event")
        await dead_letters.publish(record, reason, error_type)  # to `<topic>.dlq`
        metrics.FAILURES.labels(self.process_name, self.spec.name, error_type).inc()

    def _record_lag(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        for tp in tps:
            highwater = consumer.highwater(tp)
            if highwater is not None:
                metrics.LAG.labels(self.process_name, tp.topic, str(tp.partition)).set(
                    max(highwater - self.positions.get(tp, 0), 0)
                )

    def _positions_for_log(self) -> dict[str, int]:
        return {f"{tp.topic}[{tp.partition}]": off for tp, off in sorted(self.positions.items())}


async def _execute(conn: asyncpg.Connection, statements: list[Statement]) -> None:
    """Run statements phase by phase (stable within a phase); consecutive ones
    with the same SQL go as one executemany batch."""
    statements = sorted(statements, key=lambda s: s.phase)
    i = 0
    while i < len(statements):
        j = i
        while j < len(statements) and statements[j].sql == statements[i].sql:
            j += 1
        if j - i == 1:
            await conn.execute(statements[i].sql, *statements[i].args)
        else:
            await conn.executemany(statements[i].sql, [s.args for s in statements[i:j]])
        i = j


class _StartFromStored(ConsumerRebalanceListener):
    """The live projector's partitions start where the read store says, never
    where the group committed (it commits nothing: positions live with the rows)."""

    def __init__(self, projector: Projector, conn: asyncpg.Connection, consumer: AIOKafkaConsumer):
        self.projector, self.conn, self.consumer = projector, conn, consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        pass  # positions stay stored with the rows; whoever is assigned next reads them

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        async with self.projector._using_store:
            # Every assigned partition gets its row before anything is applied: `FOR
            # UPDATE` can only hold back another instance on a row that exists (two
            # first batches of a partition with no row yet would both pass the check).
            await self.conn.executemany(SEED_POSITION_SQL, [(tp.topic, tp.partition) for tp in assigned])
            await self.projector._seek_to_stored(self.conn, self.consumer, list(assigned))
        log.info("partitions assigned", projector=self.projector.spec.name, partitions=len(assigned))
