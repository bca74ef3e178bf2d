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

from infra import metrics
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


class _Progress:
    """Which offsets of one batch are handled; commits each partition up to the
    last record before which every record is handled (keys finish out of order).
    Commits run in the background, one at a time, so a partition only moves
    forward and a key's next record never waits for the broker."""

    def __init__(self, consumer: AIOKafkaConsumer, batches: Batches):
        self.consumer = consumer
        self.pending = {tp: deque(r.offset for r in records) for tp, records in batches.items()}
        self.finished: dict[TopicPartition, set[int]] = defaultdict(set)
        self.ready: dict[TopicPartition, int] = {}
        self.committing: asyncio.Task | None = None

    def done(self, tp: TopicPartition, offset: int) -> None:
        finished, pending = self.finished[tp], self.pending[tp]
        finished.add(offset)
        while pending and pending[0] in finished:
            finished.discard(pending[0])
            self.ready[tp] = pending.popleft() + 1
        if tp not in self.ready:
            return
        if self.committing is not None and self.committing.done():
            self.committing.result()  # a failed commit stops the batch
            self.committing = None
        if self.committing is None:
            self.committing = asyncio.create_task(self._commit())

    async def flushed(self) -> None:
        if self.committing is not None:
            await self.committing

    async def _commit(self) -> None:
        while self.ready:
            offsets, self.ready = self.ready, {}
            try:
                await self.consumer.commit(offsets)
            except CommitFailedError as exc:
                # Rebalanced away mid-batch: the new owner re-reads these records;
                # handlers are idempotent (deterministic ids), so that is harmless.
                log.warning("offset commit refused after a rebalance; records will be re-read", error=str(exc))


class KeyedConsumer:
    """Runs `handler` over a consumer group member's records.

    * Records of one (partition, key) are handled one at a time, in offset order;
      different keys at once, up to `concurrency`.
    * A failure `is_transient` says is ours to wait out (a hub, Kafka or
      PostgreSQL away) is retried forever with exponential jittered backoff and
      counted in `poseidon_retries_total`: the record is never skipped.
    * Any other failure is a bug or data no rule foresaw: one dead letter with the
      reason and `error_type`, then the next record.
    * Offsets are committed by hand, never past a record not yet handled.
    * On a consumer from `infra.consumers.group_consumer`, a rebalance waits (up to
      HANDOVER_WAIT_S) until the batch in hand is handled and committed before the
      partitions are given up, and a batch is handled only for partitions still
      assigned: two members never handle the same record at once (a Facebook reply
      claimed by the next owner while the first is sending it was answered "outcome
      unknown" and its saga compensated though the reply went out).
    * Emits `poseidon_records_processed_total` (per record and outcome),
      `poseidon_failures_total`, `poseidon_processing_seconds` (per batch) and
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
        retry_initial_s: float = 0.2,
        retry_max_s: float = 10.0,
        on_retry: Callable[[BaseException], None] | None = None,
    ):
        self.consumer, self.handler, self.process, self.hub = consumer, handler, process, hub
        self.dead_letters, self.is_transient, self.error_type = dead_letters, is_transient, error_type
        self.max_records, self.on_retry = max_records, on_retry
        self._wait = wait_exponential_jitter(initial=retry_initial_s, max=retry_max_s)
        self._first_wait = retry_initial_s
        self._limit = asyncio.Semaphore(concurrency)
        self.handled = 0
        """Records handled (or dead-lettered) so far."""
        self._in_hand = asyncio.Lock()
        handover = getattr(consumer, "handover", None)
        if handover is not None:
            handover.before_revoke = self.hand_over

    async def hand_over(self) -> None:
        """Returns once the batch in hand (if any) is handled and committed, or after HANDOVER_WAIT_S."""
        try:
            await asyncio.wait_for(self._in_hand.acquire(), HANDOVER_WAIT_S)
        except TimeoutError:
            log.warning("partitions given up with records still in hand; their next owner may handle them again")
            return
        self._in_hand.release()

    async def run(self) -> None:
        """Poll and handle batches until cancelled; a failure to park or commit propagates."""
        while True:
            batches = await self.consumer.getmany(timeout_ms=500, max_records=self.max_records)
            async with self._in_hand:
                # A batch fetched before a rebalance may hold records of partitions given up since.
                owned = self.consumer.assignment()
                batches = {tp: records for tp, records in batches.items() if tp in owned}
                if batches:
                    await self.handle_batch(batches)

    async def handle_batch(self, batches: Batches) -> None:
        started = time.perf_counter()
        progress = _Progress(self.consumer, batches)
        by_key: dict[tuple, list[ConsumerRecord]] = defaultdict(list)
        for tp, records in batches.items():
            for record in records:
                by_key[(tp, record.key)].append(record)
        tasks = [asyncio.create_task(self._in_order(tp, records, progress)) for (tp, _), records in by_key.items()]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            running = [*tasks, progress.committing] if progress.committing else tasks
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise
        await progress.flushed()
        self.handled += sum(len(records) for records in batches.values())
        metrics.LATENCY.labels(self.process, self.hub).observe(time.perf_counter() - started)
        for tp, records in batches.items():
            highwater = self.consumer.highwater(tp)
            if highwater is not None and records:
                metrics.LAG.labels(self.process, tp.topic, str(tp.partition)).set(max(highwater - records[-1].offset - 1, 0))

    async def _in_order(self, tp: TopicPartition, records: Sequence[ConsumerRecord], progress: _Progress) -> None:
        async with self._limit:
            for record in records:
                await self._until_done(record)
                progress.done(tp, record.offset)

    async def _until_done(self, record: ConsumerRecord) -> None:
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
