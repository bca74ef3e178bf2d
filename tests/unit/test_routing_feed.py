"""How the router knows its facts are current (hubs/message/feed.py), without a
broker: decisions that arrive together share one end-offsets request, a decision
waits until the view has read up to the offsets asked after it arrived, and the
positions a decision records fit the Message hub's fact limits. How it reads
Kafka is tested through the router in tests/integration/test_router.py."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from base.settings import Settings
from hubs.message.aggregate import MAX_FACT_VALUE
from hubs.message.feed import POSITIONS_PER_FACT, FactsFeed
from schemas.codec import Catalog, Codec

CODEC = Codec(Catalog.load())
TENANT_0, WALLET_0 = TopicPartition("tenant.events", 0), TopicPartition("wallet.events", 0)


class EndOffsets:
    """The one consumer call `fresh` makes: end offsets, counted; each answer can be held."""

    def __init__(self, ends: dict[TopicPartition, int]):
        self.ends, self.asked, self.gate = ends, 0, asyncio.Event()
        self.gate.set()

    async def end_offsets(self, partitions):
        self.asked += 1
        await self.gate.wait()
        return {tp: self.ends[tp] for tp in partitions}


def feed(ends: dict[TopicPartition, int], positions: dict[TopicPartition, int]) -> tuple[FactsFeed, EndOffsets]:
    f = FactsFeed(Settings(), CODEC)
    consumer = EndOffsets(ends)
    f._consumer = consumer  # the reader task is not started: positions move by hand below
    f.positions = dict(positions)
    return f, consumer


def read_up_to(f: FactsFeed, **moves: int) -> None:
    """What the reader does after a fetch: new positions, then wake the waiters."""
    f.positions.update({TopicPartition(f"{topic}.events", 0): offset for topic, offset in moves.items()})
    f._moved.set()


async def test_a_decision_waits_until_the_view_has_read_up_to_the_end_offsets():
    f, _ = feed({TENANT_0: 5, WALLET_0: 9}, {TENANT_0: 5, WALLET_0: 7})

    waiting = asyncio.create_task(f.fresh(timeout=5))
    await asyncio.sleep(0.05)
    assert not waiting.done(), "two wallet events not read yet"
    read_up_to(f, wallet=8)
    await asyncio.sleep(0.05)
    assert not waiting.done()
    read_up_to(f, wallet=9)
    await asyncio.wait_for(waiting, 5)


async def test_decisions_arriving_together_share_one_request_and_a_later_one_asks_again():
    f, consumer = feed({TENANT_0: 3, WALLET_0: 3}, {TENANT_0: 3, WALLET_0: 3})
    consumer.gate.clear()

    together = [asyncio.create_task(f.fresh(timeout=5)) for _ in range(20)]
    await asyncio.sleep(0.05)
    later = asyncio.create_task(f.fresh(timeout=5))  # arrived after the request went out
    await asyncio.sleep(0.05)
    consumer.gate.set()
    await asyncio.wait_for(asyncio.gather(*together, later), 5)

    assert consumer.asked == 2, "one request for the twenty, one more for the one that came after it was sent"


async def test_a_view_that_does_not_catch_up_in_time_is_an_error_the_router_retries():
    f, _ = feed({TENANT_0: 10}, {TENANT_0: 2})

    with pytest.raises(TimeoutError):
        await f.fresh(timeout=0.1)


def test_the_recorded_positions_name_every_partition_and_fit_the_fact_limits():
    f = FactsFeed(Settings(), CODEC)
    many = {TopicPartition("wallet.events", p): 10**12 + p for p in range(70)}
    f.positions = {TENANT_0: 12, **many}

    facts = f.recorded_positions()

    assert facts["positions.tenant.events"] == "12"
    wallet = [facts["positions.wallet.events"], facts["positions.wallet.events:32"], facts["positions.wallet.events:64"]]
    offsets = [int(o) for value in wallet for o in value.split()]
    assert offsets == [10**12 + p for p in range(70)], "every partition's next offset, in partition order"
    assert all(len(v) <= MAX_FACT_VALUE for v in facts.values()) and POSITIONS_PER_FACT == 32
