"""The dead-letter record every consumer writes to `<source topic>.dlq`: the
original key and bytes, whole, with the reason and where they came from; and
the one publisher that builds, sends, counts and logs it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple, Protocol

import structlog
from aiokafka import AIOKafkaProducer

from infra import metrics
from schemas.codec import Codec

log = structlog.get_logger(__name__)

DEAD_LETTER_SCHEMA = "poseidon.DeadLetter"
MAX_REASON = 2000


class Source(Protocol):
    """What a dead letter keeps of the record that failed (an aiokafka ConsumerRecord is one)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Origin(NamedTuple):
    """A `Source` that is not a consumed record (an HTTP body, a faust event's coordinates)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Letter(NamedTuple):
    """One encoded dead letter, ready to send (or to put in a transaction)."""

    topic: str
    """Physical dead-letter topic."""
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    source: Source
    reason: str
    error_type: str


def dead_letter(
    codec: Codec,
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    reason: str,
    error_type: str,
    processor: str,
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Encoded `poseidon.DeadLetter` value and its headers (reason copied for tooling)."""
    record = {
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "reason": reason[:MAX_REASON],
        "error_type": error_type,
        "key": key,
        "payload": value or b"",
        "processor": processor,
        "failed_at": datetime.now(UTC),
    }
    headers = [("content-type", b"application/vnd.poseidon.avro"), ("reason", reason[:500].encode())]
    return codec.encode(DEAD_LETTER_SCHEMA, record), headers


class DeadLetters:
    """The one dead-letter publisher of a process: `publish(record, reason,
    error_type)` parks the record on `topic` (physical name), or on
    `<source topic>.dlq` when no topic is given, counts it in
    `poseidon_dead_letters_total` and logs `event`. A process that must send the
    letter its own way (in a Kafka transaction, through a producer that answers
    503) builds it with `letter` and reports it with `parked` once it is stored."""

    def __init__(
        self,
        producer: AIOKafkaProducer | None,
        codec: Codec,
        processor: str,
        topic: str | None = None,
        *,
        event: str = "record dead-lettered",
    ):
        self.producer, self.codec, self.processor, self.topic, self.event = producer, codec, processor, topic, event

    def letter(self, source: Source, reason: str, error_type: str, *, headers: tuple[tuple[str, bytes], ...] = ()) -> Letter:
        value, letter_headers = dead_letter(
            self.codec,
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
            key=source.key,
            value=source.value,
            reason=reason,
            error_type=error_type,
            processor=self.processor,
        )
        topic = self.topic or f"{source.topic}.dlq"
        return Letter(topic, source.key, value, [*letter_headers, *headers], source, reason, error_type)

    def parked(self, letter: Letter) -> None:
        metrics.DEAD_LETTERS.labels(letter.topic).inc()
        source = letter.source
        log.warning(
            self.event,
            topic=source.topic,
            partition=source.partition,
            offset=source.offset,
            reason=letter.reason[:300],
            error_type=letter.error_type,
        )

    async def publish(self, source: Source, reason: str, error_type: str) -> None:
        assert self.producer is not None
        letter = self.letter(source, reason, error_type)
        await self.producer.send_and_wait(letter.topic, letter.value, key=letter.key, headers=letter.headers)
        self.parked(letter)
