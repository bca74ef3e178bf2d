"""The saga driver (`poseidon saga-driver`): the saga's timers and triggers. It
decides nothing: the Saga aggregate and the pure definitions do
(hubs/saga/definition.py).

What it no longer does: carry each step. The Saga hub's processor sends a step's
command in the transaction that records the StepRequested, and the hubs and
spokes answer on `saga.commands` (hubs/saga/dispatch.py); such events carry the
`dispatched` header and the spokes' copies of such answers the `replied` header,
and the driver skips both without decoding them. What it still does:

* Timers: deadlines are facts — `deadline_at` is in the event and in the saga
  read store, which the timer loop scans every second — so a request with no
  answer by its deadline gets FailOverdueStep, after any restart.
* Triggers: sagas that start by themselves (`SagaDefinition.trigger`, e.g. the
  inbound-message saga on every MessageRouted). A trigger event that carries its
  facts is started by the processor that records it (hubs/saga/dispatch.Starts;
  the event has the `dispatched` header and is skipped here). For the others
  (an older writer's) the trigger's lookup reads the read stores, its pure
  `start` builds the input, StartSaga goes out with an id derived from the saga
  id — the id the processor would have given it. Trigger topics are read by a consumer group that
  starts at the end of its topics: a new driver must not start sagas for the
  whole history of routed messages.
* Requests recorded without being sent (no `dispatched` header): what a processor
  older than the process manager wrote, so sagas in flight across the upgrade
  finish. It sends them as it always did: a hub's command through the command
  client, its answer recorded with RecordStepResult; a spoke's as a
  SpokeRequested, whose SpokeOutcome it records. Re-sent after a crash with the
  same ids (from the events): answered, never applied twice. A request re-read
  after its deadline is not re-sent (the timer fails it instead).

Consumption is the shared keyed consumer (infra.keyed): one saga's events in
order, offsets committed only past what is handled, a hub or the broker away
waited out, a record no rule foresaw parked on `saga.events.dlq`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from base.settings import Settings
from hubs.saga.commands import FailOverdueStep, RecordStepResult
from hubs.saga.definition import SagaDefinition
from hubs.saga.dispatch import (
    ACTOR,
    OUTCOME_SCHEMA,
    REQUEST_SCHEMA,
    answer_meta,
    command_record,
    derived_command_id,
    hub_answer,
    spoke_answer,
    spoke_request,
    start_command,
)
from hubs.saga.events import COMPENSATION_REQUESTED, REQUESTS
from infra import tracing
from infra.command_client import CommandClient, CommandResult, CommandTimeout
from infra.consumers import group_consumer, pin_positions
from infra.dlq import DeadLetters
from infra.hub import DISPATCHED, command_from_record
from infra.keyed import KeyedConsumer
from infra.outage import PLATFORM_OUTAGE
from infra.spoke import REPLIED
from infra.stores import Stores
from projections.saga.queries import overdue_requests
from sagas.reads import ReadStores
from schemas.codec import Codec, DecodeError
from schemas.contracts import Command, CommandMeta

log = structlog.get_logger(__name__)

PROCESS = "saga-driver"
SOURCE_TOPIC = "saga.events"
DLQ_TOPIC = "saga.events.dlq"
"""Where a record the driver cannot handle is parked, whichever topic it came from
(a spoke's events topic has no dead-letter topic of its own)."""
CONSUMER_GROUP = "poseidon-saga-driver"
REACTIONS_GROUP = "poseidon-saga-reactions"
TIMER_INTERVAL_S = 1.0
RESULT_TIMEOUT_S = 30.0
CONCURRENCY = 32
LEGACY_FETCH_MIN_BYTES = 1024 * 1024
LEGACY_FETCH_WAIT_MS = 1000
"""An old-shape request waits at most this long more to be sent (only during an upgrade)."""


def is_transient(exc: BaseException) -> bool:
    """Worth waiting for: a hub, Kafka or PostgreSQL away, not the record."""
    return isinstance(exc, (*PLATFORM_OUTAGE, asyncpg.PostgresError))


def command_of(hub, command_type: str, command_json: str) -> Command:
    """The target hub's typed command from a request event's `command_json`."""
    return command_from_record(hub, command_type, command_record(command_json))


def result_of(result: CommandResult) -> tuple[bool, str, str]:
    """(succeeded, detail, result_json) of a hub's answer."""
    return hub_answer(result.accepted, result.version, result.rejection, result.reason, result.event_types, result.duplicate)


def carried(record) -> bool:
    """An event whose request the processor sent, or a spoke's answer it already sent
    back to the saga: nothing left for the driver (read from headers, not decoded)."""
    return any(name in (DISPATCHED, REPLIED) for name, _ in record.headers or ())


class SagaDriver:
    def __init__(
        self,
        settings: Settings,
        codec: Codec,
        hubs: dict,
        spokes: Sequence[str] = (),
        definitions: Sequence[SagaDefinition] = (),
    ):
        self.settings, self.codec, self.hubs = settings, codec, hubs
        self.commands = CommandClient(settings, codec, hubs.values())
        self.spokes = frozenset(spokes)
        self.triggers = {
            (d.trigger.topic, d.trigger.event): d for d in definitions if d.trigger is not None
        }  # one saga type per (topic, event)
        self.consumer: AIOKafkaConsumer | None = None
        self.reactions: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.pool: asyncpg.Pool | None = None
        self.reads: ReadStores | None = None
        self.stores: Stores | None = None
        self.keyed: list[KeyedConsumer] = []
        self._overdue_sent: set[tuple[str, str, int]] = set()
        self._sending: set[asyncio.Task] = set()
        self._running = False

    async def start(self) -> None:
        s = self.settings
        await self.commands.start()
        self.pool = await asyncpg.create_pool(
            s.dsn_for("saga"),
            min_size=1,
            max_size=2,
            server_settings={"search_path": s.pg_schema("saga"), "application_name": PROCESS},
        )
        self.stores = Stores(s, max_size=2)
        self.reads = ReadStores(self.stores, s)
        # saga.events is the busiest topic and, since the processor sends the steps, holds
        # almost nothing for the driver (old-shape requests, during an upgrade): fetch it in
        # large, patient batches instead of once per committed saga transaction (a fetch
        # request and an offset commit per transaction cost the driver more CPU than
        # everything else it does, measured with `make bench --profile`).
        self.consumer = group_consumer(
            s, [SOURCE_TOPIC], CONSUMER_GROUP, fetch_min_bytes=LEGACY_FETCH_MIN_BYTES, fetch_max_wait_ms=LEGACY_FETCH_WAIT_MS
        )
        await self.consumer.start()
        self.producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", enable_idempotence=True)
        await self.producer.start()
        reaction_topics = sorted({topic for topic, _ in self.triggers} | {f"spoke.{name}.events" for name in self.spokes})
        if reaction_topics:
            # Likewise: the trigger topics' routed messages start their sagas in the Message hub's
            # processor and the spokes send their answers themselves; what is left here is legacy.
            self.reactions = group_consumer(
                s,
                reaction_topics,
                REACTIONS_GROUP,
                offset_reset="latest",
                fetch_min_bytes=LEGACY_FETCH_MIN_BYTES,
                fetch_max_wait_ms=LEGACY_FETCH_WAIT_MS,
            )
            await self.reactions.start()
            await pin_positions(self.reactions)
        dead_letters = DeadLetters(self.producer, self.codec, PROCESS, s.topic(DLQ_TOPIC))
        self.keyed = [
            KeyedConsumer(
                consumer,
                self.handle,
                process=PROCESS,
                hub="saga",
                dead_letters=dead_letters,
                is_transient=is_transient,
                concurrency=CONCURRENCY,
                max_records=200,
            )
            for consumer in (self.consumer, self.reactions)
            if consumer is not None
        ]
        self._running = True
        log.info("saga driver started", topic=s.topic(SOURCE_TOPIC), group=s.topic(CONSUMER_GROUP))

    async def stop(self) -> None:
        self._running = False
        for closing in (self.consumer, self.reactions, self.producer, self.commands):
            if closing is not None:
                try:
                    await closing.stop()
                except Exception as exc:  # stopping anyway: report, do not mask the others
                    log.warning("stopping a client failed", error=str(exc))
        if self.pool is not None:
            await self.pool.close()
        if self.stores is not None:
            await self.stores.close()

    @property
    def healthy(self) -> bool:
        return self._running

    @property
    def handled(self) -> int:
        return sum(keyed.handled for keyed in self.keyed)

    async def run(self) -> None:
        assert self.keyed
        tasks = [asyncio.create_task(self.run_timer(), name="saga-deadlines")]
        tasks += [asyncio.create_task(keyed.run()) for keyed in self.keyed]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # a crash of any loop restarts the driver
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def handle_batch(self, batches: dict[TopicPartition, list], consumer: AIOKafkaConsumer | None = None) -> None:
        """Handle one batch read by `consumer` (the saga events' by default) and commit it."""
        consumer = consumer or self.consumer
        await next(keyed for keyed in self.keyed if keyed.consumer is consumer).handle_batch(batches)

    async def handle(self, record) -> str:
        if carried(record):
            return "carried"
        try:
            decoded = self.codec.decode(record.value)
        except DecodeError as exc:
            # The projector dead-letters undecodable saga events; here they are just not ours.
            log.warning("undecodable record skipped", topic=record.topic, reason=exc.reason, offset=record.offset)
            return "undecodable"
        if decoded.name == OUTCOME_SCHEMA:
            return await self.record_spoke_answer(decoded.record)
        trigger = self.triggers.get((record.topic[len(self.settings.topic_prefix) :], decoded.name))
        if trigger is not None:
            return await self.start_saga(trigger, decoded.record)
        if decoded.name not in REQUESTS:
            return "ignored"
        event = decoded.record
        env = event["envelope"]
        saga_id, tenant_id = env["aggregate_id"], env["tenant_id"]
        kind = "compensation" if decoded.name == COMPENSATION_REQUESTED else "action"
        deadline = event["deadline_at"]
        remaining = (deadline - datetime.now(UTC)).total_seconds()
        if remaining <= 0:
            log.info("request past its deadline not re-sent", saga=saga_id, step=event["step"], attempt=event["attempt"])
            return "past_deadline"
        target = event["target_hub"]
        if target.startswith("spoke.") and target.removeprefix("spoke.") in self.spokes:
            await self.request_spoke(target.removeprefix("spoke."), kind, event)
            return "requested"
        hub = self.hubs.get(target)
        if hub is None:
            log.warning("no hub or spoke by this name; its deadline will fail the step", target=target, saga=saga_id)
            return "unroutable"
        command = command_of(hub, event["command_type"], event["command_json"])
        try:
            result = await self.commands.send(command, timeout=remaining + 0.5)
        except CommandTimeout:
            log.warning(
                "no answer by the deadline; the timer fails it", saga=saga_id, step=event["step"], attempt=event["attempt"]
            )
            return "timed_out"
        succeeded, detail, result_json = result_of(result)
        meta = answer_meta(saga_id, event["step"], kind, event["attempt"], tenant_id, env["correlation_id"], event["command_id"])
        await self._send_to_saga(RecordStepResult(meta, event["step"], event["attempt"], succeeded, detail, result_json))
        return "answered" if succeeded else "refused"

    async def request_spoke(self, spoke: str, kind: str, event: dict) -> None:
        """Put a spoke step on `spoke.<name>.requests`; the answer comes back as a SpokeOutcome."""
        env = event["envelope"]
        topic = self.settings.topic(f"spoke.{spoke}.requests")
        value = self.codec.encode(REQUEST_SCHEMA, spoke_request(event, spoke, kind))
        await self.producer.send_and_wait(topic, value, key=env["aggregate_id"].encode(), headers=list(tracing.headers()))
        log.info("step sent to spoke", spoke=spoke, saga=env["aggregate_id"], step=event["step"], attempt=event["attempt"])

    async def record_spoke_answer(self, outcome: dict) -> str:
        answer = spoke_answer(outcome)
        if answer is None:
            return "ignored"  # a spoke's own reaction or an interim try, not a saga answer
        await self._send_to_saga(answer)
        return "answered" if answer.succeeded else "refused"

    async def start_saga(self, definition: SagaDefinition, record: dict) -> str:
        trigger = definition.trigger
        facts = await trigger.lookup(self.reads, self.settings, record) if trigger.lookup is not None else {}
        body = trigger.start(record, facts)
        if body is None:
            return "ignored"
        command = start_command(definition, record, body, ACTOR, tracing.current_trace_id())
        # Durable is enough: the saga id and the command id are derived from the record, so
        # a trigger read twice starts one saga, and waiting for the saga hub's answer would
        # hold every later record of this partition behind it (the keyed consumer's order).
        await self.commands.post(command)
        log.info("saga start sent", saga_type=definition.name, saga=command.meta.aggregate_id)
        return "started"

    async def _send_to_saga(self, command: Command) -> CommandResult:
        """Send until the saga hub answers (same command id every time)."""
        while True:
            try:
                result = await self.commands.send(command, timeout=RESULT_TIMEOUT_S)
            except CommandTimeout:
                log.warning("saga hub did not answer; re-sending", command=type(command).__name__, saga=command.meta.aggregate_id)
                continue
            if not result.accepted:
                # Stale (the saga moved on) or finished: the saga's own rule, recorded in command-results.
                log.info("saga refused", command=type(command).__name__, rule=result.rejection, reason=result.reason[:200])
            return result

    async def run_timer(self) -> None:
        while True:
            await asyncio.sleep(TIMER_INTERVAL_S)
            try:
                await self.fail_overdue()
            except (*PLATFORM_OUTAGE, asyncpg.PostgresError) as exc:
                log.warning("deadline scan failed; retrying", error=str(exc)[:300])

    async def fail_overdue(self) -> int:
        """Send FailOverdueStep for every request past its deadline; returns how many."""
        assert self.pool is not None
        now = datetime.now(UTC)
        rows = await overdue_requests(self.pool, now)
        sent = 0
        for row in rows:
            key = (row["saga_id"], row["current_step"], row["pending_attempt"])
            if key in self._overdue_sent:
                continue  # sent; the read store has not caught up yet
            meta = CommandMeta(
                command_id=derived_command_id(*key, "overdue"),
                aggregate_id=row["saga_id"],
                tenant_id=row["tenant_id"],
                correlation_id=row["correlation_id"],
                causation_id=row["saga_id"],
                actor=ACTOR,
                issued_at=now,
            )
            self._overdue_sent.add(key)
            log.info("step overdue", saga=key[0], step=key[1], attempt=key[2])
            task = asyncio.create_task(self._send_to_saga(FailOverdueStep(meta, row["current_step"], row["pending_attempt"])))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
            sent += 1
        return sent
