"""The typed command client: sends any hub's command and awaits its result by
command id. What services, sagas, tests and the operator CLI use; it decides
nothing itself."""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from base.settings import Settings
from infra import tracing
from infra.consumers import fetch_options
from infra.hub import HubSpec, command_to_record
from schemas.codec import Codec, DecodeError
from schemas.contracts import Command, CommandMeta

log = structlog.get_logger(__name__)


class CommandRejected(Exception):
    """Raised by `CommandResult.raise_for_rejection()`."""

    def __init__(self, result: CommandResult):
        super().__init__(f"{result.rejection}: {result.reason}")
        self.result = result


class CommandTimeout(TimeoutError):
    """No result arrived in time. The command may still be applied later: resend
    it with the same command id to learn its outcome without applying it twice."""


@dataclass(frozen=True)
class CommandResult:
    command_id: str
    accepted: bool
    version: int
    rejection: str
    """Name of the rule that refused the command; empty when accepted."""
    reason: str
    event_ids: tuple[str, ...]
    event_types: tuple[str, ...]
    """Full Avro names of the events, in the order of `event_ids`."""
    duplicate: bool
    """True when the command id had been decided before; this is that first outcome."""

    def raise_for_rejection(self) -> CommandResult:
        if not self.accepted:
            raise CommandRejected(self)
        return self


_correlation: contextvars.ContextVar[str | None] = contextvars.ContextVar("poseidon_correlation", default=None)


def set_current_correlation(correlation_id: str | None) -> contextvars.Token:
    """The correlation id of the request being served (a gRPC call's `x-correlation-id`,
    the API gateway's): commands built meanwhile carry it, and so do their events."""
    return _correlation.set(correlation_id)


def new_meta(
    aggregate_id: str,
    tenant_id: str,
    *,
    actor: str = "system",
    command_id: str | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    expected_version: int | None = None,
) -> CommandMeta:
    command_id = command_id or str(uuid.uuid4())
    return CommandMeta(
        command_id=command_id,
        aggregate_id=aggregate_id,
        tenant_id=tenant_id,
        correlation_id=correlation_id or _correlation.get() or command_id,
        causation_id=causation_id or command_id,
        actor=actor,
        expected_version=expected_version,
    )


class CommandClient:
    """Producer (acks=all, idempotent) for `<hub>.commands` plus a reader of
    `<hub>.command-results` that resolves waiting futures by command id.

    Results are read with isolation_level=read_committed, so a result is only
    seen once the processor's transaction (events + state + offset) committed.

    The processor stores a command's result in the partition of the results topic
    with the command's own partition number, so the client picks the command's
    partition itself (Kafka's default partitioner over the key) and reads only
    the results partitions it has sent to, starting from their end at the first
    send: a client of one aggregate reads a quarter of the results, not all of
    every hub's.
    """

    def __init__(self, settings: Settings, codec: Codec, hubs: Iterable[HubSpec]):
        self.settings, self.codec = settings, codec
        self.hubs = {hub.name: hub for hub in hubs}
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._waiting: dict[str, asyncio.Future[CommandResult]] = {}
        self._reader: asyncio.Task | None = None
        self._partitioner = DefaultPartitioner()
        self._watched: set[TopicPartition] = set()
        self._watching = asyncio.Lock()
        self._watched_any = asyncio.Event()

    async def __aenter__(self) -> CommandClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=1
        )
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            isolation_level="read_committed",
            enable_auto_commit=False,
            group_id=None,
            **fetch_options(self.settings),
        )
        await self._consumer.start()
        self._reader = asyncio.create_task(self._read_results(), name="command-results-reader")

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except asyncio.CancelledError:
                pass
        for fut in self._waiting.values():
            fut.cancel()
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def send(self, command: Command, timeout: float = 30.0) -> CommandResult:
        """Send and await the result. Resending the same command id is safe."""
        fut = await self.submit(command)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise CommandTimeout(f"no result for {type(command).__name__} {command.meta.command_id} in {timeout}s") from None
        finally:
            self._waiting.pop(command.meta.command_id, None)

    async def submit(self, command: Command) -> asyncio.Future[CommandResult]:
        """Send without waiting for the result; returns the future that will hold it."""
        assert self._producer is not None, "CommandClient.start() first"
        loop = asyncio.get_running_loop()
        fut = self._waiting.setdefault(command.meta.command_id, loop.create_future())
        await self._send(command, watch=True)
        return fut

    async def post(self, command: Command) -> None:
        """Send and return once the broker has it (acks=all), without waiting for the
        hub's decision: for a sender that needs the command durable, not its outcome
        (a resend with the same id is answered, never applied twice)."""
        assert self._producer is not None, "CommandClient.start() first"
        await self._send(command, watch=False)

    async def _send(self, command: Command, watch: bool) -> None:
        hub = self.hubs[command.hub]
        value = self.codec.encode(command.avro_name(), command_to_record(command))
        topic, key = self.settings.topic(hub.topic("commands")), command.meta.aggregate_id.encode()
        partitions = sorted(await self._producer.partitions_for(topic))
        partition = self._partitioner(key, partitions, partitions)
        if watch:
            await self._watch(TopicPartition(self.settings.topic(hub.topic("command-results")), partition))
        await self._producer.send_and_wait(
            topic,
            value,
            key=key,
            partition=partition,
            headers=[("correlation_id", command.meta.correlation_id.encode()), *tracing.headers()],
        )

    async def _watch(self, tp: TopicPartition) -> None:
        """Read `tp` from its end on (before the command is sent, so its result
        cannot be missed); the partitions read so far keep their positions."""
        if tp in self._watched:
            return
        assert self._consumer is not None
        async with self._watching:
            if tp in self._watched:
                return
            # Positions count what was handed to the reader: re-reading from there
            # repeats results (ignored: their futures are done), never skips one.
            positions = {t: await self._consumer.position(t) for t in self._watched}
            self._consumer.assign([*self._watched, tp])
            for t, offset in positions.items():
                self._consumer.seek(t, offset)
            await self._consumer.seek_to_end(tp)
            await self._consumer.position(tp)
            self._watched.add(tp)
            self._watched_any.set()

    async def _read_results(self) -> None:
        assert self._consumer is not None
        await self._watched_any.wait()
        while True:
            batches = await self._consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    fut = self._waiting.get(record.key.decode() if record.key else "")
                    if fut is None or fut.done():
                        continue
                    try:
                        r = self.codec.decode(record.value).record
                    except DecodeError as exc:
                        log.warning("undecodable command result", reason=exc.reason, offset=record.offset)
                        continue
                    fut.set_result(
                        CommandResult(
                            command_id=r["command_id"],
                            accepted=r["outcome"] == "ACCEPTED",
                            version=r["version"],
                            rejection=r["rejection"],
                            reason=r["reason"],
                            event_ids=tuple(r["event_ids"]),
                            event_types=tuple(r["event_types"]),
                            duplicate=r["duplicate"],
                        )
                    )
