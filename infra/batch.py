"""Deciding one partition's batch of commands, with no I/O: what the aggregate
processor sends in the batch's transaction (events, results, dead letters, one
state record per changed aggregate) and what it remembers afterwards. Kafka, the
transaction and the restore are `infra.processor`'s; the rules are the hub's."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import structlog
from eventsourcing.domain import Aggregate

from base.logging import bind_correlation
from infra import tracing
from infra.dlq import DeadLetters, Origin
from infra.hub import (
    DISPATCHED,
    REPLY_KEY,
    REPLY_REF,
    REPLY_TO,
    RESULT_SCHEMA,
    HubSpec,
    SnapshotCodec,
    command_from_record,
    decide,
    event_record,
    new_event_id,
    reply_address,
)
from infra.provenance import EventKeys
from schemas.codec import Codec, DecodeError, EncodeError
from schemas.contracts import Command, Rejected

log = structlog.get_logger(__name__)

CONTENT_TYPE = b"application/vnd.poseidon.avro"
MAX_BATCH_BYTES = 1024 * 1024
"""The processor's producer batch: room for a poll batch's records of one topic partition."""
MAX_RECORD_BYTES = MAX_BATCH_BYTES - 16 * 1024
"""The largest event or outbox record a command may produce (room left for key, headers
and the batch's own framing): a larger one parks its command with the reason, as no
producer batch could carry it and the whole partition's transaction would fail on it."""
AGGREGATE_HEADER = "aggregate_id"
"""Results carry their aggregate id in a header, so restoring the dedup window needs no decoding."""


class Outgoing(NamedTuple):
    """One record the batch sends: to the source partition's number (the hub's own
    topics, co-partitioned with its commands), or, `keyed`, to the partition of its
    key in its topic (an outbox record, an answer: another aggregate's partition)."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    keyed: bool = False


class Incoming(NamedTuple):
    """One consumed command record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def outcome_key(aggregate_id: str, command_id: str) -> bytes:
    """A command id is deduplicated per aggregate."""
    return f"{aggregate_id}\x00{command_id}".encode()


@dataclass
class PartitionMemory:
    """What the processor remembers of one command partition it owns: every
    aggregate's stored state (the bytes of its changelog record, so a restore is
    a plain read of that changelog) and where the recent command outcomes sit in
    the results topic — a window bounded in time and count, so memory and restore
    time do not grow with history. An id resent after it left the window is
    decided again (its expected version, if it carries one, still guards it)."""

    window_s: float
    max_outcomes: int
    states: dict[bytes, bytes] = field(default_factory=dict)
    outcomes: OrderedDict[bytes, tuple[float, int]] = field(default_factory=OrderedDict)
    """Outcome key → (decided at, epoch seconds; offset of its result record), oldest first."""

    def remember(self, key: bytes, at: float, offset: int) -> None:
        if key not in self.outcomes:  # the first outcome is the answer; later duplicates repeat it
            self.outcomes[key] = (at, offset)

    def forget_expired(self, now: float) -> None:
        oldest = now - self.window_s
        while self.outcomes and (len(self.outcomes) > self.max_outcomes or next(iter(self.outcomes.values()))[0] < oldest):
            self.outcomes.popitem(last=False)


class AggregateCache:
    """Decoded aggregates, least recently used evicted past `size`: decoding a
    snapshot costs more than deciding, and a hot aggregate is decided often.
    Entries always equal what `PartitionMemory.states` holds (the caller evicts
    on every doubt: a rejection that touched the object, a rebalance)."""

    def __init__(self, size: int):
        self.size = size
        self._entries: OrderedDict[bytes, tuple[Aggregate, str]] = OrderedDict()

    def get(self, key: bytes) -> tuple[Aggregate, str] | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: bytes, aggregate: Aggregate, last_hash: str) -> None:
        self._entries[key] = (aggregate, last_hash)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def evict(self, key: bytes) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


@dataclass
class Parsed:
    """A command record that decoded into a command of this hub."""

    record: Incoming
    command: Command
    outcome_key: bytes
    reply: tuple[str, bytes, bytes] | None = None
    """(topic, key, ref) where the command's result is also sent (`infra.hub.reply_address`)."""


@dataclass
class BatchDecision:
    """Everything one batch changes, in the order it must be sent."""

    outgoing: list[Outgoing] = field(default_factory=list)
    states: dict[bytes, tuple[Aggregate, str]] = field(default_factory=dict)
    """Aggregate key → its state after the batch (written once per batch)."""
    results: dict[bytes, int] = field(default_factory=dict)
    """Outcome key → index in `outgoing` of the first result decided in this batch."""
    counts: dict[str, int] = field(default_factory=dict)
    """Outcome label (accepted, rejected, duplicate, dead_lettered) → records."""

    def count(self, label: str) -> None:
        self.counts[label] = self.counts.get(label, 0) + 1


