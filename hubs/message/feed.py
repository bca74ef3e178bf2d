"""Keeps the router's `RoutingView` (hubs/message/facts.py) current from the
Tenant, App, Billing and Wallet hubs' event topics, and tells the router how
current it is.

* Reading: one consumer with every partition of the four topics assigned (no
  group: every router instance keeps the whole view), from the start of the log,
  committed records only (read_committed); events routing does not read are
  skipped by their `event_type` header, undecoded.
* Freshness (`fresh`): before a decision the router asks for the topics' end
  offsets (the last stable offsets: committed data only) and waits until the view
  has read that far. So a fact committed before the message was handled — a
  page connected, an app subscribed, an entitlement granted a moment before —
  is always seen: the view is never staler than the hubs' own logs, which the
  read stores behind the old gRPC lookups could be (their projectors lag).
  Callers that arrive together share one ListOffsets request: under load it is
  one broker round trip per round of decisions, not one per message.
* Positions: what the view had read when it answered, per partition, recorded with
  each decision (`positions`), so "why was it routed there" can be answered from
  the log by replaying the four topics up to those offsets.

Startup reads each topic from its start (a few hundred bytes per fact, and the
wallet topic's movements are skipped undecoded); `ready` is set once the view has
reached the end offsets it found on starting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import Gauge, Histogram

from base.settings import Settings
from hubs.message.facts import TOPICS, RoutingView, wanted
from hubs.message.routing import ChannelOwner, InboundItem, RoutingFacts
from infra.provenance import EventKeys
from infra.topics import partitions_of
from schemas.codec import Codec, DecodeError

log = structlog.get_logger(__name__)

FRESH_TIMEOUT_S = 10.0
"""How long a decision waits for the view to reach the end offsets; past that the
router retries the record (the broker or this reader is in trouble)."""
FETCH_MAX_RECORDS = 5000
POSITIONS_FACT = "positions"
"""Fact key prefix of the positions a decision was taken at: `positions.tenant.events` = `12 7 0 3`
(the next offset of partitions 0, 1, 2, 3)."""
POSITIONS_PER_FACT = 32
"""Offsets per fact value: 32 of at most 13 digits and a space stay under the Message hub's 500 characters."""


