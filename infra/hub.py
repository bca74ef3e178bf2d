"""What a hub declares to the shared machinery (`HubSpec`) and the pure step the
aggregate processor runs for each command (`decide`). No I/O here: the processor
owns Kafka, this module owns the rules every hub shares (tenant ownership,
expected version, rejection capture, snapshotting, event → Avro record)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate, CanMutateProtocol, Snapshot
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, UUIDAsHex

from schemas.contracts import Command, CommandMeta, InvalidCommand, Rejected, TenantMismatch, VersionConflict

# Attributes of an eventsourcing domain event that the envelope already carries.
_ENVELOPE_ATTRIBUTES = frozenset({"originator_id", "originator_version", "timestamp", "originator_topic"})


@dataclass(frozen=True)
class HubSpec:
    """Everything the shared processor, projector, gRPC bootstrap and CLI need to
    know about one hub. A new hub is a folder that builds one of these."""

    name: str
    """Lower-case hub name: topic prefix (`wallet.commands`), schema namespace, CLI group."""
    aggregate: type[Aggregate]
    """The eventsourcing Aggregate class — or the base class of the hub's aggregate
    classes (the App hub has apps and subscriptions); every instance has a
    `tenant_id`. The machinery never builds it: the handler does, and snapshots
    restore each aggregate as its own class."""
    commands: Sequence[type[Command]]
    """Command classes; each has an Avro schema `poseidon.<hub>.commands.<Class>`."""
    handle: Callable[[Aggregate | None, Command], Aggregate]
    """The single handler: returns the aggregate with pending events or raises Rejected."""
    cli_verbs: Mapping[str, type[Command]] = dataclasses.field(default_factory=dict)
    """Operator CLI verb → command (`poseidon wallet credit …`)."""
    aggregate_option: str = "id"
    """CLI option naming the aggregate id (`--wallet`)."""
    aggregate_is_tenant: bool = False
    """The aggregate id is the tenant id (the Tenant hub): the CLI asks for it once."""
    grpc_port: int = dataclasses.field(kw_only=True)
    """Port of the hub's gRPC query service (wallet: 50056); POSEIDON_GRPC_PORT_<HUB> overrides it."""
    ops_index: int = dataclasses.field(kw_only=True)
    """Added to each role's ops-port base (processor 9100, projector 9200, gRPC 9300, router 9500):
    wallet's 6 gives 9106. Unique among the hubs."""
    outbox: Callable[[str, Mapping[str, Any]], Sequence[Dispatch]] | None = dataclasses.field(default=None, kw_only=True)
    """(event name, event record) → records the processor sends in the same transaction
    as that event: what makes a hub a process manager (the Saga hub sends each step's
    command with the StepRequested that asks for it). Pure; None: events only."""
    translate: Callable[[str, Mapping[str, Any], Mapping[str, bytes]], Command | None] | None = dataclasses.field(
        default=None, kw_only=True
    )
    """(record name, decoded record, headers) → this hub's command for a record on its
    commands topic that is not one of its commands (an answer sent to it: a hub's
    CommandResult or a spoke's outcome, see `Dispatch.reply_ref`); None: not ours
    (dead-lettered). Pure and deterministic: the command id must be derived, so an
    answer read twice is decided once."""

    def topic(self, kind: str) -> str:
        """Logical topic name: `<hub>.commands`, `<hub>.events`, `<hub>.command-results`."""
        return f"{self.name}.{kind}"

    def command_type(self, avro_name: str) -> type[Command]:
        for cls in self.commands:
            if cls.avro_name() == avro_name:
                return cls
        raise InvalidCommand(f"{avro_name} is not a command of the {self.name} hub")

    def event_name(self, domain_event: object) -> str:
        return f"poseidon.{self.name}.{type(domain_event).__name__}"


