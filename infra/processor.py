"""The one aggregate processor every hub runs on, on aiokafka's transactional
producer and consumer: it reads `<hub>.commands` in batches and, per partition
and batch, decides every command (`infra.batch`) and writes the events, the
results, one state record per changed aggregate and the consumer offset in one
Kafka transaction. It owns no business rule and no decision: those are the hub's
`handle`, `infra.hub.decide` and `infra.batch`.

Why not faust any more: measured on this machine, faust's per-record stream and
table plumbing capped the wallet at ~1,100–1,450 commands/s (README, Benchmarks);
the batch here commits as soon as it is decided, with no timer.

Fencing: each command partition has its own transactional id
(`<group>-0-<partition>`, the id faust used, so an upgrade fences a faust worker
too). Whoever is assigned a partition starts that producer first — which aborts
and fences a previous owner's open transaction — and only then reads the
partition's state back, so it never decides on a state a zombie can still change.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from base.settings import Settings
from infra import metrics
from infra.batch import (
    AGGREGATE_HEADER,
    MAX_BATCH_BYTES,
    AggregateCache,
    BatchDecider,
    Incoming,
    Outgoing,
    Parsed,
    PartitionMemory,
    outcome_key,
)
from infra.consumers import fetch_options
from infra.dlq import DeadLetters
from infra.hub import HubSpec
from infra.ops import OpsServer
from infra.outage import PLATFORM_OUTAGE, TakeoverFailed
from infra.provenance import EventKeys
from infra.service import serve_until_stopped
from infra.topics import changelog_topic, processor_app_id
from schemas.codec import Codec

log = structlog.get_logger(__name__)


@dataclass
class OwnedPartition:
    """A command partition this process owns: its transactional producer and memory."""

    tp: TopicPartition
    producer: AIOKafkaProducer
    memory: PartitionMemory
    next_offset: int = -1


class AggregateProcessor:
    """One hub's processor. `run()` blocks until SIGTERM/SIGINT; broker outages
    restart its lifetime in place (state comes back from the changelog)."""

    def __init__(self, hub: HubSpec, settings: Settings, codec: Codec, answer_topics: Collection[str] = ()):
        """`answer_topics`: where a command's result may be sent back besides the
        results topic (`infra.hub.answer_topics`: the commands topics of the hubs
        that read answers, the Saga hub's)."""
        self.hub, self.settings, self.codec = hub, settings, codec
        self.process_name = f"{hub.name}-processor"
        self.group_id = settings.topic(processor_app_id(hub))
        self.commands_topic = settings.topic(hub.topic("commands"))
        self.results_topic = settings.topic(hub.topic("command-results"))
        self.changelog = settings.topic(changelog_topic(hub, "aggregate_states"))
        topics = {kind: settings.topic(hub.topic(kind)) for kind in ("events", "command-results")}
        dead_letters = DeadLetters(
            None, codec, self.process_name, settings.topic(hub.topic("commands.dlq")), event="dead-lettering command record"
        )
        self.cache = AggregateCache(settings.aggregate_cache_size)
        self.decider = BatchDecider(
            hub,
            codec,
            topics,
            dead_letters,
            self.cache,
            topic_of=settings.topic,
            answer_topics=answer_topics,
            event_keys=EventKeys.of(settings, hub.name),
        )
        self.owned: dict[TopicPartition, OwnedPartition] = {}
        self.handled = 0
        self._lock = asyncio.Lock()
        self._reading = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._partitioner = DefaultPartitioner()
        self._partitions: dict[str, list[int]] = {}

    def run(self) -> None:
        asyncio.run(self.serve())

    async def serve(self) -> None:
        ops = OpsServer(
            self.settings.ops_host,
            self.settings.ops_port_for("processor", self.hub.name),
            self.process_name,
            {"kafka_consumer": lambda: self._consumer is not None},
        )
        await serve_until_stopped(self.process_name, self.lifetime, ops, PLATFORM_OUTAGE, lambda: {"handled": self.handled})

    async def lifetime(self) -> None:
        s = self.settings
        consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=self.group_id,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.processor_batch_max,
            **fetch_options(s),
            # A killed worker's partitions move on after this, not after a minute.
            session_timeout_ms=10000,
            heartbeat_interval_ms=2000,
        )
        consumer.subscribe([self.commands_topic], listener=_Ownership(self, consumer))
        self._reader = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap, group_id=None, isolation_level="read_committed", enable_auto_commit=False
        )
        try:
            await self._reader.start()
            await consumer.start()
            self._consumer = consumer
            log.info("processor started", hub=self.hub.name, group=self.group_id)
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=s.processor_batch_max)
                if not batches:
                    continue
                async with self._lock:
                    if not_owned := consumer.assignment() - self.owned.keys():
                        raise TakeoverFailed(f"assigned but not taken over: {sorted(tp.partition for tp in not_owned)}")
                    owned = [(self.owned[tp], records) for tp, records in batches.items() if tp in self.owned]
                    tasks = [asyncio.create_task(self._handle(part, records)) for part, records in owned]
                    try:
                        await asyncio.gather(*tasks)
                    except BaseException:
                        # One failed partition ends them all before the lifetime does: no orphan
                        # batch may outlive its producer (and a stray cancellation still surfaces).
                        for task in tasks:
                            task.cancel()
                        await asyncio.gather(*tasks, return_exceptions=True)
                        raise
                    self._record_lag(consumer, [part.tp for part, _ in owned])
        finally:
            self._consumer = None
            await consumer.stop()
            await self._release(list(self.owned))
            await self._reader.stop()

    # -- one batch of one partition -----------------------------------------

    async def _handle(self, part: OwnedPartition, consumed: list) -> None:
        started = time.perf_counter()
        records = [
            Incoming(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers or ()))
            for r in consumed
            if r.offset >= part.next_offset
        ]
        if not records:
            return
        items = [self.decider.parse(record) for record in records]
        stored = await self._stored_results(part, items)
        batch = self.decider.decide(part.memory, items, stored)
        states = self.decider.state_records(batch, self.changelog)
        producer = part.producer
        await producer.begin_transaction()
        try:
            offsets = await self._send(producer, part.tp.partition, [*batch.outgoing, *states])
            await producer.send_offsets_to_transaction({part.tp: records[-1].offset + 1}, self.group_id)
            await producer.commit_transaction()
        except BaseException:
            # Whatever broke, this lifetime's memory may be ahead of Kafka: the
            # restart reads it back from the changelog.
            self.cache.clear()
            raise
        part.next_offset = records[-1].offset + 1
        self.decider.committed(part.memory, batch, {r.key: r.value for r in states}, offsets)
        self.handled += len(records)
        for label, n in batch.counts.items():
            metrics.RECORDS_PROCESSED.labels(self.process_name, self.hub.name, label).inc(n)
        for record in batch.outgoing:
            if record.topic == self.decider.events_topic:
                event_type = next((v for k, v in record.headers if k == "event_type"), b"").decode()
                metrics.EVENTS_WRITTEN.labels(self.hub.name, event_type).inc()
        metrics.LATENCY.labels(self.process_name, self.hub.name).observe(time.perf_counter() - started)

    async def _send(self, producer: AIOKafkaProducer, partition: int, records: list[Outgoing]) -> dict[int, int]:
        """Appends the records per topic partition to producer batches (one per topic
        partition unless it overflows), submits them and waits until they are stored
        (still inside the transaction); returns index in `records` → offset."""
        batches: list[tuple[str, int, Any]] = []
        current: dict[tuple[str, int], Any] = {}
        where: list[tuple[Any, int]] = []
        for record in records:
            target = (record.topic, await self._partition_of(producer, record) if record.keyed else partition)
            builder = current.get(target)
            meta = builder.append(timestamp=None, key=record.key, value=record.value, headers=record.headers) if builder else None
            if meta is None:
                builder = current[target] = producer.create_batch()
                batches.append((*target, builder))
                meta = builder.append(timestamp=None, key=record.key, value=record.value, headers=record.headers)
                if meta is None:
                    raise ValueError(f"a record of {len(record.value)} bytes does not fit a producer batch")
            where.append((builder, meta.offset))
        futures = [await producer.send_batch(builder, topic, partition=p) for topic, p, builder in batches]
        base = {
            id(builder): stored.offset for (_, _, builder), stored in zip(batches, await asyncio.gather(*futures), strict=True)
        }
        return {index: base[id(builder)] + relative for index, (builder, relative) in enumerate(where)}

    async def _partition_of(self, producer: AIOKafkaProducer, record: Outgoing) -> int:
        """The partition Kafka's default partitioner gives the record's key: where
        any other producer of that aggregate (a command client) puts it too."""
        partitions = self._partitions.get(record.topic)
        if partitions is None:
            found = await producer.partitions_for(record.topic)
            partitions = self._partitions[record.topic] = sorted(found)
        return self._partitioner(record.key, partitions, partitions)

    async def _stored_results(self, part: OwnedPartition, items: list) -> dict[bytes, bytes]:
        """The first results of the repeated command ids in `items`, read back from
        the results topic where an earlier batch stored them."""
        wanted = {
            item.outcome_key: part.memory.outcomes[item.outcome_key][1]
            for item in items
            if isinstance(item, Parsed) and item.outcome_key in part.memory.outcomes
        }
        if not wanted:
            return {}
        tp = TopicPartition(self.results_topic, part.tp.partition)
        found: dict[bytes, bytes] = {}
        assert self._reader is not None
        async with self._reading:  # partitions' batches run concurrently; the reader is one
            self._reader.assign([tp])
            for key, offset in sorted(wanted.items(), key=lambda kv: kv[1]):
                self._reader.seek(tp, offset)
                record = await asyncio.wait_for(self._reader.getone(tp), 30)
                found[key] = record.value
        return found

    # -- owning partitions --------------------------------------------------

    async def _own(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        s = self.settings
        producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap,
            transactional_id=f"{self.group_id}-0-{tp.partition}",
            enable_idempotence=True,
            acks="all",
            max_batch_size=MAX_BATCH_BYTES,
            max_request_size=2 * MAX_BATCH_BYTES,
        )
        memory = PartitionMemory(s.dedup_window_s, s.dedup_max_per_partition)
        try:
            await producer.start()  # InitProducerId: fences the partition's previous owner
            await self._restore(tp.partition, memory)
            # The group's offset is read again now that the previous owner's last
            # transaction is settled: one fetched before that could predate it.
            committed = await consumer.committed(tp)
        except BaseException:
            await producer.stop()
            raise
        if committed is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)
        self.owned[tp] = OwnedPartition(tp, producer, memory, next_offset=committed or 0)
        log.info("partition owned", partition=tp.partition, aggregates=len(memory.states), outcomes=len(memory.outcomes))

    async def _restore(self, partition: int, memory: PartitionMemory) -> None:
        """Reads the partition's whole state changelog and its results of the dedup
        window (bounded in time and count) back into memory."""
        assert self._reader is not None
        reader = self._reader
        states = TopicPartition(self.changelog, partition)
        results = TopicPartition(self.results_topic, partition)
        reader.assign([states, results])
        ends = await reader.end_offsets([states, results])
        starts = await reader.beginning_offsets([states, results])
        reader.seek(states, starts[states])
        since = await reader.offsets_for_times({results: int((time.time() - memory.window_s) * 1000)})
        first = since[results].offset if since[results] is not None else ends[results]
        reader.seek(results, max(first, starts[results], ends[results] - memory.max_outcomes))
        pending = {tp for tp in (states, results) if await reader.position(tp) < ends[tp]}
        while pending:
            for tp, records in (await reader.getmany(*pending, timeout_ms=1000)).items():
                for r in records:
                    if tp == states:
                        if r.value is None:
                            memory.states.pop(r.key, None)
                        else:
                            memory.states[r.key] = r.value
                    elif r.key is not None:
                        memory.remember(outcome_key(self._aggregate_of(r), r.key.decode()), r.timestamp / 1000, r.offset)
            pending = {tp for tp in pending if await reader.position(tp) < ends[tp]}
        memory.forget_expired(time.time())

    def _aggregate_of(self, result) -> str:
        for name, value in result.headers or ():
            if name == AGGREGATE_HEADER:
                return value.decode()
        return self.codec.decode(result.value).record["aggregate_id"]  # written before the header existed

    async def _release(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            part = self.owned.pop(tp, None)
            if part is not None:
                await part.producer.stop()
        self.cache.clear()

    def _record_lag(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        for tp in tps:
            highwater = consumer.highwater(tp)
            if highwater is not None and tp in self.owned:
                lag = max(highwater - self.owned[tp].next_offset, 0)
                metrics.LAG.labels(self.process_name, tp.topic, str(tp.partition)).set(lag)


class _Ownership(ConsumerRebalanceListener):
    """Partitions change hands only between batches (the processor's lock)."""

    def __init__(self, processor: AggregateProcessor, consumer: AIOKafkaConsumer):
        self.processor, self.consumer = processor, consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self.processor._lock:
            await self.processor._release(list(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        async with self.processor._lock:
            for tp in assigned:
                if tp not in self.processor.owned:
                    await self.processor._own(self.consumer, tp)
        log.info("partitions assigned", processor=self.processor.process_name, partitions=len(assigned))
