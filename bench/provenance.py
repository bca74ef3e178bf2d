"""What signing events costs (infra/provenance.py): the processor's HMAC per event
and a reader's check per event, timed in this process over real stored events of
the run, against the processor's CPU per command in the same run. The processor
itself always signs (there is no off switch to compare with: an unsigned platform
is not one we ship), so the cost is reported as a share of the processor's CPU."""

from __future__ import annotations

import hashlib
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from base.settings import Settings
from infra.provenance import MAC_HEADER, EventKeys


async def stored_events(settings: Settings, limit: int = 2000) -> list:
    topic = settings.topic("wallet.events")
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        numbers = consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)
        parts = [TopicPartition(topic, p) for p in sorted(numbers)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        records: list = []
        while len(records) < limit:
            batch = await consumer.getmany(timeout_ms=2000, max_records=limit)
            if not batch:
                break
            records += [r for rs in batch.values() for r in rs]
        return records[:limit]
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # the topic was created by this run: ask once more
    return consumer.partitions_for_topic(topic) or {0}


async def measure(settings: Settings, processor_cpu_us_per_command: float | None, rounds: int = 20) -> dict:
    records = await stored_events(settings)
    if not records:
        raise RuntimeError("no stored wallet events to time signing on")
    keys = EventKeys.of(settings, "wallet")
    values = [r.value for r in records]
    headers = [list(r.headers) for r in records]
    assert all(any(k == MAC_HEADER for k, _ in h) for h in headers), "stored events carry no MAC"
    started = time.process_time()
    for _ in range(rounds):
        for value in values:
            keys.sign(hashlib.sha256(value).digest())
    sign_us = (time.process_time() - started) / (rounds * len(values)) * 1e6
    started = time.process_time()
    for _ in range(rounds):
        for value, header in zip(values, headers, strict=True):
            if keys.problem(value, header):
                raise RuntimeError("a stored event of this run does not verify")
    verify_us = (time.process_time() - started) / (rounds * len(values)) * 1e6
    figures = {
        "events_timed": len(values) * rounds,
        "sign_us_per_event": round(sign_us, 2),
        "verify_us_per_event": round(verify_us, 2),
        "mean_event_bytes": round(sum(map(len, values)) / len(values)),
    }
    if processor_cpu_us_per_command:
        # A wallet credit writes one event: its signature against everything the processor spends on the command.
        figures["sign_share_of_processor_cpu_percent"] = round(100 * sign_us / processor_cpu_us_per_command, 2)
    return figures
