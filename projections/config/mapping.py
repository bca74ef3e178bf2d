"""Pure mapping of config events to read-store statements. Every statement is
idempotent on its own: history rows are keyed by (entry, version), and the
current row only moves forward in version, so a replayed event changes nothing."""

from __future__ import annotations

import uuid

from infra.projection import Insert, Statement, Upsert

# Phases: history rows depend on nothing; current rows are guarded by version, so
# their relative order does not matter either. Splitting them lets each kind run
# as one batch.
RECORDED, CURRENT = 0, 1

HISTORY_ROW = Insert(
    "config_history",
    {"entry_id": 1, "version": 2, "tenant_id": 3, "scope_kind": 4, "scope_id": 5, "key": 6, "change": 7, "value_json": 8,
     "changed_at": 9, "changed_by": 10, "event_id": 11, "correlation_id": 12},
    key=("entry_id", "version"),
    unique=(("event_id",),),
    any_conflict=True,
)  # fmt: skip
HISTORY = HISTORY_ROW.sql
# One statement for sets and unsets (an unset stores NULL), so a batch of them is one executemany.
UPSERT_ROW = Upsert(
    "config_values",
    {"entry_id": 1, "tenant_id": 2, "scope_kind": 3, "scope_id": 4, "key": 5, "value_json": 6, "version": 7,
     "changed_at": 8, "changed_by": 9},
    key=("entry_id",),
    update=("value_json", "version", "changed_at", "changed_by"),
)  # fmt: skip
UPSERT = UPSERT_ROW.sql


def apply(event_type: str, record: dict) -> list[Statement]:
    env = record["envelope"]
    kind = event_type.rsplit(".", 1)[-1]
    if kind == "ConfigValueSet":
        change, value = "set", record["value_json"]
    elif kind == "ConfigValueUnset":
        change, value = "unset", None
    else:
        raise ValueError(f"the config read model has no mapping for {event_type}")
    entry_id = uuid.UUID(env["aggregate_id"])
    version, at, actor, tenant = env["aggregate_version"], env["occurred_at"], env["actor"], env["tenant_id"]
    scope_kind, scope_id, key = record["scope_kind"], record["scope_id"], record["key"]
    return [
        HISTORY_ROW.statement(
            (
                entry_id,
                version,
                tenant,
                scope_kind,
                scope_id,
                key,
                change,
                value,
                at,
                actor,
                uuid.UUID(env["event_id"]),
                env["correlation_id"],
            ),
            phase=RECORDED,
        ),  # fmt: skip
        UPSERT_ROW.statement((entry_id, tenant, scope_kind, scope_id, key, value, version, at, actor), phase=CURRENT),
    ]
