"""The dead-letter view: reads every `*.dlq` topic of the namespace with
read_committed (never committing offsets: the dashboard is a reader, not a
consumer group), and re-drives one record by producing its original key and
payload to its source topic. A re-drive is audited twice: headers on the
re-produced record (`redriven-by`, `redrive-reason`, `redriven-from`) and a
structured log line with the operator id."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from base.pii import MASK, mask_fields, mask_text
from base.settings import Settings
from infra.dlq import DEAD_LETTER_SCHEMA
from infra.topics import partitions_of
from sagas.dashboard.rules import mask_summary
from schemas.codec import Codec, DecodeError

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class DeadLetterView:
    topic: str
    """The dead-letter topic (physical name)."""
    partition: int
    offset: int
    source_topic: str
    reason: str
    error_type: str
    processor: str
    failed_at: datetime | None
    summary: str
    """Masked, shortened view of the original payload."""


SUMMARY_SOURCE_BYTES = 64 * 1024
"""How much of an undecodable payload is read for its summary: masked whole, then cut
(cutting first could leave half an address that no pattern recognises)."""


def payload_summary(codec: Codec, payload: bytes) -> str:
    try:
        decoded = codec.decode(payload)
    except DecodeError:  # an undecodable payload is why many letters are here
        text = payload[:SUMMARY_SOURCE_BYTES].decode("utf-8", errors="replace")
        parsed = mask_fields(text)  # a JSON body is masked field by field (allow-list); other text by shape
        shown = parsed if parsed != MASK else mask_text(text)
        return mask_summary(f"{len(payload)} bytes: {shown}")
    fields = {k: v for k, v in decoded.record.items() if k not in ("envelope", "meta")}
    masked = json.dumps(mask_fields(fields), ensure_ascii=False, default=str)
    return mask_summary(f"{decoded.name.rsplit('.', 1)[-1]} {masked}")


class DeadLetters:
    def __init__(self, settings: Settings, codec: Codec):
        self.settings, self.codec = settings, codec

    async def topics(self) -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        await admin.start()
        try:
            names = await admin.list_topics()
        finally:
            await admin.close()
        prefix = self.settings.topic_prefix
        return sorted(t for t in names if t.endswith(".dlq") and t.startswith(prefix))

    async def _records(self, limit_per_topic: int) -> list[tuple[str, object]]:
        topics = await self.topics()
        if not topics:
            return []
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            isolation_level="read_committed",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        out = []
        try:
            parts = await partitions_of(self.settings, topics)
            partitions = [TopicPartition(t, p) for t in topics for p in sorted(parts.get(t, ()))]
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            starts = await consumer.beginning_offsets(partitions)
            pending = {}
            for tp in partitions:
                first = max(starts[tp], ends[tp] - limit_per_topic)
                if ends[tp] > first:
                    consumer.seek(tp, first)
                    pending[tp] = ends[tp]
                else:
                    consumer.pause(tp)
            while pending:
                batches = await consumer.getmany(timeout_ms=1000)
                if not batches:
                    break
                for tp, records in batches.items():
                    for record in records:
                        out.append((tp.topic, record))
                    if records and records[-1].offset + 1 >= pending.get(tp, 0):
                        pending.pop(tp, None)
                        consumer.pause(tp)
        finally:
            await consumer.stop()
        return out

    async def list(self, limit_per_topic: int = 100) -> list[DeadLetterView]:
        views = []
        for topic, record in await self._records(limit_per_topic):
            try:
                r = self.codec.decode(record.value).record
            except DecodeError as exc:
                views.append(
                    DeadLetterView(
                        topic, record.partition, record.offset, "", f"undecodable dead letter: {exc}", "DecodeError", "", None, ""
                    )
                )
                continue
            views.append(
                DeadLetterView(
                    topic=topic,
                    partition=record.partition,
                    offset=record.offset,
                    source_topic=r["source_topic"],
                    reason=r["reason"],
                    error_type=r["error_type"],
                    processor=r["processor"],
                    failed_at=r["failed_at"],
                    summary=payload_summary(self.codec, r["payload"]),
                )
            )
        views.sort(key=lambda v: (v.failed_at is None, v.failed_at), reverse=True)
        return views

    async def redrive(self, topic: str, partition: int, offset: int, *, operator: str, reason: str) -> str:
        """Re-produce the original key and payload of one dead letter to its
        source topic; returns that topic."""
        if not topic.endswith(".dlq") or not topic.startswith(self.settings.topic_prefix):
            raise ValueError("not a dead-letter topic of this platform")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            isolation_level="read_committed",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        try:
            tp = TopicPartition(topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            batches = await consumer.getmany(tp, timeout_ms=5000, max_records=1)
            records = batches.get(tp) or []
            if not records or records[0].offset != offset:
                raise LookupError(f"no dead letter at {topic}/{partition}@{offset}")
            letter = self.codec.decode(records[0].value).record
        finally:
            await consumer.stop()
        source = letter["source_topic"]
        if not source.startswith(self.settings.topic_prefix) or source.endswith(".dlq"):
            raise ValueError(f"source topic {source!r} is not a platform topic")
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            await producer.send_and_wait(
                source,
                letter["payload"],
                key=letter["key"],
                headers=[
                    ("redriven-by", operator.encode()),
                    ("redrive-reason", reason.encode()),
                    ("redriven-from", f"{topic}/{partition}@{offset}".encode()),
                ],
            )
        finally:
            await producer.stop()
        log.info(
            "dead letter re-driven", operator=operator, reason=reason, dlq=topic, partition=partition, offset=offset, to=source
        )
        return source


__all__ = ["DEAD_LETTER_SCHEMA", "DeadLetterView", "DeadLetters"]
