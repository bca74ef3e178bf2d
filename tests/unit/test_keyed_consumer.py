"""The shared keyed consumer (infra.keyed): one key's records in order, keys at
once (bounded), a partition committed only up to what is handled, our own
dependencies waited out, anything else dead-lettered with its reason. The
consumer is a fake of the three aiokafka calls the loop makes (getmany, commit,
highwater); how it behaves against Kafka is tested through the router, the saga
driver and the spokes in tests/integration."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY

from infra.consumers import Handover
from infra.dlq import DEAD_LETTER_SCHEMA, DeadLetters
from infra.keyed import KeyedConsumer
from schemas.codec import Catalog, Codec

CODEC = Codec(Catalog.load())
TOPIC = "test.events"
TP0, TP1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


def record(offset: int, key: str, partition: int = 0) -> ConsumerRecord:
    return ConsumerRecord(TOPIC, partition, offset, 0, 0, key.encode(), f"{key}@{offset}".encode(), None, 0, 0, ())


def batches(*records: ConsumerRecord) -> dict[TopicPartition, list[ConsumerRecord]]:
    by_tp: dict[TopicPartition, list[ConsumerRecord]] = {}
    for r in records:
        by_tp.setdefault(TopicPartition(r.topic, r.partition), []).append(r)
    return by_tp


class FakeConsumer:
    """What the loop asks of an AIOKafkaConsumer: batches, commits, high-water marks, assignment."""

    def __init__(self, *polls: dict):
        self.polls, self.commits = list(polls), []

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        if not self.polls:
            await asyncio.sleep(3600)
        return self.polls.pop(0)

    async def commit(self, offsets: dict) -> None:
        self.commits.append(dict(offsets))

    def highwater(self, tp: TopicPartition) -> int:
        return 10

    def assignment(self) -> set[TopicPartition]:
        return {TP0, TP1}

    def committed(self, tp: TopicPartition) -> int | None:
        return max((c[tp] for c in self.commits if tp in c), default=None)


class FakeProducer:
    def __init__(self):
        self.sent: list[tuple[str, bytes, bytes | None, list]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None, headers=None) -> None:
        self.sent.append((topic, value, key, headers))


def keyed(consumer, handler, producer=None, **options) -> tuple[KeyedConsumer, str]:
    process = f"test-{uuid.uuid4().hex[:8]}"
    dead_letters = DeadLetters(producer or FakeProducer(), CODEC, process, "test.events.dlq")
    options = {"is_transient": lambda e: isinstance(e, ConnectionError), "retry_initial_s": 0.01, **options}
    return KeyedConsumer(consumer, handler, process=process, hub="test", dead_letters=dead_letters, **options), process


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_one_keys_records_are_handled_in_order_while_other_keys_go_on():
    seen: list[str] = []
    b_started = asyncio.Event()

    async def handle(r: ConsumerRecord) -> str:
        if r.value == b"a@0":
            await asyncio.wait_for(b_started.wait(), 5)  # would deadlock if keys ran one after another
        if r.key == b"b":
            b_started.set()
        seen.append(r.value.decode())
        return "ok"

    consumer = FakeConsumer()
    loop, process = keyed(consumer, handle)
    await loop.handle_batch(batches(record(0, "a"), record(1, "b"), record(2, "a"), record(3, "a")))
    assert [v for v in seen if v.startswith("a")] == ["a@0", "a@2", "a@3"]
    assert seen.index("b@1") < seen.index("a@0")
    assert consumer.committed(TP0) == 4
    assert loop.handled == 4
    assert sample("poseidon_records_processed_total", process=process, hub="test", outcome="ok") == 4


async def test_no_more_keys_than_the_concurrency_are_handled_at_once():
    running, most = 0, 0

    async def handle(r: ConsumerRecord) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        return "ok"

    loop, _ = keyed(FakeConsumer(), handle, concurrency=2)
    await loop.handle_batch(batches(*(record(n, f"k{n}") for n in range(6))))
    assert most == 2


async def test_a_partition_is_committed_up_to_the_first_record_not_yet_handled():
    release_slow = asyncio.Event()

    async def handle(r: ConsumerRecord) -> str:
        if r.key == b"slow":
            await release_slow.wait()
        return "ok"

    consumer = FakeConsumer()
    loop, _ = keyed(consumer, handle)
    work = asyncio.create_task(
        loop.handle_batch(batches(record(0, "fast"), record(1, "slow"), record(2, "fast"), record(0, "fast", partition=1)))
    )
    await asyncio.sleep(0.05)
    assert consumer.committed(TP0) == 1, "offset 2 is handled, but offset 1 before it is not"
    assert consumer.committed(TP1) == 1
    release_slow.set()
    await work
    assert consumer.committed(TP0) == 3
    assert all(c.get(TP0, 0) <= 3 for c in consumer.commits)


async def test_a_later_record_finishing_first_commits_nothing_past_the_unhandled_one():
    release_first = asyncio.Event()
    commits_while_waiting: list[dict] = []

    async def handle(r: ConsumerRecord) -> str:
        if r.offset == 0:
            await release_first.wait()
        return "ok"

    consumer = FakeConsumer()
    loop, _ = keyed(consumer, handle)
    work = asyncio.create_task(loop.handle_batch(batches(record(0, "a"), record(1, "b"), record(2, "c"))))
    await asyncio.sleep(0.05)
    commits_while_waiting += consumer.commits
    release_first.set()
    await work
    assert commits_while_waiting == []
    assert consumer.committed(TP0) == 3


async def test_a_dependency_away_is_waited_out_and_the_record_then_handled():
    failures = [ConnectionError("hub away"), ConnectionError("still away")]
    calls = 0

    async def handle(r: ConsumerRecord) -> str:
        nonlocal calls
        calls += 1
        if failures:
            raise failures.pop(0)
        return "handled"

    retried: list[BaseException] = []
    producer = FakeProducer()
    consumer = FakeConsumer()
    loop, process = keyed(consumer, handle, producer, on_retry=retried.append)
    await loop.handle_batch(batches(record(0, "a")))
    assert calls == 3 and len(retried) == 2
    assert sample("poseidon_retries_total", process=process, hub="test", error="ConnectionError") == 2
    assert sample("poseidon_records_processed_total", process=process, hub="test", outcome="handled") == 1
    assert producer.sent == [] and consumer.committed(TP0) == 1


async def test_a_record_that_cannot_be_handled_is_dead_lettered_with_its_reason_and_the_next_one_handled():
    async def handle(r: ConsumerRecord) -> str:
        if r.offset == 0:
            raise ValueError("no rule foresaw this")
        return "handled"

    producer = FakeProducer()
    consumer = FakeConsumer()
    loop, process = keyed(consumer, handle, producer, error_type="RouterError")
    await loop.handle_batch(batches(record(0, "a"), record(1, "a")))
    [(topic, value, key, headers)] = producer.sent
    letter = CODEC.decode(value)
    assert (topic, key, letter.name) == ("test.events.dlq", b"a", DEAD_LETTER_SCHEMA)
    assert letter.record["reason"] == "ValueError: no rule foresaw this"
    assert letter.record["error_type"] == "RouterError"
    assert (letter.record["source_topic"], letter.record["source_offset"], letter.record["payload"]) == (TOPIC, 0, b"a@0")
    assert ("reason", b"ValueError: no rule foresaw this") in headers
    assert consumer.committed(TP0) == 2
    assert sample("poseidon_dead_letters_total", topic="test.events.dlq") >= 1
    assert sample("poseidon_failures_total", process=process, hub="test", reason="ValueError") == 1
    assert sample("poseidon_records_processed_total", process=process, hub="test", outcome="dead_lettered") == 1


async def test_run_polls_batches_until_cancelled():
    handled = asyncio.Event()

    async def handle(r: ConsumerRecord) -> str:
        handled.set()
        return "ok"

    consumer = FakeConsumer({}, batches(record(0, "a")))
    loop, _ = keyed(consumer, handle)
    task = asyncio.create_task(loop.run())
    await asyncio.wait_for(handled.wait(), 5)
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert consumer.committed(TP0) == 1


async def test_partitions_are_given_up_only_after_the_records_in_hand_are_handled_and_committed():
    # Chaos (two spoke instances, one restarted): the next owner re-read a Facebook reply the
    # first was still sending; its claim was refused and the saga compensated a delivered reply.
    release = asyncio.Event()

    async def handle(r: ConsumerRecord) -> str:
        await release.wait()
        return "ok"

    consumer = FakeConsumer(batches(record(0, "a"), record(1, "b")))
    consumer.handover = Handover("test-group")
    loop, _ = keyed(consumer, handle)
    running = asyncio.create_task(loop.run())
    await asyncio.sleep(0.05)
    revoking = asyncio.create_task(consumer.handover.on_partitions_revoked([TP0]))
    await asyncio.sleep(0.1)
    assert not revoking.done(), "partitions given up while their records were still being handled"
    release.set()
    await asyncio.wait_for(revoking, 5)
    assert consumer.committed(TP0) == 2
    running.cancel()


async def test_a_batch_fetched_before_a_rebalance_is_handled_only_for_partitions_still_assigned():
    seen: list[int] = []

    async def handle(r: ConsumerRecord) -> str:
        seen.append(r.partition)
        return "ok"

    consumer = FakeConsumer(batches(record(0, "a", partition=0), record(0, "b", partition=1)))
    consumer.assignment = lambda: {TP1}
    loop, _ = keyed(consumer, handle)
    running = asyncio.create_task(loop.run())
    await asyncio.sleep(0.1)
    running.cancel()
    assert seen == [1]
    assert consumer.committed(TP0) is None


async def test_a_slow_key_holds_only_itself_records_fetched_later_for_other_keys_go_on():
    # No batch barrier: a bot taking its time on one conversation must not hold the
    # next fetch's messages of every other conversation.
    release, later_done = asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def handle(r: ConsumerRecord) -> str:
        order.append(r.value.decode())
        if r.key == b"slow":
            await release.wait()
        if r.key == b"later":
            later_done.set()
        return "ok"

    consumer = FakeConsumer(batches(record(0, "slow"), record(1, "slow")), batches(record(2, "later")))
    loop, _ = keyed(consumer, handle)
    running = asyncio.create_task(loop.run())
    await asyncio.wait_for(later_done.wait(), 5)
    assert order == ["slow@0", "later@2"], "the second fetch was handled while the first one's slow key waited"
    assert consumer.committed(TP0) is None, "nothing committed past the unhandled offset 0"
    release.set()
    for _ in range(100):
        if consumer.committed(TP0) == 3:
            break
        await asyncio.sleep(0.01)
    assert order == ["slow@0", "later@2", "slow@1"] and consumer.committed(TP0) == 3
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


async def test_fetching_pauses_while_too_many_records_are_in_hand():
    release = asyncio.Event()

    async def handle(r: ConsumerRecord) -> str:
        await release.wait()
        return "ok"

    consumer = FakeConsumer(batches(record(0, "a"), record(1, "b")), batches(record(2, "c")), batches(record(3, "d")))
    loop, _ = keyed(consumer, handle, max_in_hand=2)
    running = asyncio.create_task(loop.run())
    await asyncio.sleep(0.1)
    assert len(consumer.polls) == 2, "two records in hand: no further fetch"
    release.set()
    for _ in range(100):
        if consumer.committed(TP0) == 4:
            break
        await asyncio.sleep(0.01)
    assert consumer.committed(TP0) == 4 and consumer.polls == []
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


async def test_a_dead_letter_that_cannot_be_written_stops_the_loop():
    class BrokenProducer(FakeProducer):
        async def send_and_wait(self, *args, **kwargs) -> None:
            raise RuntimeError("the dead-letter topic is gone")

    async def handle(r: ConsumerRecord) -> str:
        raise ValueError("no rule foresaw this")

    loop, _ = keyed(FakeConsumer(batches(record(0, "a"))), handle, producer=BrokenProducer())
    with pytest.raises(RuntimeError, match="dead-letter topic is gone"):
        await asyncio.wait_for(loop.run(), 5)


async def test_a_record_fetched_after_a_rebalance_counts_as_handled_even_when_an_older_worker_runs_it(monkeypatch):
    # Chaos (Facebook spoke, two instances, kills): a reply slower than the handover wait kept
    # its key's worker alive across the rebalance; the records of that key fetched afterwards
    # went to the old worker, which never marked them done: "in hand" grew until fetching
    # stopped at max_in_hand, and 598 replies were never sent.
    import infra.keyed

    monkeypatch.setattr(infra.keyed, "HANDOVER_WAIT_S", 0.05)
    release, seen = asyncio.Event(), []

    async def handle(r: ConsumerRecord) -> str:
        seen.append(r.offset)
        if r.offset == 0:
            await release.wait()  # the slow one
        return "ok"

    consumer = FakeConsumer(batches(record(0, "a"), record(1, "a")))
    consumer.handover = Handover("test-group")
    refetch = asyncio.Event()
    first_getmany = consumer.getmany

    async def getmany(timeout_ms: int = 0, max_records: int | None = None) -> dict:
        if consumer.polls:
            return await first_getmany(timeout_ms, max_records)
        await refetch.wait()
        refetch.clear()
        return batches(record(1, "a"), record(2, "a"))  # the new generation reads them again

    consumer.getmany = getmany
    loop, _ = keyed(consumer, handle, max_in_hand=4)
    running = asyncio.create_task(loop.run())
    await asyncio.sleep(0.05)
    await consumer.handover.on_partitions_revoked([TP0])  # gives up after the (short) wait: offset 0 still running
    refetch.set()
    await asyncio.sleep(0.05)
    release.set()
    for _ in range(100):
        if loop._offsets.in_hand() == 0:
            break
        await asyncio.sleep(0.01)
    assert loop._offsets.in_hand() == 0, "records of the new generation left in hand: fetching would stop"
    assert seen == [0, 1, 2]  # offset 1 of the old fetch was given up, not handled twice
    assert consumer.committed(TP0) == 3
    running.cancel()
