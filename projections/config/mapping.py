"""Pure mapping of config events to read-store statements. Every statement is
idempotent on its own: history rows are keyed by (entry, version), and the
current row only moves forward in version, so a replayed event changes nothing."""

from __future__ import annotations

import uuid

from infra.projection import Statement

# Phases: history rows depend on nothing; current rows are guarded by version, so
# their relative order does not matter either. Splitting them lets each kind run
# as one batch.
RECORDED, CURRENT = 0, 1

HISTORY = """INSERT INTO config_history (entry_id, version, tenant_id, scope_kind, scope_id, key, change, value_json,
    changed_at, changed_by, event_id, correlation_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING"""
# One statement for sets and unsets (an unset stores NULL), so a batch of them is one executemany.
UPSERT = """INSERT INTO config_values AS v (entry_id, tenant_id, scope_kind, scope_id, key, value_json, version,
    changed_at, changed_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (entry_id) DO UPDATE SET value_json = EXCLUDED.value_json, version = EXCLUDED.version,
    changed_at = EXCLUDED.changed_at, changed_by = EXCLUDED.changed_by
WHERE v.version < EXCLUDED.version"""


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
        Statement(
            HISTORY,
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
        Statement(UPSERT, (entry_id, tenant, scope_kind, scope_id, key, value, version, at, actor), phase=CURRENT),
    ]
