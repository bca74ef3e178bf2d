"""Webhook ingress: signed Facebook POSTs against the real `poseidon ingress`,
against a bare aiohttp server driven by the same client, against a raw aiokafka
producer writing the very records ingress stored (same acks, idempotence and
linger), and Kafka's own ProducerPerformance for the broker's ceiling.
Starts no process itself: the runner does (bench/run.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from base.settings import Settings
from bench import procs
from bench.commands import read_back, wait_for_leaders
from bench.load import Post, Posted, closed_loop, http_figures, http_session, latency_figures, open_loop, post
from infra.ingress import INBOUND_TOPIC, max_record_bytes
from infra.topics import TopicSpec, ensure_topics, ingress_topics
from tests.standins.facebook import message_event, signed_webhook, webhook_body

APP_SECRET = "bench-app-secret"
"""POSEIDON_FACEBOOK_APP_SECRET of the ingress the bench starts; the bodies are signed with it."""
PAGE = "104857600777"
CONTACTS = 100
"""Distinct senders (PSIDs): ingress keys records by conversation, so they spread over partitions."""
RATE_UNLIMITED = "1000000"
"""POSEIDON_INGRESS_RATE_PER_S for the bench: one page sends all the load, and the
per-account limit (50/s by default) would answer 429 to nearly all of it."""
RAW_TOPIC = "bench.raw-ingress"
PERF_TOPIC = "bench.kafka-perf"
WARMUP_RECORDS = 200
Record = tuple[bytes | None, bytes, list[tuple[str, bytes]]]


def webhook_posts(count: int, secret: str = APP_SECRET, page: str = PAGE, contacts: int = CONTACTS, tag: str = "m") -> list[Post]:
    """`count` signed webhook POSTs, one message event each, as Facebook sends them.
    Message i is from PSID 24000000000000000 + i % contacts and says "<tag> <i>"."""
    posts = []
    for i in range(count):
        event = message_event(page, str(24_000_000_000_000_000 + i % contacts), f"{tag} {i}")
        posts.append(signed_webhook(webhook_body(event), secret))
    return posts


async def drive(url: str, bodies: Sequence[Post], connections: int, seconds: float, warmup: float, pid: int | None) -> dict:
    """Untimed warm-up, then `seconds` of closed-loop POSTs over `connections` connections."""
    async with http_session(connections) as session:
        await closed_loop(session, url, bodies, connections, warmup)
        with procs.CpuWindow(pid) as cpu:
            answers, elapsed = await closed_loop(session, url, bodies, connections, seconds)
    return {"connections": connections, **http_figures(answers, elapsed), "cpu": cpu.figures}


async def at_rate(url: str, bodies: Sequence[Post], rate: float, seconds: float, connections: int) -> dict:
    """Open loop: POST i is due at t0 + i/rate whatever happened to earlier ones;
    latency counts from when it was due (a stalled server cannot hide behind a
    client that slowed down with it)."""
    count = max(1, round(rate * seconds))
    async with http_session(connections) as session:

        async def send(i: int, due: float) -> Posted:
            answer = await post(session, url, i, bodies[i % len(bodies)])
            return dataclasses.replace(answer, seconds=time.perf_counter() - due)

        started = time.perf_counter()
        answers, late = await open_loop(send, rate, count)
    return {"target_rate": round(rate, 1), "sent_late": late, **http_figures(answers, time.perf_counter() - started)}


async def create_topics(settings: Settings) -> None:
    inbound = next(spec for spec in ingress_topics() if spec.name == INBOUND_TOPIC)
    specs = [*ingress_topics(), TopicSpec(RAW_TOPIC, inbound.config), TopicSpec(PERF_TOPIC, inbound.config)]
    await ensure_topics(settings, specs)
    await wait_for_leaders(settings, [settings.topic(s.name) for s in specs])


async def stored_records(settings: Settings, limit: int) -> list[Record]:
    """Up to `limit` records exactly as ingress stored them (key, value, headers)."""
    return [(r.key, r.value, list(r.headers)) async for r in read_back(settings, [settings.topic(INBOUND_TOPIC)], limit)]


def raw_producer(settings: Settings) -> AIOKafkaProducer:
    """The producer ingress runs (infra/ingress.py `Ingress._connect`), settings for settings."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=1,
        max_request_size=max_record_bytes(settings),
        client_id="bench-raw-ingress",
    )


