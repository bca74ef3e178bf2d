"""Audit of the log: verifies the hash chain of every hub aggregate's events and
replays the ordered history of one aggregate, one conversation (correlation id)
or one tenant as a report with personal data masked. Reads Kafka only; never
writes a topic and never touches a read store (rebuilding those is infra.replay).

The chain: each hub event's envelope carries `previous_hash`, the hex SHA-256 of
the exact stored bytes (the Kafka record value) of the previous event of the same
aggregate, empty for the first (written by infra.processor). `ChainVerifier` is
the pure part (records in, broken links out); `verify` and `history` do the I/O.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from tqdm import tqdm

from base.pii import mask_fields
from base.settings import Settings
from infra.hub import HubSpec
from infra.provenance import MAC_HEADER, EventKeys
from infra.topics import partitions_of
from schemas.codec import Codec, DecodeError

log = structlog.get_logger(__name__)

NO_KEY = "<no key>"
"""Aggregate id shown for a record written without a key (never a processor's)."""

RESULT_SCHEMA = "poseidon.CommandResult"

# Kafka's record timestamp (producer CreateTime) is taken after the event's
# occurred_at; the margin absorbs clock skew between the writer and the broker
# when a time window is turned into a start offset.
_TIME_MARGIN_MS = 60_000
_RECENT_LINKS = 8


# -- the pure part: chain verification ------------------------------------------


@dataclass(frozen=True)
class StoredRecord:
    """One record of an events topic as stored, with its envelope if it decodes."""

    topic: str
    """Physical topic name."""
    partition: int
    offset: int
    key: bytes | None
    """The Kafka key: the aggregate id, UTF-8."""
    value: bytes | None
    """The exact stored bytes; the chain hashes these, never a re-encoding."""
    envelope: Mapping[str, Any] | None = None
    """The decoded envelope; None when the value does not decode."""
    error: str = ""
    """Why the value does not decode (empty when it does)."""
    forged: str = ""
    """Why its MAC does not show it was written by its hub's processor (empty when it does, or unchecked)."""

    @property
    def aggregate_id(self) -> str:
        return self.key.decode("utf-8", "replace") if self.key is not None else NO_KEY


@dataclass(frozen=True)
class Problem:
    """One check a record failed."""

    check: str
    """`previous_hash`, `version`, `decode`, `key` or `partition`."""
    expected: str
    found: str

    def to_dict(self) -> dict[str, str]:
        return {"check": self.check, "expected": self.expected, "found": self.found}


@dataclass(frozen=True)
class BrokenLink:
    """The first record of an aggregate's stream that does not follow from the one
    before it. The link is (previous record → this record): an altered previous
    record and a forged or misplaced this record both break it; `problems` and
    `previous_offset` tell which."""

    topic: str
    partition: int
    offset: int
    aggregate_id: str
    """The record's key (the envelope's aggregate id may differ: see `problems`)."""
    version: int | None
    """The envelope's aggregate_version; None when the record does not decode."""
    event_id: str
    tenant_id: str
    problems: tuple[Problem, ...]
    previous_offset: int | None
    """Offset of the record this one should follow; None for an aggregate's first record."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "aggregate_id": self.aggregate_id,
            "version": self.version,
            "event_id": self.event_id,
            "tenant_id": self.tenant_id,
            "previous_offset": self.previous_offset,
            "problems": [p.to_dict() for p in self.problems],
        }

    def describe(self) -> str:
        where = f"{self.topic}[{self.partition}]@{self.offset}"
        what = f"aggregate {self.aggregate_id} version {self.version if self.version is not None else '?'}"
        lines = [f"BROKEN {where} {what} event {self.event_id or '?'}"]
        lines += [f"  {p.check}: expected {p.expected}, found {p.found}" for p in self.problems]
        return "\n".join(lines)


@dataclass
class _Stream:
    """What the verifier remembers of one aggregate's stream: the tip of its chain."""

    partition: int
    last_hash: str = ""
    last_version: int = 0
    last_offset: int | None = None
    events: int = 0
    tenants: set[str] = field(default_factory=set)
    broken: BrokenLink | None = None
    recent: deque = field(default_factory=lambda: deque(maxlen=_RECENT_LINKS))
    """(hash, offset, version) of the last few records: names what a stray link points to."""


class ChainVerifier:
    """Checks aggregate streams record by record. Pure: no I/O, feed it records of
    each partition in offset order (partitions may interleave) and read the result.

    A record breaks its aggregate's chain when its value does not decode, its
    envelope's aggregate id differs from its key, its aggregate's earlier records
    are in another partition, its version is not the previous one + 1 (1 for the
    first), or its previous_hash is not the SHA-256 of the previous record's stored
    bytes (empty for the first). Only the first broken link of an aggregate is
    kept: after it, the stream's later links prove nothing.
    """

    def __init__(self) -> None:
        self._streams: dict[tuple[str, str], _Stream] = {}
        self.events = 0

    def feed(self, record: StoredRecord) -> BrokenLink | None:
        """Check one record; returns the broken link if this record is its stream's first."""
        self.events += 1
        stored_hash = hashlib.sha256(record.value or b"").hexdigest()
        ident = (record.topic, record.aggregate_id)
        stream = self._streams.get(ident)
        if stream is None:
            stream = self._streams[ident] = _Stream(partition=record.partition)
        stream.events += 1
        envelope = record.envelope
        if envelope is not None and envelope.get("tenant_id"):
            stream.tenants.add(envelope["tenant_id"])
        if stream.broken is None:
            problems = self._problems(record, stream)
            if problems:
                stream.broken = BrokenLink(
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    aggregate_id=record.aggregate_id,
                    version=envelope.get("aggregate_version") if envelope is not None else None,
                    event_id=envelope.get("event_id", "") if envelope is not None else "",
                    tenant_id=envelope.get("tenant_id", "") if envelope is not None else "",
                    problems=tuple(problems),
                    previous_offset=stream.last_offset,
                )
                return stream.broken
        version = envelope.get("aggregate_version") if envelope is not None else None
        stream.recent.append((stored_hash, record.offset, version))
        stream.last_hash, stream.last_offset = stored_hash, record.offset
        stream.last_version = version if isinstance(version, int) else stream.last_version + 1
        return None

    def _problems(self, record: StoredRecord, stream: _Stream) -> list[Problem]:
        # A record without its hub's MAC is named itself, at once — even when it imitates
        # the chain perfectly (right version, right previous_hash).
        signed = [Problem("mac", f"a {MAC_HEADER} of the hub's processor", record.forged)] if record.forged else []
        if record.envelope is None:
            undecodable = f"undecodable or tampered value: {record.error}"
            return [*signed, Problem("decode", "an Avro event with an envelope", undecodable)]
        problems = signed
        envelope = record.envelope
        if envelope.get("aggregate_id") != record.aggregate_id:
            problems.append(Problem("key", f"envelope aggregate_id {record.aggregate_id}", str(envelope.get("aggregate_id"))))
        if record.partition != stream.partition:
            problems.append(Problem("partition", f"partition {stream.partition}", f"partition {record.partition}"))
        expected_version = stream.last_version + 1
        if envelope.get("aggregate_version") != expected_version:
            problems.append(Problem("version", str(expected_version), str(envelope.get("aggregate_version"))))
        found_hash = envelope.get("previous_hash", "")
        if found_hash != stream.last_hash:
            expected = (
                f"sha256 of offset {stream.last_offset} = {stream.last_hash}"
                if stream.last_offset is not None
                else "'' (first event)"
            )
            problems.append(Problem("previous_hash", expected, self._name_hash(found_hash, stream)))
        return problems

    @staticmethod
    def _name_hash(found: str, stream: _Stream) -> str:
        if not found:
            return "'' (claims to be the first event)"
        for digest, offset, version in stream.recent:
            if digest == found:
                return f"{found} (sha256 of offset {offset}, version {version}: an earlier record, not the previous one)"
        return f"{found} (matches no recent record of this aggregate)"

    def streams(self, tenant: str | None = None, aggregate: str | None = None) -> int:
        """Number of aggregate streams seen, optionally only one tenant's or one aggregate's."""
        return sum(1 for ident, s in self._streams.items() if _in_scope(ident, s, tenant, aggregate))

    def broken_links(self, tenant: str | None = None, aggregate: str | None = None) -> list[BrokenLink]:
        """The first broken link of every broken stream in scope, by topic, partition, offset."""
        links = [s.broken for ident, s in self._streams.items() if s.broken and _in_scope(ident, s, tenant, aggregate)]
        return sorted(links, key=lambda b: (b.topic, b.partition, b.offset))

    def events_in_scope(self, tenant: str | None = None, aggregate: str | None = None) -> int:
        return sum(s.events for ident, s in self._streams.items() if _in_scope(ident, s, tenant, aggregate))


def _in_scope(ident: tuple[str, str], stream: _Stream, tenant: str | None, aggregate: str | None) -> bool:
    # A stream belongs to a tenant when any of its events names it: a forged record
    # claiming another tenant must not hide the stream from its real owner's audit.
    return (aggregate is None or ident[1] == aggregate) and (tenant is None or tenant in stream.tenants)


def verify_records(records: Iterable[StoredRecord]) -> list[BrokenLink]:
    """The first broken link of every aggregate stream in `records` (pure)."""
    verifier = ChainVerifier()
    for record in records:
        verifier.feed(record)
    return verifier.broken_links()


def decode_stored(codec: Codec, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> StoredRecord:
    """A stored record with its envelope, or with the reason it does not decode."""
    try:
        decoded = codec.decode(value)
    except DecodeError as exc:
        return StoredRecord(topic, partition, offset, key, value, None, exc.reason)
    envelope = decoded.record.get("envelope")
    if not isinstance(envelope, Mapping):
        return StoredRecord(topic, partition, offset, key, value, None, f"{decoded.name} carries no envelope")
    return StoredRecord(topic, partition, offset, key, value, envelope)


# -- reading topics ----------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Where to read each partition: offsets [start_offset, end_offset) and, as a
    hint for seeking, occurred_at in [start_time, end_time). None means open."""

    start_time: datetime | None = None
    end_time: datetime | None = None
    start_offset: int | None = None
    end_offset: int | None = None


async def scan(
    settings: Settings,
    partitions: Mapping[str, list[int]],
    window: Window = Window(),
    *,
    progress: bool = False,
    desc: str = "audit",
) -> AsyncIterator[Any]:
    """Every committed record (read_committed) of `partitions` from the window's
    start up to the end offsets taken when the scan starts, each partition in
    offset order. Records written during the scan are not read: the audit is of a
    fixed prefix of the log. Yields aiokafka ConsumerRecords."""
    tps = [TopicPartition(t, p) for t, ps in partitions.items() for p in ps]
    if not tps:
        return
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        isolation_level="read_committed",
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = dict(await consumer.end_offsets(tps))
        starts = dict(await consumer.beginning_offsets(tps))
        if window.start_time is not None:
            ms = int(window.start_time.timestamp() * 1000) - _TIME_MARGIN_MS
            for tp, found in (await consumer.offsets_for_times({tp: max(ms, 0) for tp in tps})).items():
                starts[tp] = ends[tp] if found is None else max(starts[tp], found.offset)
        if window.start_offset is not None:
            starts = {tp: max(off, window.start_offset) for tp, off in starts.items()}
        if window.end_offset is not None:
            ends = {tp: min(off, window.end_offset) for tp, off in ends.items()}
        stop_ms = int(window.end_time.timestamp() * 1000) + _TIME_MARGIN_MS if window.end_time else None
        pending = set()
        for tp in tps:
            if starts[tp] < ends[tp]:
                consumer.seek(tp, starts[tp])
                pending.add(tp)
            else:
                consumer.pause(tp)
        done_at = dict(starts)
        bar = tqdm(
            total=sum(max(ends[tp] - starts[tp], 0) for tp in tps), unit="rec", desc=desc, disable=not progress, mininterval=0.5
        )
        try:
            while pending:
                batches = await consumer.getmany(*pending, timeout_ms=500)
                for tp, records in batches.items():
                    for record in records:
                        if record.offset >= ends[tp] or (stop_ms is not None and record.timestamp > stop_ms):
                            ends[tp] = min(ends[tp], record.offset)
                            break
                        yield record
                for tp in list(pending):
                    position = min(await consumer.position(tp), ends[tp])
                    bar.update(max(position - done_at[tp], 0))
                    done_at[tp] = max(position, done_at[tp])
                    if position >= ends[tp]:
                        pending.discard(tp)
                        consumer.pause(tp)
        finally:
            bar.close()
    finally:
        await consumer.stop()


# -- verify ------------------------------------------------------------------------


@dataclass
class VerifyReport:
    """What `verify` found; `ok` is False when any link is broken."""

    topics: list[str]
    streams: int
    """Aggregate streams in scope."""
    events: int
    """Events of the streams in scope that were checked."""
    scanned: int
    """Records read (the scope filters streams, not the read)."""
    broken: list[BrokenLink]
    scope: dict[str, str | None]

    @property
    def ok(self) -> bool:
        return not self.broken

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "scope": self.scope,
            "topics": self.topics,
            "streams": self.streams,
            "events_checked": self.events,
            "records_scanned": self.scanned,
            "broken_links": [b.to_dict() for b in self.broken],
        }

    def render(self) -> str:
        lines = [b.describe() for b in self.broken]
        verdict = "chain intact" if self.ok else f"{len(self.broken)} broken link(s)"
        lines.append(
            f"{verdict}: {self.streams} stream(s), {self.events} event(s) checked in {', '.join(self.topics) or 'no topic'}"
        )
        return "\n".join(lines)


async def verify(
    settings: Settings,
    codec: Codec,
    hubs: Iterable[HubSpec],
    *,
    aggregate: str | None = None,
    tenant: str | None = None,
    progress: bool = False,
) -> VerifyReport:
    """Verify the hash chains of the `hubs`' event topics from offset 0 to their
    end offsets at the start, limited to one aggregate and/or one tenant (envelope
    tenant_id). Every record is read either way: a chain is only as good as its
    links, and a stream's tenant is only known from its events."""
    hubs = list(hubs)
    topics = [settings.topic(hub.topic("events")) for hub in hubs]
    partitions = await partitions_of(settings, topics)
    verifier = ChainVerifier()
    wanted = aggregate.encode() if aggregate is not None else None
    keys = {settings.topic(hub.topic("events")): EventKeys.of(settings, hub.name) for hub in hubs}
    async for record in scan(settings, partitions, progress=progress, desc="verify"):
        if wanted is not None and record.key != wanted:
            continue
        stored = decode_stored(codec, record.topic, record.partition, record.offset, record.key, record.value)
        stored = replace(stored, forged=keys[record.topic].problem(record.value, record.headers))
        verifier.feed(stored)
    broken = verifier.broken_links(tenant, aggregate)
    report = VerifyReport(
        topics=topics,
        streams=verifier.streams(tenant, aggregate),
        events=verifier.events_in_scope(tenant, aggregate),
        scanned=verifier.events,
        broken=broken,
        scope={"aggregate": aggregate, "tenant": tenant},
    )
    log.info("audit verify done", streams=report.streams, events=report.events, broken=len(broken))
    return report


# -- history -------------------------------------------------------------------------


def mask_value(name: str, value: Any) -> Any:
    """A field's value as a report may show it (base.pii.mask_fields: an allow-list,
    recursive, into JSON held in strings); datetimes as ISO text. Pure."""
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, Mapping):
        return {k: mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(name, v) for v in value]
    return mask_fields(value, name)


@dataclass(frozen=True)
class HistoryEntry:
    """One event (or command result) in an audit history."""

    occurred_at: datetime
    """Envelope occurred_at; a command result's decided_at."""
    topic: str
    partition: int
    offset: int
    event_type: str
    aggregate_id: str
    version: int
    tenant_id: str
    correlation_id: str
    actor: str
    event_id: str
    """The event's id; a command result's command id."""
    payload: dict[str, Any]
    """The record without its envelope, personal data masked."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "occurred_at": _iso(self.occurred_at),
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "event_type": self.event_type,
            "aggregate_id": self.aggregate_id,
            "version": self.version,
            "tenant_id": self.tenant_id,
            "correlation_id": self.correlation_id,
            "actor": self.actor,
            "event_id": self.event_id,
            "payload": self.payload,
        }

    def render(self, width: int = 160) -> str:
        summary = " ".join(f"{k}={_short(v)}" for k, v in self.payload.items())
        line = (
            f"{_iso(self.occurred_at)}  {self.topic}[{self.partition}]@{self.offset}  {self.event_type}  "
            f"{self.aggregate_id} v{self.version}  actor={self.actor or '-'}  {summary}"
        )
        return line if len(line) <= width else line[: width - 1] + "…"


def history_entry(topic: str, partition: int, offset: int, name: str, record: Mapping[str, Any]) -> HistoryEntry | None:
    """The history entry of a decoded record: an event with an envelope, or a
    command result; None for anything else. Pure."""
    envelope = record.get("envelope")
    if isinstance(envelope, Mapping):
        payload = {k: mask_value(k, v) for k, v in record.items() if k != "envelope"}
        return HistoryEntry(
            occurred_at=_aware(envelope["occurred_at"]),
            topic=topic,
            partition=partition,
            offset=offset,
            event_type=envelope.get("event_type") or name,
            aggregate_id=envelope["aggregate_id"],
            version=envelope["aggregate_version"],
            tenant_id=envelope["tenant_id"],
            correlation_id=envelope["correlation_id"],
            actor=envelope["actor"],
            event_id=envelope["event_id"],
            payload=payload,
        )
    if name == RESULT_SCHEMA:
        shown = ("command_type", "outcome", "rejection", "reason", "duplicate", "event_types")
        return HistoryEntry(
            occurred_at=_aware(record["decided_at"]),
            topic=topic,
            partition=partition,
            offset=offset,
            event_type=RESULT_SCHEMA,
            aggregate_id=record["aggregate_id"],
            version=record["version"],
            tenant_id=record["tenant_id"],
            correlation_id=record["correlation_id"],
            actor="",
            event_id=record["command_id"],
            payload={k: mask_value(k, record[k]) for k in shown if k in record},
        )
    return None


@dataclass(frozen=True)
class HistoryQuery:
    """Which history: exactly one of aggregate, correlation or tenant, and a window."""

    aggregate: str | None = None
    correlation: str | None = None
    tenant: str | None = None
    window: Window = Window()

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.aggregate, self.correlation, self.tenant)) != 1:
            raise ValueError("name exactly one of aggregate, correlation or tenant")

    def matches(self, entry: HistoryEntry) -> bool:
        w = self.window
        if w.start_time is not None and entry.occurred_at < w.start_time:
            return False
        if w.end_time is not None and entry.occurred_at >= w.end_time:
            return False
        if self.aggregate is not None:
            return entry.aggregate_id == self.aggregate
        if self.correlation is not None:
            return entry.correlation_id == self.correlation
        return entry.tenant_id == self.tenant


def history_topics(hubs: Iterable[HubSpec], spokes: Iterable[str] = (), *, ingress: bool = True) -> list[str]:
    """Logical topics that carry envelopes or command results: each hub's events
    and command results, each spoke's outcome events, and the ingress log."""
    topics = [t for hub in hubs for t in (hub.topic("events"), hub.topic("command-results"))]
    topics += [f"spoke.{name}.events" for name in spokes]
    return topics + (["ingress.inbound"] if ingress else [])


@dataclass
class HistoryReport:
    """An ordered history: entries by occurred_at (a command result after events of
    the same millisecond), then topic, partition, offset."""

    query: HistoryQuery
    topics: list[str]
    entries: list[HistoryEntry]
    scanned: int
    undecodable: int
    """Records that did not decode (verify names them); they cannot be placed in a history."""

    def to_dict(self) -> dict[str, Any]:
        q, w = self.query, self.query.window
        return {
            "query": {
                "aggregate": q.aggregate,
                "correlation": q.correlation,
                "tenant": q.tenant,
                "from": _iso(w.start_time) if w.start_time else None,
                "to": _iso(w.end_time) if w.end_time else None,
                "from_offset": w.start_offset,
                "to_offset": w.end_offset,
            },
            "topics": self.topics,
            "records_scanned": self.scanned,
            "undecodable": self.undecodable,
            "entries": [e.to_dict() for e in self.entries],
        }

    def render(self) -> str:
        lines = [e.render() for e in self.entries]
        lines.append(f"{len(self.entries)} entr{'y' if len(self.entries) == 1 else 'ies'} from {self.scanned} record(s) scanned")
        if self.undecodable:
            lines.append(f"{self.undecodable} record(s) did not decode (run `poseidon audit verify`)")
        return "\n".join(lines)


async def history(
    settings: Settings, codec: Codec, topics: Iterable[str], query: HistoryQuery, *, progress: bool = False
) -> HistoryReport:
    """Replay the logical `topics` (missing ones are skipped) within the query's
    window and keep the entries it matches, ordered by occurred_at (command results
    after events of the same millisecond), then topic, partition and offset.
    Offsets in the window apply to every partition read."""
    physical = [settings.topic(t) for t in topics]
    partitions = await partitions_of(settings, physical, strict=False)
    entries: list[HistoryEntry] = []
    scanned = undecodable = 0
    async for record in scan(settings, partitions, query.window, progress=progress, desc="history"):
        scanned += 1
        try:
            decoded = codec.decode(record.value)
        except DecodeError:
            undecodable += 1
            continue
        entry = history_entry(record.topic, record.partition, record.offset, decoded.name, decoded.record)
        if entry is not None and query.matches(entry):
            entries.append(entry)
    # A command result is decided after its events, often in the same millisecond.
    entries.sort(key=lambda e: (e.occurred_at, e.event_type == RESULT_SCHEMA, e.topic, e.partition, e.offset))
    return HistoryReport(query, list(partitions), entries, scanned, undecodable)


def parse_time(text: str) -> datetime:
    """An ISO-8601 time; without a zone it is UTC."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _iso(value: datetime) -> str:
    return _aware(value).astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _short(value: Any, limit: int = 40) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