@dataclass(frozen=True)
class Dispatch:
    """One record a hub's `outbox` sends beside an event, in the event's transaction,
    to `topic` (logical name) in the partition of `key`.

    `reply_ref`: this record is a request whose answer comes back to the sending
    hub: the processor puts the reply address on it (headers `reply_to`: the
    sender's commands topic, `reply_key`: the sender's aggregate id, `reply_ref`:
    these bytes), and whoever answers (a hub's processor, a spoke) sends its answer
    there too, with `reply_ref` echoed; the sender's `translate` reads it."""

    topic: str
    key: str
    schema: str
    """Full Avro name of `record`."""
    record: Mapping[str, Any]
    reply_ref: bytes | None = None


RESULT_SCHEMA = "poseidon.CommandResult"
"""A processor's answer to a command (on `<hub>.command-results`, and to a reply address)."""
REQUEST_SCHEMA = "poseidon.spoke.SpokeRequested"
OUTCOME_SCHEMA = "poseidon.spoke.SpokeOutcome"
"""A spoke's request (a saga step done by a spoke) and its outcome."""

REPLY_TO, REPLY_KEY, REPLY_REF = "reply_to", "reply_key", "reply_ref"
"""Headers of a request that wants its answer sent back (`Dispatch.reply_ref`)."""
DISPATCHED = "dispatched"
"""Header on an event whose outbox records went out in its transaction."""


def answer_topics(hubs: Iterable[HubSpec], topic_of: Callable[[str], str]) -> frozenset[str]:
    """The installation's topics an answer may be sent to: the commands topics of
    the hubs that read answers (`HubSpec.translate`)."""
    return frozenset(topic_of(hub.topic("commands")) for hub in hubs if hub.translate is not None)


def reply_address(headers: Sequence[tuple[str, bytes]] | None, allowed: Collection[str]) -> tuple[str, bytes, bytes] | None:
    """(topic, key, ref) of a record that asks for its answer to be sent back, or
    None. Only an `allowed` topic (`answer_topics`) is an address: a forged or stale
    header can make a processor or a spoke write nowhere else — not another
    installation's topics, not a topic that does not exist (which would fail the
    transaction it is sent in, again on every restart)."""
    found = {name: value for name, value in headers or () if name in (REPLY_TO, REPLY_KEY, REPLY_REF)}
    topic = found.get(REPLY_TO, b"").decode("utf-8", "replace")
    if topic not in allowed or REPLY_KEY not in found:
        return None
    return topic, found[REPLY_KEY], found.get(REPLY_REF, b"")


@dataclass(frozen=True)
class Decision:
    """The outcome of one command: new events (accepted) or the rule that refused it."""

    aggregate: Aggregate | None
    events: list[Any]
    rejection: Rejected | None

    @property
    def accepted(self) -> bool:
        return self.rejection is None

    @property
    def version(self) -> int:
        return self.aggregate.version if self.aggregate is not None else 0


def decide(hub: HubSpec, aggregate: Aggregate | None, command: Command) -> Decision:
    """Apply the shared rules, then the hub's handler. Never raises Rejected: a
    refusal is part of the decision. Any other exception is a bug and propagates."""
    meta = command.meta
    try:
        if aggregate is not None and getattr(aggregate, "tenant_id", None) != meta.tenant_id:
            # Same answer as a missing aggregate would be too revealing; name the rule, not the owner.
            raise TenantMismatch(f"{hub.name} {meta.aggregate_id} does not belong to tenant {meta.tenant_id}")
        current = aggregate.version if aggregate is not None else 0
        if meta.expected_version is not None and meta.expected_version != current:
            raise VersionConflict(f"expected version {meta.expected_version} but {hub.name} {meta.aggregate_id} is at {current}")
        result = hub.handle(aggregate, command)
        return Decision(result, list(result.collect_events()), None)
    except Rejected as rejection:
        return Decision(aggregate, [], rejection)


