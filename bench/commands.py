"""Command processing with exactly-once: CreditFunds commands pipelined through
the real `poseidon processor wallet` via CommandClient, against a raw aiokafka
transactional producer writing the same number of same-size records."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from base.settings import Settings
from hubs.wallet.commands import CreditFunds, OpenWallet
from hubs.wallet.hub import HUB
from infra.command_client import CommandClient, new_meta
from infra.hub import command_to_record
from infra.topics import TopicSpec, ensure_topics, hub_topics
from schemas.codec import Codec

RAW_TOPIC = "bench.raw-txn"
TXN_BATCH = 100
WARMUP_TRANSACTIONS = 20
SEND_WINDOW = 256


@dataclass(frozen=True)
class Wallet:
    tenant_id: str
    wallet_id: str


def credit(wallet: Wallet, amount: int) -> CreditFunds:
    return CreditFunds(meta=new_meta(wallet.wallet_id, wallet.tenant_id, actor="bench"), amount=amount, reference="bench")


async def _settle(futures, timeout: float, what: str) -> list:
    try:
        return await asyncio.wait_for(asyncio.gather(*futures), timeout)
    except TimeoutError:
        done = sum(1 for f in futures if f.done())
        raise TimeoutError(f"{what}: only {done} of {len(futures)} results within {timeout:.0f}s") from None


async def open_wallets(client: CommandClient, wallets: list[Wallet], first_timeout: float) -> None:
    """Opens and credits every wallet once. Also the processor's warm-up: the
    first results only come once its consumer group has formed."""
    opens = [OpenWallet(meta=new_meta(w.wallet_id, w.tenant_id, actor="bench"), currency="EUR") for w in wallets]
    results = await _settle([await client.submit(c) for c in opens], first_timeout, "opening wallets")
    results += await _settle([await client.submit(credit(w, 1_000)) for w in wallets], 60, "first credits")
    refused = [r for r in results if not r.accepted]
    if refused:
        raise RuntimeError(f"{len(refused)} warm-up commands refused, e.g. {refused[0].rejection}: {refused[0].reason}")


async def pipelined_credits(client: CommandClient, wallets: list[Wallet], count: int) -> dict:
    """Submits every command without waiting, then awaits all results; the clock
    runs from the first send until the last result has arrived."""
    commands = [credit(wallets[i % len(wallets)], 1 + i % 97) for i in range(count)]
    started = time.perf_counter()
    futures = await submit_all(client, commands)
    sent = time.perf_counter()
    results = await _settle(futures, 300, "pipelined credits")
    elapsed = time.perf_counter() - started
    accepted = sum(1 for r in results if r.accepted)
    return {
        "commands": count,
        "accepted": accepted,
        "seconds": round(elapsed, 3),
        "send_seconds": round(sent - started, 3),
        "per_second": round(count / elapsed, 1),
    }


async def submit_all(client: CommandClient, commands: list, window: int = SEND_WINDOW) -> list:
    """`window` senders share one queue: the producer batches their records, and
    no more than `window` sends wait on it at once (thousands of waiters on one
    producer spend the client's CPU on wake-ups, not on sending)."""
    futures: list = [None] * len(commands)
    queue = iter(enumerate(commands))

    async def sender() -> None:
        for i, command in queue:
            futures[i] = await client.submit(command)

    await asyncio.gather(*(sender() for _ in range(window)))
    return futures


def same_size_records(codec: Codec, wallets: list[Wallet], count: int) -> list[tuple[bytes, bytes]]:
    """What CommandClient would put on the wire for `count` credits: key and Avro value."""
    records = []
    for i in range(count):
        c = credit(wallets[i % len(wallets)], 1 + i % 97)
        records.append((c.meta.aggregate_id.encode(), codec.encode(c.avro_name(), command_to_record(c))))
    return records


async def raw_transactional_produce(settings: Settings, records: list[tuple[bytes, bytes]], run_id: str) -> dict:
    """Baseline: one transactional producer, TXN_BATCH records per transaction."""
    await ensure_topics(settings, [TopicSpec(RAW_TOPIC, {"cleanup.policy": "delete"})])
    topic = settings.topic(RAW_TOPIC)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        transactional_id=f"{run_id}-raw-txn",
        enable_idempotence=True,
        acks="all",
    )
    await producer.start()
    try:
        # Untimed warm-up (metadata, producer id, the broker's transaction path),
        # as the processor gets its warm-up from opening the wallets.
        for _ in range(WARMUP_TRANSACTIONS):
            async with producer.transaction():
                for key, value in records[:TXN_BATCH]:
                    await producer.send(topic, value, key=key, headers=[("correlation_id", key)])
        started = time.perf_counter()
        for i in range(0, len(records), TXN_BATCH):
            async with producer.transaction():
                for key, value in records[i : i + TXN_BATCH]:
                    await producer.send(topic, value, key=key, headers=[("correlation_id", key)])
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    return {
        "records": len(records),
        "record_bytes": round(sum(len(v) for _, v in records) / len(records), 1),
        "per_transaction": TXN_BATCH,
        "seconds": round(elapsed, 3),
        "per_second": round(len(records) / elapsed, 1),
    }


async def create_hub_topics(settings: Settings) -> None:
    await ensure_topics(settings, hub_topics(HUB))
    await wait_for_leaders(settings, [settings.topic(spec.name) for spec in hub_topics(HUB)])


async def start_client(settings: Settings, codec: Codec) -> CommandClient:
    client = CommandClient(settings, codec, [HUB])
    await client.start()
    return client


async def wait_for_leaders(settings: Settings, topics: list[str], timeout: float = 30) -> None:
    """New topics answer NotLeaderForPartition for a moment; start once they do not."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = await admin.describe_topics(topics)
            if all(
                t["error_code"] == 0 and t["partitions"] and all(p["leader"] >= 0 for p in t["partitions"]) for t in described
            ):
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"topics {topics} have no leaders after {timeout:.0f}s")
    finally:
        await admin.close()