class BatchDecider:
    """Decides a partition's batch of command records against `PartitionMemory`
    and the `AggregateCache`. Call `parse` on every record first (the processor
    fetches the stored results of repeated ids it names), then `decide`."""

    def __init__(
        self,
        hub: HubSpec,
        codec: Codec,
        topics: Mapping[str, str],
        dead_letters: DeadLetters,
        cache: AggregateCache,
        topic_of: Callable[[str], str] = str,
        answer_topics: Collection[str] = (),
        event_keys: EventKeys | None = None,
    ):
        """`topic_of`: logical topic name → the installation's (its prefix), for outbox
        records; `answer_topics`: where a command's result may be sent back
        (`infra.hub.answer_topics`; none: results go only to the results topic);
        `event_keys`: the hub's MAC keys every event is signed with (the processor
        always passes them; only pure unit tests of the deciding leave them out)."""
        self.hub, self.codec, self.dead_letters, self.cache = hub, codec, dead_letters, cache
        self.event_keys = event_keys
        self.events_topic, self.results_topic = topics["events"], topics["command-results"]
        self.commands_topic = topics.get("commands", topic_of(hub.topic("commands")))
        self.topic_of = topic_of
        self.answer_topics = frozenset(answer_topics)
        self.snapshots = SnapshotCodec()
        self._event_fields = {
            name: [f["name"] for f in codec.catalog.latest(name).parsed["fields"] if f["name"] != "envelope"]
            for name in codec.catalog.names()
            if name.startswith(f"poseidon.{hub.name}.") and ".commands." not in name
        }

    def parse(self, record: Incoming) -> Parsed | Outgoing:
        """The command in a record, or the dead letter that parks it."""
        try:
            decoded = self.codec.decode(record.value)
            command = self._command(decoded.name, decoded.record, record.headers)
            if record.key is None or record.key.decode("utf-8", "replace") != command.meta.aggregate_id:
                raise Rejected(f"record key {record.key!r} differs from the command's aggregate id {command.meta.aggregate_id!r}")
        except (DecodeError, Rejected, KeyError, TypeError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, DecodeError) else f"{type(exc).__name__}: {exc}"
            return self._dead_letter(record, reason, type(exc).__name__)
        key = outcome_key(command.meta.aggregate_id, command.meta.command_id)
        return Parsed(record, command, key, reply_address(record.headers, self.answer_topics))

    def _command(self, name: str, record: Mapping[str, Any], headers: Iterable[tuple[str, bytes]]) -> Command:
        """The hub's command in a record: one of its commands, or an answer its `translate` reads."""
        if self.hub.translate is not None and ".commands." not in name:
            command = self.hub.translate(name, record, dict(headers))
            if command is None:
                raise Rejected(f"{name} is not a command of the {self.hub.name} hub nor an answer it reads")
            return command
        return command_from_record(self.hub, name, record)

    def decide(
        self, memory: PartitionMemory, items: Iterable[Parsed | Outgoing], stored_results: Mapping[bytes, bytes]
    ) -> BatchDecision:
        """`stored_results`: outcome key → result bytes, for the repeated ids of this
        batch whose first outcome was decided in an earlier batch."""
        batch = BatchDecision()
        applied: dict[bytes, list[Any]] = {}  # aggregate key → domain events accepted in this batch
        for item in items:
            if isinstance(item, Outgoing):
                batch.outgoing.append(item)
                batch.count("dead_lettered")
                continue
            earlier = batch.results.get(item.outcome_key)
            first = batch.outgoing[earlier].value if earlier is not None else stored_results.get(item.outcome_key)
            if first is not None:
                bind_correlation(item.command.meta.correlation_id, command_id=item.command.meta.command_id, hub=self.hub.name)
                log.info("duplicate command answered with its first outcome")
                again = self.codec.decode(first).record
                again.update(duplicate=True, decided_at=datetime.now(UTC))
                batch.outgoing.append(self._result(again))
                self._reply(batch, item)
                batch.count("duplicate")
                continue
            if tracing.enabled():
                # Each command its own span, in its sender's trace: its events, outbox records and
                # result carry this span's context (`tracing.headers()` in the header builders below).
                attributes = {"poseidon.hub": self.hub.name, "poseidon.aggregate_id": item.command.meta.aggregate_id}
                with tracing.span(f"{self.hub.name} {type(item.command).__name__}", item.record.headers, attributes=attributes):
                    self._decide_one(memory, batch, applied, item)
            else:
                self._decide_one(memory, batch, applied, item)
        return batch

    def _decide_one(self, memory: PartitionMemory, batch: BatchDecision, applied: dict[bytes, list[Any]], item: Parsed) -> None:
        command, meta = item.command, item.command.meta
        bind_correlation(meta.correlation_id, command_id=meta.command_id, hub=self.hub.name, aggregate_id=meta.aggregate_id)
        key = meta.aggregate_id.encode()
        aggregate, last_hash = self._load(memory, batch, key)
        before = aggregate.version if aggregate is not None else 0
        try:
            decision = decide(self.hub, aggregate, command)
            if not decision.accepted:
                self._unless_untouched(memory, batch, applied, key, aggregate, before)
                log.info(
                    "command rejected",
                    command=type(command).__name__,
                    rule=decision.rejection.rule,
                    reason=str(decision.rejection),
                )
                self._add_result(batch, item, self._result_record(command, decision, before, [], []), "rejected")
                return
            outgoing, event_ids, event_types = [], [], []
            for domain_event in decision.events:
                name = self.hub.event_name(domain_event)
                event_id = new_event_id()
                record = event_record(
                    meta, name, domain_event, self._event_fields[name], event_id=event_id, previous_hash=last_hash
                )
                value = self.codec.encode(name, record)
                digest = hashlib.sha256(value).digest()
                last_hash = digest.hex()
                event_ids.append(event_id)
                event_types.append(name)
                sent = self._outbox(name, record, key) if self.hub.outbox is not None else []
                headers = self._headers(name, meta)
                if self.event_keys is not None:
                    headers.append(self.event_keys.sign(digest))
                if sent:
                    headers.append((DISPATCHED, b"1"))
                outgoing.append(Outgoing(self.events_topic, key, value, headers))
                outgoing.extend(sent)
        except (EncodeError, ValueError, TypeError, AttributeError, KeyError, AssertionError) as exc:
            # A bug in a hub's rules or schemas must not stop the partition: the
            # command is parked, with the reason, for an operator to re-drive.
            # Only the type is logged: exception texts (fastavro's included) may
            # quote personal data; the full reason travels in the dead letter.
            log.error("command could not be applied", error_type=type(exc).__name__)
            self._unless_untouched(memory, batch, applied, key, aggregate, before, touched=True)
            batch.outgoing.append(self._dead_letter(item.record, f"{type(exc).__name__}: {exc}", "ApplyError"))
            batch.count("dead_lettered")
            return
        if (oversized := max((len(o.value) for o in outgoing), default=0)) > MAX_RECORD_BYTES:
            log.error("command produced a record too large to send", command=type(command).__name__)
            self._unless_untouched(memory, batch, applied, key, aggregate, before, touched=True)
            reason = f"a record of {oversized} bytes exceeds the {MAX_RECORD_BYTES}-byte limit of one record"
            batch.outgoing.append(self._dead_letter(item.record, reason, "RecordTooLarge"))
            batch.count("dead_lettered")
            return
        batch.outgoing.extend(outgoing)
        batch.states[key] = (decision.aggregate, last_hash)
        applied.setdefault(key, []).extend(decision.events)
        log.info("command accepted", command=type(command).__name__, version=decision.version, events=len(event_ids))
        self._add_result(
            batch, item, self._result_record(command, decision, decision.version, event_ids, event_types), "accepted"
        )

    def _load(self, memory: PartitionMemory, batch: BatchDecision, key: bytes) -> tuple[Aggregate | None, str]:
        if key in batch.states:
            return batch.states[key]
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        stored = memory.states.get(key)
        if stored is None:
            return None, ""
        aggregate, last_hash = self.snapshots.loads(stored)
        self.cache.put(key, aggregate, last_hash)
        return aggregate, last_hash

    def _unless_untouched(
        self,
        memory: PartitionMemory,
        batch: BatchDecision,
        applied: dict[bytes, list[Any]],
        key: bytes,
        aggregate: Aggregate | None,
        before: int,
        touched: bool = False,
    ) -> None:
        """A handler may have changed the aggregate before it refused (or failed):
        then the object in hand is not the state, so rebuild it from what is
        stored plus the events this batch accepted for it."""
        if aggregate is None or not (touched or aggregate.version != before or aggregate.pending_events):
            return
        self.cache.evict(key)
        stored = memory.states.get(key)
        rebuilt, last_hash = self.snapshots.loads(stored) if stored is not None else (None, "")
        for domain_event in applied.get(key, ()):
            rebuilt = domain_event.mutate(rebuilt)
        if key in batch.states:
            batch.states[key] = (rebuilt, batch.states[key][1])
        elif rebuilt is not None:
            self.cache.put(key, rebuilt, last_hash)

    def _result_record(
        self, command: Command, decision: Any, version: int, event_ids: list[str], event_types: list[str]
    ) -> dict[str, Any]:
        meta = command.meta
        return {
            "command_id": meta.command_id,
            "command_type": type(command).avro_name(),
            "hub": self.hub.name,
            "aggregate_id": meta.aggregate_id,
            "tenant_id": meta.tenant_id,
            "correlation_id": meta.correlation_id,
            "outcome": "ACCEPTED" if decision.accepted else "REJECTED",
            "version": version,
            "rejection": "" if decision.accepted else decision.rejection.rule,
            "reason": "" if decision.accepted else str(decision.rejection),
            "event_ids": event_ids,
            "event_types": event_types,
            "duplicate": False,
            "decided_at": datetime.now(UTC),
        }

    def _add_result(self, batch: BatchDecision, item: Parsed, record: dict[str, Any], label: str) -> None:
        batch.results[item.outcome_key] = len(batch.outgoing)
        batch.outgoing.append(self._result(record))
        self._reply(batch, item)
        batch.count(label)

    def _reply(self, batch: BatchDecision, item: Parsed) -> None:
        """The result just added, sent back to whoever asked for it (`Parsed.reply`)."""
        if item.reply is None:
            return
        topic, key, ref = item.reply
        result = batch.outgoing[-1]
        batch.outgoing.append(Outgoing(topic, key, result.value, [*result.headers, (REPLY_REF, ref)], keyed=True))

    def _outbox(self, name: str, record: Mapping[str, Any], key: bytes) -> list[Outgoing]:
        """The records the hub's outbox sends with this event. When the outbox fails
        on an event (a record it cannot build or encode), the event is recorded
        without them, loudly, and without the `dispatched` header: the saga driver
        then tries it as a request of the old shape (parking it with the reason if
        it fails too), and its deadline fails the step — the command that asked is
        not parked, so the saga never stops on it."""
        assert self.hub.outbox is not None
        try:
            dispatches = self.hub.outbox(name, record)
            values = [self.codec.encode(d.schema, d.record) for d in dispatches]
        except (EncodeError, KeyError, TypeError, ValueError) as exc:
            # The type only: the text may quote personal data.
            log.error(
                "outbox failed on an event; left to the driver and the deadline", event_type=name, error_type=type(exc).__name__
            )
            return []
        sent = []
        for dispatch, value in zip(dispatches, values, strict=True):
            headers = [("content-type", CONTENT_TYPE), ("correlation_id", record["envelope"]["correlation_id"].encode())]
            headers += tracing.headers()
            if dispatch.reply_ref is not None:
                headers += [(REPLY_TO, self.commands_topic.encode()), (REPLY_KEY, key), (REPLY_REF, dispatch.reply_ref)]
            sent.append(Outgoing(self.topic_of(dispatch.topic), dispatch.key.encode(), value, headers, keyed=True))
        return sent

    def _result(self, record: dict[str, Any]) -> Outgoing:
        value = self.codec.encode(RESULT_SCHEMA, record)
        headers = [
            ("content-type", CONTENT_TYPE),
            ("correlation_id", record["correlation_id"].encode()),
            ("outcome", record["outcome"].encode()),
            (AGGREGATE_HEADER, record["aggregate_id"].encode()),
            *tracing.headers(),
        ]
        return Outgoing(self.results_topic, record["command_id"].encode(), value, headers)

    def state_records(self, batch: BatchDecision, changelog: str) -> list[Outgoing]:
        """One changelog record per aggregate the batch changed."""
        return [Outgoing(changelog, key, self.snapshots.dumps(agg, h), []) for key, (agg, h) in batch.states.items()]

    def committed(
        self, memory: PartitionMemory, batch: BatchDecision, state_values: Mapping[bytes, bytes], offsets: Mapping[int, int]
    ) -> None:
        """After the batch's transaction committed: remember its states and where
        its results were stored (`offsets`: index in `outgoing` → offset)."""
        for key, (aggregate, last_hash) in batch.states.items():
            memory.states[key] = state_values[key]
            self.cache.put(key, aggregate, last_hash)
        now = time.time()
        for okey, index in batch.results.items():
            memory.remember(okey, now, offsets[index])
        memory.forget_expired(now)

    @staticmethod
    def _headers(event_type: str, meta: Any) -> list[tuple[str, bytes]]:
        return [
            ("content-type", CONTENT_TYPE),
            ("event_type", event_type.encode()),
            ("correlation_id", meta.correlation_id.encode()),
            ("tenant_id", meta.tenant_id.encode()),
            *tracing.headers(),
        ]

    def _dead_letter(self, record: Incoming, reason: str, error_type: str) -> Outgoing:
        # With its reply address, if it had one: a command re-driven from the dead letters is answered too.
        reply = tuple(h for h in record.headers if h[0] in (REPLY_TO, REPLY_KEY, REPLY_REF))
        letter = self.dead_letters.letter(Origin(*record[:5]), reason, error_type, headers=reply)
        self.dead_letters.parked(letter)
        return Outgoing(letter.topic, record.key or b"", letter.value, letter.headers)
