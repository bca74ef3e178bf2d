"""The one keyed, committed consumer loop every long-running reader runs on (the
Message Hub's router, the saga driver, spokes): records grouped by (partition,
key), each key's records in order, keys concurrently; waits out our own
dependencies, parks what can never be handled, and commits a partition only up
to the records fully handled. It knows nothing of what a record means."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError
from aiokafka.structs import ConsumerRecord
from tenacity import AsyncRetrying, retry_if_exception, stop_never, wait_exponential_jitter

from infra import metrics, tracing
from infra.dlq import DeadLetters

log = structlog.get_logger(__name__)

Handler = Callable[[ConsumerRecord], Awaitable[str]]
"""Handles one record completely and returns its outcome (a metric label). Raises
what `is_transient` calls worth waiting for, or anything else to dead-letter it."""
Batches = Mapping[TopicPartition, Sequence[ConsumerRecord]]
HANDOVER_WAIT_S = 30.0
"""How long a rebalance waits for the records in hand before this member gives its
partitions up anyway (the group stands still meanwhile; a record whose handler
waits out a long outage is then handled again by the next owner)."""


class _Offsets:
    """Which fetched offsets are in hand and which are handled, per partition, across
    fetches; commits each partition up to the last record before which every record
    is handled (keys finish out of order). Commits run in the background, one at a
    time, so a partition only moves forward and a key's next record never waits for
    the broker."""

    def __init__(self, consumer: AIOKafkaConsumer):
        self.consumer = consumer
        self.pending: dict[TopicPartition, deque[int]] = {}
        self.finished: dict[TopicPartition, set[int]] = defaultdict(set)
        self.ready: dict[TopicPartition, int] = {}
        self.committing: asyncio.Task | None = None

    def add(self, tp: TopicPartition, offsets: Sequence[int]) -> None:
        self.pending.setdefault(tp, deque()).extend(offsets)

    def in_hand(self) -> int:
        return sum(len(offsets) for offsets in self.pending.values())

    def done(self, tp: TopicPartition, offset: int) -> None:
        pending = self.pending.get(tp)
        if pending is None:
            return  # given up in a rebalance meanwhile: its next owner reads it again
        finished = self.finished[tp]
        finished.add(offset)
        while pending and pending[0] in finished:
            finished.discard(pending[0])
            self.ready[tp] = pending.popleft() + 1
        if tp not in self.ready:
            return
        if self.committing is not None and self.committing.done():
            self.committing.result()  # a failed commit stops the consumer
            self.committing = None
        if self.committing is None:
            self.committing = asyncio.create_task(self._commit())

    async def flushed(self) -> None:
        while self.committing is not None:
            committing = self.committing
            await committing
            if self.committing is committing:
                self.committing = None

    def forget(self) -> None:
        """Drop every partition's bookkeeping (after a rebalance: what was not
        committed is read again from the committed offsets)."""
        self.pending.clear()
        self.finished.clear()

    async def _commit(self) -> None:
        while self.ready:
            offsets, self.ready = self.ready, {}
            try:
                await self.consumer.commit(offsets)
            except CommitFailedError as exc:
                # Rebalanced away meanwhile: the new owner re-reads these records;
                # handlers are idempotent (deterministic ids), so that is harmless.
                log.warning("offset commit refused after a rebalance; records will be re-read", error=str(exc))


class KeyedConsumer:
    """Runs `handler` over a consumer group member's records.

    * Records of one (partition, key) are handled one at a time, in offset order;
      different keys at once, up to `concurrency`.
    * No batch barrier: the loop keeps fetching while records are handled, and a
      record of a free key starts at once, whatever a slow key of an earlier fetch
      is still doing (a bot taking its time holds only its own conversation).
      At most `max_in_hand` fetched records wait at once; then fetching pauses.
    * A failure `is_transient` says is ours to wait out (a hub, Kafka or
      PostgreSQL away) is retried forever with exponential jittered backoff and
      counted in `poseidon_retries_total`: the record is never skipped.
    * Any other failure is a bug or data no rule foresaw: one dead letter with the
      reason and `error_type`, then the next record.
    * Offsets are committed by hand, never past a record not yet handled.
    * On a consumer from `infra.consumers.group_consumer`, a rebalance waits (up to
      HANDOVER_WAIT_S) until the records being handled are done and committed
      before the partitions are given up (records fetched but not started are left
      to the next owner), and records are handled only for partitions still
      assigned: two members never handle the same record at once (a Facebook reply
      claimed by the next owner while the first is sending it was answered "outcome
      unknown" and its saga compensated though the reply went out).
    * Emits `poseidon_records_processed_total` (per record and outcome),
      `poseidon_failures_total`, `poseidon_processing_seconds` (per record) and
      `poseidon_consumer_lag`, labelled with `process` and `hub`.

    The consumer's lifecycle (start, stop, assignment) stays with the caller.
    """

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        handler: Handler,
        *,
        process: str,
        hub: str,
        dead_letters: DeadLetters,
        is_transient: Callable[[BaseException], bool],
        error_type: str = "HandlerError",
        concurrency: int = 32,
        max_records: int = 500,
        max_in_hand: int | None = None,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 10.0,
        on_retry: Callable[[BaseException], None] | None = None,
    ):
        self.consumer, self.handler, self.process, self.hub = consumer, handler, process, hub
        self.dead_letters, self.is_transient, self.error_type = dead_letters, is_transient, error_type
        self.max_records, self.on_retry = max_records, on_retry
        self.max_in_hand = max_in_hand if max_in_hand is not None else 2 * max_records
        self._wait = wait_exponential_jitter(initial=retry_initial_s, max=retry_max_s)
        self._first_wait = retry_initial_s
        self._limit = asyncio.Semaphore(concurrency)
        self.handled = 0
        """Records handled (or dead-lettered) so far."""
        self._offsets = _Offsets(consumer)
        self._queues: dict[tuple[TopicPartition, bytes | None], deque[ConsumerRecord]] = {}
        self._workers: set[asyncio.Task] = set()
        self._failure: BaseException | None = None
        self._failed = asyncio.Event()
        self._moved = asyncio.Event()
        """Set whenever a record is done or a worker failed: what waiting loops wake on."""
        self._draining = False
        self._generation = 0
        self._latency = metrics.LATENCY.labels(process, hub)
        handover = getattr(consumer, "handover", None)
        if handover is not None:
            handover.before_revoke = self.hand_over

    async def hand_over(self) -> None:
        """Returns once the records being handled are done and committed (those
        fetched but not started are dropped), or after HANDOVER_WAIT_S."""
        self._draining = True
        try:
            await asyncio.wait_for(self._settled(), HANDOVER_WAIT_S)
        except TimeoutError:
            log.warning("partitions given up with records still in hand; their next owner may handle them again")
        finally:
            self._offsets.forget()
            self._generation += 1
            self._draining = False

    async def run(self) -> None:
        """Fetch and handle records until cancelled; a failure to park or commit propagates."""
        failed = asyncio.ensure_future(self._failed.wait())
        try:
            while True:
                self._raise_failure()
                while self._offsets.in_hand() >= self.max_in_hand:
                    await self._next_move()
                fetch = asyncio.ensure_future(self.consumer.getmany(timeout_ms=500, max_records=self.max_records))
                await asyncio.wait((fetch, failed), return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():  # a worker failed: stop now, not after the fetch
                    fetch.cancel()
                    await asyncio.gather(fetch, return_exceptions=True)
                    self._raise_failure()
                self._dispatch(fetch.result())
        finally:
            failed.cancel()
            await self._stop_workers()

    async def handle_batch(self, batches: Batches) -> None:
        """Handle these records (as `run` would) and return once every one is done
        and committed."""
        self._dispatch(batches)
        await self._settled()

    # -- the machinery -------------------------------------------------------------

    def _dispatch(self, batches: Batches) -> None:
        if self._draining or not batches:
            return  # a rebalance is under way: the next owner (maybe us) reads them again
        # A fetch made before a rebalance may hold records of partitions given up since.
        owned = self.consumer.assignment()
        for tp, records in batches.items():
            if tp not in owned or not records:
                continue
            self._offsets.add(tp, [r.offset for r in records])
            for record in records:
                key = (tp, record.key)
                queue = self._queues.get(key)
                if queue is None:
                    queue = self._queues[key] = deque()
                    worker = asyncio.create_task(self._drain(key, queue))
                    self._workers.add(worker)
                    worker.add_done_callback(self._worker_done)
                # Each record with the generation it was fetched in: a worker that outlived a
                # rebalance (a record slower than HANDOVER_WAIT_S) may be handed this one too.
                queue.append((record, self._generation))
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                metrics.LAG.labels(self.process, tp.topic, str(tp.partition)).set(max(highwater - records[-1].offset - 1, 0))

    async def _drain(self, key: tuple, queue: deque[tuple[ConsumerRecord, int]]) -> None:
        """One key's records, in order, until its queue is empty. A record fetched before
        the last rebalance is not started (the partition's next owner reads it again); a
        record is marked done in the generation it was fetched in, so one fetched after a
        rebalance counts as handled even when a worker older than the rebalance ran it —
        else it would stay "in hand" for ever and fetching would stop at `max_in_hand`."""
        tp = key[0]
        try:
            while queue:
                record, generation = queue[0]
                async with self._limit:
                    if self._draining:
                        break  # not started: the partitions' next owner reads it again
                    stale = generation != self._generation
                    if not stale:
                        started = time.perf_counter()
                        await self._until_done(record)
                        self._latency.observe(time.perf_counter() - started)
                queue.popleft()
                if stale:
                    continue  # fetched before the rebalance: given up with its partition, not handled here
                self.handled += 1
                if generation == self._generation:
                    self._offsets.done(tp, record.offset)
                self._moved.set()
        finally:
            if self._queues.get(key) is queue:
                del self._queues[key]

    def _worker_done(self, worker: asyncio.Task) -> None:
        self._workers.discard(worker)
        if not worker.cancelled() and worker.exception() is not None and self._failure is None:
            self._failure = worker.exception()
            self._failed.set()
        self._moved.set()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            failure, self._failure = self._failure, None
            self._failed.clear()
            raise failure

    async def _next_move(self) -> None:
        self._moved.clear()
        await self._moved.wait()
        self._raise_failure()

    async def _settled(self) -> None:
        """Until no record is being handled and every commit went out; raises what
        stopped a worker (a dead letter that could not be written, a failed commit)."""
        while self._workers:
            self._moved.clear()
            await asyncio.wait(set(self._workers), return_when=asyncio.FIRST_COMPLETED)
            self._raise_failure()
        self._raise_failure()
        await self._offsets.flushed()

    async def _stop_workers(self) -> None:
        workers = list(self._workers)
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if self._offsets.committing is not None:
            self._offsets.committing.cancel()
            await asyncio.gather(self._offsets.committing, return_exceptions=True)

    async def _until_done(self, record: ConsumerRecord) -> None:
        if not tracing.enabled():
            await self._handle(record)
            return
        # The record's trace continues here (the router's decision, a saga driver's or a
        # spoke's handling): what the handler sends carries this span. Its outcome is the
        # handler's (routed, rejected, answered, dead_lettered…).
        attributes = self._span_attributes(record)
        with tracing.span(f"{self.process} handle", record.headers, kind=tracing.CONSUMER, attributes=attributes) as span:
            span.set_attribute("poseidon.outcome", await self._handle(record))

    def _span_attributes(self, record: ConsumerRecord) -> dict:
        return {"messaging.destination.name": record.topic, "messaging.kafka.offset": record.offset, "poseidon.hub": self.hub}

    async def _handle(self, record: ConsumerRecord) -> str:
        def retrying(exc: BaseException) -> None:
            metrics.RETRIES.labels(self.process, self.hub, type(exc).__name__).inc()
            if self.on_retry is not None:
                self.on_retry(exc)
            log.warning(
                "record not handled yet; retrying", error_type=type(exc).__name__, error=str(exc)[:300], offset=record.offset
            )

        try:
            try:
                # The common case builds no retry machinery (a tenacity loop per record
                # was a visible share of a busy consumer's CPU).
                outcome = await self.handler(record)
            except Exception as first:
                if not self.is_transient(first):
                    raise
                retrying(first)
                await asyncio.sleep(self._first_wait)
                async for attempt in AsyncRetrying(
                    retry=retry_if_exception(self.is_transient),
                    wait=self._wait,
                    stop=stop_never,
                    before_sleep=lambda state: retrying(state.outcome.exception()),
                    reraise=True,
                ):
                    with attempt:
                        outcome = await self.handler(record)
        except Exception as exc:
            # Only the type in the log: exception texts may quote personal data;
            # the whole reason travels in the dead letter.
            log.error("record could not be handled", error_type=type(exc).__name__)
            metrics.FAILURES.labels(self.process, self.hub, type(exc).__name__).inc()
            await self.dead_letters.publish(record, f"{type(exc).__name__}: {exc}", self.error_type)
            outcome = "dead_lettered"
        metrics.RECORDS_PROCESSED.labels(self.process, self.hub, outcome).inc()
        return outcome