def event_payload(domain_event: object, field_names: Sequence[str]) -> dict[str, Any]:
    """The payload fields of a domain event that its Avro schema declares."""
    attrs = {k: v for k, v in vars(domain_event).items() if k not in _ENVELOPE_ATTRIBUTES}
    missing = [f for f in field_names if f not in attrs]
    if missing:
        raise ValueError(f"{type(domain_event).__qualname__} lacks schema fields {missing}")
    return {f: attrs[f] for f in field_names}


def event_record(
    meta: CommandMeta, name: str, domain_event: Any, field_names: Sequence[str], *, event_id: str, previous_hash: str = ""
) -> dict[str, Any]:
    """The Avro record (`name`) of one domain event a command produced: the envelope
    from the command's meta and the event's version and time, the payload from the event."""
    return {
        "envelope": envelope(
            name,
            event_id=event_id,
            aggregate_id=meta.aggregate_id,
            aggregate_version=domain_event.originator_version,
            tenant_id=meta.tenant_id,
            correlation_id=meta.correlation_id,
            causation_id=meta.command_id,
            occurred_at=domain_event.timestamp,
            actor=meta.actor,
            previous_hash=previous_hash,
        ),
        **event_payload(domain_event, field_names),
    }


def envelope(
    event_type: str,
    *,
    event_id: str,
    aggregate_id: str,
    correlation_id: str,
    causation_id: str,
    occurred_at: datetime,
    actor: str,
    aggregate_version: int = 0,
    tenant_id: str = "",
    previous_hash: str = "",
) -> dict[str, Any]:
    """The envelope (`schemas/common/Envelope.v1.avsc`) of every event record, whoever emits it (a hub's
    processor, a spoke, the saga driver): one place names its fields."""
    return {
        "event_id": event_id,
        "event_type": event_type,
        "aggregate_id": aggregate_id,
        "aggregate_version": aggregate_version,
        "tenant_id": tenant_id,
        "correlation_id": correlation_id,
        "causation_id": causation_id,
        "occurred_at": occurred_at,
        "actor": actor,
        "previous_hash": previous_hash,
    }


def command_from_record(hub: HubSpec, avro_name: str, record: Mapping[str, Any]) -> Command:
    """Turn a decoded command record into the hub's typed command."""
    cls = hub.command_type(avro_name)
    meta = CommandMeta(**record["meta"])
    kwargs = {k: v for k, v in record.items() if k != "meta"}
    try:
        return cls(meta=meta, **kwargs)
    except TypeError as exc:
        raise InvalidCommand(f"{avro_name}: {exc}") from exc


def command_to_record(command: Command) -> dict[str, Any]:
    return {"meta": dataclasses.asdict(command.meta), **command.payload()}


class SnapshotCodec:
    """Aggregate state ⇄ bytes for the processor's changelog-backed table, using
    eventsourcing's own snapshot and transcoder (UUIDs and datetimes included)."""

    def __init__(self) -> None:
        self._transcoder = JSONTranscoder()
        self._transcoder.register(UUIDAsHex())
        self._transcoder.register(DatetimeAsISO())

    def dumps(self, aggregate: Aggregate, last_hash: str) -> bytes:
        snap = Snapshot.take(aggregate)
        return self._transcoder.encode(
            {
                "id": snap.originator_id,
                "version": snap.originator_version,
                "timestamp": snap.timestamp,
                "topic": snap.topic,
                "state": snap.state,
                "last_hash": last_hash,
            }
        )

    def loads(self, data: bytes) -> tuple[Aggregate, str]:
        d = self._transcoder.decode(data)
        snap = Snapshot(
            originator_id=d["id"],
            originator_version=d["version"],
            timestamp=d["timestamp"],
            topic=d["topic"],
            state=d["state"],
        )
        mutator: CanMutateProtocol = snap
        return mutator.mutate(None), d["last_hash"]


def new_event_id() -> str:
    return str(uuid.uuid4())


def millis(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)