async def raw_produce(settings: Settings, records: Sequence[Record], count: int, in_flight: int | None = None) -> dict:
    """Baseline: `count` of the stored records (cycled) through the ingress's producer
    settings. in_flight None: all sent at once, then every ack awaited (the
    producer's ceiling). in_flight N: N senders, each awaiting its ack before the
    next send, as N concurrent webhook requests do."""
    topic = settings.topic(RAW_TOPIC)
    producer = raw_producer(settings)
    await producer.start()
    try:
        for key, value, headers in records[:WARMUP_RECORDS]:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
        order = [records[i % len(records)] for i in range(count)]
        latencies: list[float] = []
        with procs.CpuWindow() as cpu:
            started = time.perf_counter()
            if in_flight is None:
                acks = [await producer.send(topic, value, key=key, headers=headers) for key, value, headers in order]
                await asyncio.gather(*acks)
            else:
                queue = iter(order)

                async def sender() -> None:
                    for key, value, headers in queue:
                        sent = time.perf_counter()
                        await (await producer.send(topic, value, key=key, headers=headers))
                        latencies.append(time.perf_counter() - sent)

                await asyncio.gather(*(sender() for _ in range(in_flight)))
            elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    figures = {
        "records": count,
        "record_bytes": round(sum(len(v) for _, v, _ in order) / len(order), 1),
        "in_flight": in_flight or "all",
        "seconds": round(elapsed, 3),
        "per_second": round(count / elapsed, 1),
        "cpu": cpu.figures,
    }
    if latencies:
        figures.update(latency_figures(latencies))
    return figures


_PERF_SUMMARY = re.compile(
    r"(?P<records>\d+) records sent, (?P<per_second>[\d.]+) records/sec \((?P<mb_per_second>[\d.]+) MB/sec\), "
    r"(?P<avg_ms>[\d.]+) ms avg latency, (?P<max_ms>[\d.]+) ms max latency, (?P<p50_ms>\d+) ms 50th, "
    r"(?P<p95_ms>\d+) ms 95th, (?P<p99_ms>\d+) ms 99th"
)


def parse_producer_performance(output: str) -> dict:
    """The final summary line of Kafka's ProducerPerformance, as numbers."""
    found = list(_PERF_SUMMARY.finditer(output))
    if not found:
        raise RuntimeError(f"no ProducerPerformance summary in its output:\n{output[-600:]}")
    return {k: float(v) if "." in v else int(v) for k, v in found[-1].groupdict().items()}


async def producer_performance(settings: Settings, records: int, record_size: int) -> dict:
    """The broker's ceiling for acks=all writes of this record size: Kafka's own Java
    producer (its default batching, idempotent, unthrottled) on a topic like ingress.inbound."""
    props = [f"bootstrap.servers={settings.kafka_bootstrap}", "acks=all", "enable.idempotence=true"]
    args = ["--topic", settings.topic(PERF_TOPIC), "--num-records", str(records), "--record-size", str(record_size)]
    args += ["--throughput", "-1", "--producer-props", *props]
    done = await asyncio.to_thread(procs.kafka_tool, "org.apache.kafka.tools.ProducerPerformance", args, 180)
    if done.returncode != 0:
        raise RuntimeError(f"ProducerPerformance failed ({done.returncode}): {(done.stdout + done.stderr)[-600:]}")
    return {"record_size": record_size, "acks": "all", **parse_producer_performance(done.stdout)}
