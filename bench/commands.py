"""Command processing with exactly-once: CreditFunds commands pipelined through
the real `poseidon processor wallet` via CommandClient, against a raw consume →
produce → commit loop with the processor's own fan-out (records and sizes per
command, counted on the topics it wrote in the same run)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from base.settings import Settings
from hubs.wallet.commands import CreditFunds, OpenWallet
from hubs.wallet.hub import HUB
from infra.command_client import CommandClient, new_meta
from infra.consumers import group_consumer
from infra.hub import HubSpec
from infra.topics import TopicSpec, ensure_topics, hub_topics, partitions_of
from schemas.codec import Codec

RAW_GROUP = "bench.raw-loop"
RAW_PREFIX = "bench.raw."
"""The raw loop writes `<hub topic>`'s share of the fan-out to `bench.raw.<hub topic>`."""
POLL_RECORDS = 500
"""The raw loop's largest poll (so its largest transaction): the Java consumer's default max.poll.records."""
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


@dataclass(frozen=True)
class Output:
    """What the processor wrote to one of its hub's topics, per command it consumed."""

    topic: str
    """Logical name (from `infra.topics.hub_topics`)."""
    per_command: float
    """Records written there per command consumed (fractional when a batch writes one for many)."""
    key_bytes: float
    value_bytes: float
    header_bytes: float
    """Mean sizes of those records; headers as the sum of their names' and values' bytes."""

    def figures(self) -> dict:
        return {
            "per_command": round(self.per_command, 3),
            "key_bytes": round(self.key_bytes, 1),
            "value_bytes": round(self.value_bytes, 1),
            "header_bytes": round(self.header_bytes, 1),
        }


async def read_back(settings: Settings, topics: list[str], limit: int | None = None, timeout: float = 60) -> AsyncIterator:
    """Every committed record of `topics` (physical names) from the beginning to the
    end offsets taken now, or the first `limit`; raises if the end is not reached in time."""
    partitions = [TopicPartition(t, p) for t, ps in (await partitions_of(settings, topics)).items() for p in ps]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        deadline, seen = time.monotonic() + timeout, 0
        # Positions move past transaction markers too, so they reach the read_committed ends.
        while not all([await consumer.position(tp) >= ends[tp] for tp in partitions]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topics}: not read to the end offsets within {timeout:.0f}s")
            for batch in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for record in batch:
                    yield record
                    seen += 1
                    if limit is not None and seen >= limit:
                        return
    finally:
        await consumer.stop()


async def processor_fan_out(settings: Settings, hub: HubSpec = HUB) -> tuple[int, list[Output]]:
    """(commands on the hub's command topic, what the processor wrote per command to
    each of the hub's other topics). Taken from the topics, not from the processor's
    code, so the raw loop follows whatever the processor writes today."""
    commands = hub.topic("commands")
    consumed = sum([1 async for _ in read_back(settings, [settings.topic(commands)], timeout=120)])
    if not consumed:
        raise RuntimeError(f"no records on {commands}")
    outputs = []
    for spec in hub_topics(hub):
        if spec.name == commands:
            continue
        count = keys = values = headers = 0
        async for r in read_back(settings, [settings.topic(spec.name)], timeout=120):
            count += 1
            keys += len(r.key or b"")
            values += len(r.value or b"")
            headers += sum(len(k.encode()) + len(v or b"") for k, v in r.headers)
        if count:
            outputs.append(Output(spec.name, count / consumed, keys / count, values / count, headers / count))
    return consumed, outputs


def records_due(per_command: float, index: int) -> int:
    """How many records the command at `index` (0-based, in consuming order) writes:
    whole fan-outs every time, a fractional one spread so that after n commands
    exactly floor(n × per_command) have been written."""
    return math.floor((index + 1) * per_command) - math.floor(index * per_command)


def resized(key: bytes, size: int) -> bytes:
    """`key` repeated or cut to `size` bytes: same partition for the same aggregate, mean size kept."""
    return (key * (size // max(len(key), 1) + 1))[:size] if key else b"k" * size


async def raw_loop(settings: Settings, outputs: list[Output], commands: int, warm_up: int, run_id: str) -> dict:
    """Baseline: what the processor does, without the processor. A consumer in a group
    (read_committed) reads the same command records; per poll batch and partition one
    transaction produces, per command, the processor's fan-out (same number of records
    per topic, same mean key, value and header sizes), sends the consumed offsets to
    the transaction and commits. The clock starts once the first `warm_up` commands
    (the processor's warm-up: opening and first credits) have been handled."""
    payloads = {
        o.topic: (
            settings.topic(RAW_PREFIX + o.topic),
            round(o.key_bytes),
            bytes(round(o.value_bytes)),
            [("h", bytes(max(round(o.header_bytes) - 1, 0)))] if o.header_bytes >= 1 else [],
        )
        for o in outputs
    }
    group = settings.topic(RAW_GROUP)
    consumer = group_consumer(settings, [HUB.topic("commands")], RAW_GROUP, max_poll_records=POLL_RECORDS)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, transactional_id=f"{run_id}raw-loop", enable_idempotence=True, acks="all"
    )
    await producer.start()
    await consumer.start()
    consumed = produced = transactions = 0

    async def handle_poll(max_records: int) -> None:
        nonlocal consumed, produced, transactions
        for tp, records in (await consumer.getmany(timeout_ms=500, max_records=max_records)).items():
            async with producer.transaction():
                for record in records:
                    for o in outputs:
                        topic, key_size, value, headers = payloads[o.topic]
                        for _ in range(records_due(o.per_command, consumed)):
                            await producer.send(topic, value, key=resized(record.key, key_size), headers=headers)
                            produced += 1
                    consumed += 1
                await producer.send_offsets_to_transaction({tp: records[-1].offset + 1}, group)
            transactions += 1

    try:
        deadline = time.monotonic() + 300
        while consumed < warm_up and time.monotonic() < deadline:
            await handle_poll(min(POLL_RECORDS, warm_up - consumed))  # ends exactly at the warm-up's last command
        started, warm_transactions = time.perf_counter(), transactions
        while consumed < commands and time.monotonic() < deadline:
            await handle_poll(POLL_RECORDS)
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
        await producer.stop()
    if consumed < commands:
        raise TimeoutError(f"raw loop: only {consumed} of {commands} commands consumed within 300 s")
    timed = commands - warm_up
    return {
        "commands": consumed,
        "timed_commands": timed,
        "seconds": round(elapsed, 3),
        "per_second": round(timed / elapsed, 1),
        "records_produced": produced,
        "commands_per_transaction": round(timed / max(transactions - warm_transactions, 1), 1),
        "fan_out_records_per_command": round(sum(o.per_command for o in outputs), 3),
        "fan_out": {o.topic: o.figures() for o in outputs},
    }


async def create_hub_topics(settings: Settings) -> None:
    """The hub's topics and the raw loop's copies of its output topics (same settings),
    long before they are written: brand-new partitions answer NotLeaderForPartition for a moment."""
    specs = hub_topics(HUB)
    specs += [TopicSpec(RAW_PREFIX + spec.name, spec.config) for spec in specs if spec.name != HUB.topic("commands")]
    await ensure_topics(settings, specs)
    await wait_for_leaders(settings, [settings.topic(spec.name) for spec in specs])


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