FRESH_WAIT = Histogram(
    "poseidon_router_facts_wait_seconds",
    "How long a routing decision waited for the router's facts to reach the end offsets of their topics.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
FACTS_APPLIED = Gauge("poseidon_router_facts_events", "Events folded into the router's routing facts since it started.")


class FactsFeed:
    """The view and the consumer that feeds it. `start()`, then `fresh()` before
    each decision (or each batch of them), `stop()` at the end."""

    def __init__(self, settings: Settings, codec: Codec, view: RoutingView | None = None):
        self.settings, self.codec = settings, codec
        self.view = view if view is not None else RoutingView()
        self.positions: dict[TopicPartition, int] = {}
        self.ready = asyncio.Event()
        self.skipped = 0
        """Records of the four topics that could not be folded (undecodable or missing fields): logged, never fatal."""
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task | None = None
        self._moved = asyncio.Event()
        self._round: asyncio.Future | None = None
        self._asking = asyncio.Lock()
        self._logical = {settings.topic(t): t for t in TOPICS}
        self._keys = {t: EventKeys.of(settings, t.rpartition(".")[0]) for t in TOPICS}
        """Each topic's hub keys: a fact is only what that hub's processor signed."""

    async def start(self) -> None:
        s = self.settings
        found = await partitions_of(s, list(self._logical))
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        await self._consumer.start()
        partitions = [TopicPartition(topic, p) for topic, numbers in found.items() for p in numbers]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self.positions = dict.fromkeys(partitions, 0)
        started = time.monotonic()
        self._reader = asyncio.create_task(self._read(), name="routing-facts")
        await self.fresh(timeout=None)
        self.ready.set()
        log.info(
            "routing facts read",
            events=self.view.applied,
            skipped=self.skipped,
            seconds=round(time.monotonic() - started, 3),
            channel_accounts=len(self.view.channels),
            tenants_with_terms=len(self.view.terms),
        )

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()

    # -- the router's side ---------------------------------------------------------

    async def owner(self, channel: str, account_id: str) -> ChannelOwner | None:
        await self.fresh()
        return self.view.owner(channel, account_id)

    async def gather(self, item: InboundItem) -> RoutingFacts:
        await self.fresh()
        return self.view.gather(item, datetime.now(UTC))

    def recorded_positions(self) -> dict[str, str]:
        """The view's positions as decision facts: `positions.<topic>` = the next
        offset of each partition, in partition order, space-separated (a topic of
        more than POSITIONS_PER_FACT partitions continues in `positions.<topic>:32`, …,
        so no value outgrows a fact)."""
        by_topic: dict[str, list[str]] = {}
        for tp, offset in sorted(self.positions.items()):
            by_topic.setdefault(self._logical[tp.topic], []).append(str(offset))
        facts = {}
        for topic, offsets in by_topic.items():
            for first in range(0, len(offsets), POSITIONS_PER_FACT):
                key = f"{POSITIONS_FACT}.{topic}" + (f":{first}" if first else "")
                facts[key] = " ".join(offsets[first : first + POSITIONS_PER_FACT])
        return facts

    async def fresh(self, timeout: float | None = FRESH_TIMEOUT_S) -> None:
        """Return once the view has read every record committed to the four topics
        before this call (their end offsets, asked after it began)."""
        started = time.perf_counter()
        async with asyncio.timeout(timeout):
            targets = await self._targets()
            while not self._reached(targets):
                self._keep_reading()
                self._moved.clear()
                if self._reached(targets):
                    break
                await self._moved.wait()
        FRESH_WAIT.observe(time.perf_counter() - started)

    def _keep_reading(self) -> None:
        """A reader that stopped (an error aiokafka raised to it) is started again from
        where it was: the view stays, the positions are the consumer's."""
        reader = self._reader
        if reader is None or not reader.done():
            return
        error = reader.exception() if not reader.cancelled() else None
        log.warning("routing facts reader stopped; reading on", error_type=type(error).__name__ if error else "Cancelled")
        self._reader = asyncio.create_task(self._read(), name="routing-facts")

    def _reached(self, targets: Mapping[TopicPartition, int]) -> bool:
        positions = self.positions
        return all(positions.get(tp, 0) >= end for tp, end in targets.items())

    async def _targets(self) -> Mapping[TopicPartition, int]:
        # A round not yet sent is joined; one already sent may predate this call,
        # so a new round is queued behind it.
        if self._round is None:
            self._round = asyncio.get_running_loop().create_future()
            asyncio.create_task(self._ask(self._round))
        return await asyncio.shield(self._round)

    async def _ask(self, round_: asyncio.Future) -> None:
        async with self._asking:
            if self._round is round_:
                self._round = None  # from here on, arrivals need the next round
            try:
                assert self._consumer is not None
                ends = await self._consumer.end_offsets(list(self.positions))
            except Exception as exc:
                round_.set_exception(exc)
                round_.exception()  # retrieved here too: nobody may be waiting any more
            else:
                round_.set_result(ends)

    # -- the reader ----------------------------------------------------------------

    async def _read(self) -> None:
        try:
            await self._read_on()
        finally:
            self._moved.set()  # whoever waits for positions sees the reader stopped

    async def _read_on(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=FETCH_MAX_RECORDS)
            for tp, records in batches.items():
                topic = self._logical[tp.topic]
                for record in records:
                    self._fold(topic, record)
            for tp in self.positions:
                self.positions[tp] = await consumer.position(tp)
            FACTS_APPLIED.set(self.view.applied)
            self._moved.set()

    def _fold(self, topic: str, record) -> None:
        event_type = next((value for name, value in record.headers or () if name == "event_type"), None)
        if event_type is not None and not wanted(topic, event_type.decode("utf-8", "replace")):
            return
        forged = self._keys[topic].problem(record.value, record.headers)
        if forged:
            # A connected page or an entitlement nobody with the hub's key wrote is no fact.
            self.skipped += 1
            log.warning("event not folded: not signed by its hub", topic=record.topic, offset=record.offset, reason=forged)
            return
        try:
            decoded = self.codec.decode(record.value)
            self.view.apply(topic, decoded.name, decoded.record)
        except (DecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            # The hub's projector dead-letters such a record; here it is only not a fact.
            self.skipped += 1
            log.warning(
                "event not folded into the routing facts",
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                error_type=type(exc).__name__,
            )
