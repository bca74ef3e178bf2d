"""Which value is in effect, now or at a past moment: pure functions over the
values (or the change histories) of one key at the global, environment and
tenant scopes. No I/O; the gRPC service feeds them rows of one tenant only."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from hubs.config.aggregate import ENVIRONMENT, GLOBAL, SCOPE_KINDS, TENANT

PRECEDENCE = (TENANT, ENVIRONMENT, GLOBAL)
"""Strongest first: the first scope that has a value for a key decides it."""


@dataclass(frozen=True)
class ScopedValue:
    """A key's value in one scope; `value_json` None means unset there."""

    scope_kind: str
    scope_id: str
    key: str
    value_json: str | None
    version: int
    changed_at: datetime


@dataclass(frozen=True)
class Change:
    """One recorded change of one key in one scope (a ConfigValueSet or ConfigValueUnset)."""

    scope_kind: str
    scope_id: str
    key: str
    version: int
    changed_at: datetime
    value_json: str | None
    """None for an unset."""


def effective(values: Iterable[ScopedValue]) -> ScopedValue | None:
    """The value in effect among one key's values at the scopes a caller may see
    (at most one per scope kind): tenant over environment over global; a scope
    where the key is unset does not count. None if no scope has a value."""
    by_scope: dict[str, ScopedValue] = {}
    for value in values:
        if value.scope_kind not in SCOPE_KINDS:
            raise ValueError(f"unknown scope kind {value.scope_kind!r}")
        if value.scope_kind in by_scope:
            raise ValueError(f"two {value.scope_kind} values for {value.key}: resolve one tenant and environment at a time")
        by_scope[value.scope_kind] = value
    for scope_kind in PRECEDENCE:
        value = by_scope.get(scope_kind)
        if value is not None and value.value_json is not None:
            return value
    return None


def effective_by_key(values: Iterable[ScopedValue]) -> dict[str, ScopedValue]:
    """`effective` for every key among `values`, keys in sorted order; keys with
    no value in effect are left out."""
    per_key: dict[str, list[ScopedValue]] = {}
    for value in values:
        per_key.setdefault(value.key, []).append(value)
    result = {}
    for key in sorted(per_key):
        winner = effective(per_key[key])
        if winner is not None:
            result[key] = winner
    return result


def value_at(changes: Iterable[Change], at: datetime) -> list[ScopedValue]:
    """Each scope's value as it stood at `at` (inclusive), from its changes: the
    change with the highest version made at or before `at`. Scopes whose first
    change is later than `at` are absent. Feed the result to `effective`."""
    latest: dict[tuple[str, str, str], Change] = {}
    for change in changes:
        if change.changed_at > at:
            continue
        slot = (change.scope_kind, change.scope_id, change.key)
        if slot not in latest or change.version > latest[slot].version:
            latest[slot] = change
    return [
        ScopedValue(c.scope_kind, c.scope_id, c.key, c.value_json, c.version, c.changed_at)
        for c in sorted(latest.values(), key=lambda c: (c.key, SCOPE_KINDS.index(c.scope_kind)))
    ]


def effective_at(changes: Iterable[Change], at: datetime) -> ScopedValue | None:
    """The value of one key in effect at `at`, reconstructed from its history."""
    return effective(value_at(changes, at))
