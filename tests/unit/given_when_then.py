"""Given / when / then for the hubs' aggregates, the event-sourced way. `given`
folds prior *events* through the aggregate's own @event methods (the evolve
step snapshots and replays use; no command is decided to build a state), `when`
runs a command through infra.hub.decide (the same pure step the processor runs:
the shared tenant and version rules, then the hub's handler) and the `then_*`
checks read the decision: the new events, or the rule that refused it."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import reduce
from typing import Any

from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic

from infra.hub import Decision, HubSpec, decide, event_payload
from schemas.codec import Catalog
from schemas.contracts import Command

CATALOG = Catalog.load()


@dataclass(frozen=True)
class Fact:
    """One prior event: its class (an aggregate's nested event, `Wallet.FundsCredited`)
    and payload. `given` numbers it: the aggregate's id, its next version, a timestamp."""

    type: type
    payload: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None

    def applied_to(self, aggregate: Aggregate | None) -> Aggregate:
        timestamp = self.at or datetime.now(UTC)
        if aggregate is None:
            owner = _owner(self.type)
            created = self.type(
                originator_id=owner.create_id(**self.payload),
                originator_version=owner.INITIAL_VERSION,
                timestamp=timestamp,
                originator_topic=get_topic(owner),
                **self.payload,
            )
            return created.mutate(None)
        happened = self.type(
            originator_id=aggregate.id, originator_version=aggregate.version + 1, timestamp=timestamp, **self.payload
        )
        return happened.mutate(aggregate)


def happened(event_type: type, at: datetime | None = None, **payload: Any) -> Fact:
    """The event `event_type` with `payload` (every field its @event method takes)."""
    return Fact(event_type, payload, at)


def given(*facts: Fact | Iterable[Fact], on: Aggregate | None = None) -> Any:
    """The aggregate these events leave behind, folded in order onto `on` (None:
    the first event must be the one that creates it). Lists of facts are spliced in."""
    aggregate = on
    for fact in _flat(facts):
        aggregate = fact.applied_to(aggregate)
    return aggregate


@dataclass(frozen=True)
class Hub:
    """`when` for one hub: `when = Hub(HUB).when`."""

    spec: HubSpec

    def when(self, aggregate: Aggregate | None, command: Command) -> Decision:
        return decide(self.spec, aggregate, command)


def then_rejected(decision: Decision, rule: str, *words: str) -> str:
    """Asserts that `rule` refused the command, with no event and a reason that
    says each of `words`; returns the reason."""
    assert not decision.accepted, f"expected {rule}, got events {[type(e).__name__ for e in decision.events]}"
    assert decision.rejection.rule == rule, f"{decision.rejection.rule}: {decision.rejection}"
    assert decision.events == []
    reason = str(decision.rejection)
    for word in words:
        assert word in reason, f"{word!r} not in {reason!r}"
    return reason


def event_names(decision: Decision) -> list[str]:
    """The names of the accepted command's new events, in order."""
    assert decision.accepted, f"refused: {decision.rejection!r}"
    return [type(e).__name__ for e in decision.events]


def only_event(decision: Decision, name: str | None = None):
    """The one event of an accepted command (named `name`, when given)."""
    assert decision.accepted, f"refused: {decision.rejection!r}"
    assert len(decision.events) == 1, decision.events
    [event] = decision.events
    if name is not None:
        assert type(event).__name__ == name, type(event).__name__
    return event


def events_of(hub: HubSpec, decision: Decision) -> list[tuple[str, dict]]:
    """(event name, the payload its Avro schema carries) of each new event."""
    assert decision.accepted, f"refused: {decision.rejection!r}"
    return [(type(e).__name__, event_payload(e, schema_fields(hub, e))) for e in decision.events]


def schema_fields(hub: HubSpec, event: object) -> list[str]:
    """The payload field names of the latest Avro schema of `event`."""
    return [f["name"] for f in CATALOG.latest(hub.event_name(event)).parsed["fields"] if f["name"] != "envelope"]


def _owner(event_type: type) -> type[Aggregate]:
    """The aggregate class an event class is nested in."""
    *path, _ = event_type.__qualname__.split(".")
    owner = reduce(getattr, path, sys.modules[event_type.__module__])
    assert isinstance(owner, type) and issubclass(owner, Aggregate), f"{event_type.__qualname__} is no aggregate event"
    return owner


def _flat(facts: Iterable[Fact | Iterable[Fact]]) -> Iterable[Fact]:
    for item in facts:
        if isinstance(item, Fact):
            yield item
        else:
            yield from _flat(item)
