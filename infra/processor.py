"""The one aggregate processor every hub runs on: a faust agent that consumes
`<hub>.commands`, loads the aggregate from a changelog-backed table, decides, and
emits events, the command result and dead letters. With exactly-once on, all of
that and the consumer offset commit in one Kafka transaction per partition.
It owns no business rule: those are the hub's `handle` and `infra.hub.decide`."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
import structlog

from base.logging import bind_correlation
from base.settings import Settings
from infra import metrics
from infra.dlq import DeadLetters, Origin
from infra.hub import (
    HubSpec,
    SnapshotCodec,
    command_from_record,
    decide,
    event_record,
    new_event_id,
)
from infra.ops import OpsServer
from infra.topics import PROCESSOR_TABLES, processor_app_id
from schemas.codec import Codec, DecodeError, EncodeError
from schemas.contracts import Command, Rejected

log = structlog.get_logger(__name__)

CONTENT_TYPE = b"application/vnd.poseidon.avro"
RESULT_SCHEMA = "poseidon.CommandResult"


@dataclass
class Outgoing:
    """One record the processor emits for the command being handled."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


class AggregateProcessor:
    """Builds the faust app for one hub. `run()` starts a worker (blocking)."""

    def __init__(self, hub: HubSpec, settings: Settings, codec: Codec):
        self.hub, self.settings, self.codec = hub, settings, codec
        self.snapshots = SnapshotCodec()
        self.process_name = f"{hub.name}-processor"
        self.commands_topic_name = settings.topic(hub.topic("commands"))
        self.events_topic_name = settings.topic(hub.topic("events"))
        self.results_topic_name = settings.topic(hub.topic("command-results"))
        self.dlq_topic_name = settings.topic(hub.topic("commands.dlq"))
        # Sent in the command's transaction, not by the publisher's producer.
        self.dead_letters = DeadLetters(
            None, codec, self.process_name, self.dlq_topic_name, event="dead-lettering command record"
        )
        self._event_fields = {
            name: [f["name"] for f in codec.catalog.latest(name).parsed["fields"] if f["name"] != "envelope"]
            for name in codec.catalog.names()
            if name.startswith(f"poseidon.{hub.name}.") and ".commands." not in name
        }
        self.app = self._build_app()

    def _build_app(self) -> faust.App:
        s = self.settings
        datadir = Path(s.state_dir) / f"{s.topic_prefix}{self.hub.name}-processor"
        datadir.mkdir(parents=True, exist_ok=True)
        app = faust.App(
            s.topic(processor_app_id(self.hub)),
            broker=[f"kafka://{server}" for server in s.kafka_bootstrap.split(",")],
            processing_guarantee=s.processing_guarantee,
            store="memory://",
            datadir=str(datadir),
            web_enabled=False,
            # Transactions commit at this interval: it bounds command-result latency.
            broker_commit_interval=s.commit_interval_ms / 1000.0,
            topic_partitions=s.topic_partitions,
            topic_replication_factor=s.topic_replication,
            topic_allow_declare=True,  # faust declares its own changelog topics, explicitly and compacted
            consumer_auto_offset_reset="earliest",
            producer_acks=-1,
            # A few ms of linger turns one-record batches into real ones (+~45 % throughput measured).
            producer_linger=0.005,
            # A killed worker's partitions move on after this, not faust's default 60 s.
            broker_session_timeout=10.0,
            broker_heartbeat_interval=2.0,
            # Values are Avro (topics) or snapshot bytes (tables): faust must not touch them.
            key_serializer="raw",
            value_serializer="raw",
        )
        commands_topic = app.topic(
            self.commands_topic_name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=s.topic_partitions,
        )
        # Both tables are written while handling a command, so faust puts their
        # changelog records in the command's partition and in its transaction.
        self.aggregate_states = app.Table(
            f"{self.hub.name}-{PROCESSOR_TABLES[0]}",
            partitions=s.topic_partitions,
            key_type=bytes,
            value_type=bytes,
        )
        self.command_outcomes = app.Table(
            f"{self.hub.name}-{PROCESSOR_TABLES[1]}",
            partitions=s.topic_partitions,
            key_type=bytes,
            value_type=bytes,
        )

        async def process_commands(stream: faust.Stream) -> None:
            async for event in stream.events():
                await self.handle(app, event)

        app.agent(commands_topic, name=f"{self.hub.name}.process_commands", concurrency=1)(process_commands)

        ops = OpsServer(
            s.ops_host,
            s.ops_port_for("processor", self.hub.name),
            self.process_name,
            {"kafka_consumer": lambda: app.consumer is not None and not app.should_stop, "agent": lambda: _agents_alive(app)},
        )

        @app.task
        async def start_ops() -> None:
            await ops.start()

        return app

    def run(self) -> None:
        from base.logging import dict_config

        worker = faust.Worker(
            self.app,
            loglevel=self.settings.log_level,
            logging_config=dict_config(self.settings.log_level, self.settings.log_format),
            quiet=True,
        )
        started = time.monotonic()
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            if exc.code in (0, None):  # stopped on purpose (SIGTERM / SIGINT)
                raise
            restart_after_crash(self.process_name, exc.code, time.monotonic() - started)

    # -- one command ------------------------------------------------------

    async def handle(self, app: faust.App, event: faust.EventT) -> None:
        started = time.perf_counter()
        message = event.message
        outgoing, outcome = self.process(message.topic, message.partition, message.offset, message.key, message.value)
        tid = self._transactional_id(app, message.topic, message.partition)
        for record in outgoing:
            # Sent through the transactional producer of the source partition, so
            # faust commits them together with the table changes and the offset.
            await app.producer.send(
                record.topic, record.key, record.value, message.partition, None, record.headers, transactional_id=tid
            )
        metrics.RECORDS_PROCESSED.labels(self.process_name, self.hub.name, outcome).inc()
        metrics.LATENCY.labels(self.process_name, self.hub.name).observe(time.perf_counter() - started)
        if message.offset % 100 == 0:
            highwater = app.consumer.highwater(message.tp) if app.consumer else None
            if highwater is not None:
                metrics.LAG.labels(self.process_name, message.topic, str(message.partition)).set(
                    max(highwater - message.offset - 1, 0)
                )

    def _transactional_id(self, app: faust.App, topic: str, partition: int) -> str | None:
        if self.settings.processing_guarantee != "exactly_once":
            return None
        return f"{app.conf.id}-{app.assignor.group_for_topic(topic)}-{partition}"

    def process(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> tuple[list[Outgoing], str]:
        """Decide one command record; returns what to emit and an outcome label.
        Table writes happen here; sends are the caller's (one transaction)."""
        try:
            decoded = self.codec.decode(value)
            command = command_from_record(self.hub, decoded.name, decoded.record)
            if key is None or key.decode("utf-8", "replace") != command.meta.aggregate_id:
                raise Rejected(f"record key {key!r} differs from the command's aggregate id {command.meta.aggregate_id!r}")
        except (DecodeError, Rejected, KeyError, TypeError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, DecodeError) else f"{type(exc).__name__}: {exc}"
            return [self._dead_letter(topic, partition, offset, key, value, reason, type(exc).__name__)], "dead_lettered"

        meta = command.meta
        bind_correlation(meta.correlation_id, command_id=meta.command_id, hub=self.hub.name, aggregate_id=meta.aggregate_id)
        outcome_key = f"{meta.aggregate_id}\x00{meta.command_id}".encode()
        earlier = self.command_outcomes.get(outcome_key)
        if earlier is not None:
            log.info("duplicate command answered with its first outcome")
            record = self.codec.decode(earlier).record
            record.update(duplicate=True, decided_at=datetime.now(UTC))
            return [self._result(record)], "duplicate"

        try:
            return self._apply(command, outcome_key)
        except (EncodeError, ValueError, TypeError, AttributeError, KeyError, AssertionError) as exc:
            # A bug in a hub's rules or schemas must not stop the partition: the
            # command is parked, with the reason, for an operator to re-drive.
            # Only the type: exception texts (fastavro's included) may quote personal
            # data; the full reason travels in the dead letter, not in the log.
            log.error("command could not be applied", error_type=type(exc).__name__)
            metrics.FAILURES.labels(self.process_name, self.hub.name, type(exc).__name__).inc()
            return [
                self._dead_letter(topic, partition, offset, key, value, f"{type(exc).__name__}: {exc}", "ApplyError")
            ], "dead_lettered"

    def _apply(self, command: Command, outcome_key: bytes) -> tuple[list[Outgoing], str]:
        meta = command.meta
        state_key = meta.aggregate_id.encode()
        stored = self.aggregate_states.get(state_key)
        aggregate, last_hash = self.snapshots.loads(stored) if stored is not None else (None, "")
        decision = decide(self.hub, aggregate, command)
        outgoing: list[Outgoing] = []
        event_ids: list[str] = []
        event_types: list[str] = []
        if decision.accepted:
            for domain_event in decision.events:
                name = self.hub.event_name(domain_event)
                event_id = new_event_id()
                record = event_record(
                    meta, name, domain_event, self._event_fields[name], event_id=event_id, previous_hash=last_hash
                )
                value = self.codec.encode(name, record)
                last_hash = hashlib.sha256(value).hexdigest()
                event_ids.append(event_id)
                event_types.append(name)
                outgoing.append(Outgoing(self.events_topic_name, state_key, value, self._headers(name, meta)))
            self.aggregate_states[state_key] = self.snapshots.dumps(decision.aggregate, last_hash)
            log.info("command accepted", command=type(command).__name__, version=decision.version, events=len(event_ids))
        else:
            log.info(
                "command rejected", command=type(command).__name__, rule=decision.rejection.rule, reason=str(decision.rejection)
            )
        result = {
            "command_id": meta.command_id,
            "command_type": type(command).avro_name(),
            "hub": self.hub.name,
            "aggregate_id": meta.aggregate_id,
            "tenant_id": meta.tenant_id,
            "correlation_id": meta.correlation_id,
            "outcome": "ACCEPTED" if decision.accepted else "REJECTED",
            "version": decision.version,
            "rejection": "" if decision.accepted else decision.rejection.rule,
            "reason": "" if decision.accepted else str(decision.rejection),
            "event_ids": event_ids,
            "event_types": event_types,
            "duplicate": False,
            "decided_at": datetime.now(UTC),
        }
        result_out = self._result(result)
        self.command_outcomes[outcome_key] = result_out.value
        outgoing.append(result_out)
        return outgoing, "accepted" if decision.accepted else "rejected"

    def _result(self, record: dict[str, Any]) -> Outgoing:
        value = self.codec.encode(RESULT_SCHEMA, record)
        headers = [
            ("content-type", CONTENT_TYPE),
            ("correlation_id", record["correlation_id"].encode()),
            ("outcome", record["outcome"].encode()),
        ]
        return Outgoing(self.results_topic_name, record["command_id"].encode(), value, headers)

    def _headers(self, event_type: str, meta: Any) -> list[tuple[str, bytes]]:
        return [
            ("content-type", CONTENT_TYPE),
            ("event_type", event_type.encode()),
            ("correlation_id", meta.correlation_id.encode()),
            ("tenant_id", meta.tenant_id.encode()),
        ]

    def _dead_letter(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, reason: str, error_type: str
    ) -> Outgoing:
        letter = self.dead_letters.letter(Origin(topic, partition, offset, key, value), reason, error_type)
        self.dead_letters.parked(letter)
        return Outgoing(letter.topic, key or b"", letter.value, letter.headers)


def _agents_alive(app: faust.App) -> bool:
    """False while any agent actor is crashed (faust's supervisor restarts it; a
    crash loop must show as unhealthy, not as a silent stall)."""
    for agent in app.agents.values():
        for actor in getattr(agent, "_actors", ()):
            if getattr(actor, "crashed", False):
                return False
    return True


RESTARTS_ENV = "POSEIDON_PROCESSOR_RESTARTS"


def restart_after_crash(process: str, code: object, ran_s: float) -> None:
    """The faust worker stopped on a crash (faust exits 1 when, for instance, its
    consumer dies as the broker goes away mid-transaction): start it again in the
    same process (same PID, so PID files and supervisors stay right), after a
    back-off that grows with each crash in a row (2 s … 60 s; a run of 5 minutes
    starts the count again). Recovery is the same as after a SIGKILL: exactly-once
    state comes back from the changelogs."""
    restarts = 0 if ran_s > 300 else int(os.environ.get(RESTARTS_ENV, "0") or 0)
    pause = min(2.0 * 2**restarts, 60.0)
    log.error("processor crashed; restarting", process=process, exit_code=code, restarts=restarts, pause_s=pause)
    time.sleep(pause)
    os.environ[RESTARTS_ENV] = str(restarts + 1)
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
