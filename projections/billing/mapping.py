"""Pure mapping of billing events to read-store statements. Every statement is
idempotent on its own (a version guard), so a replayed event changes nothing."""

from __future__ import annotations

import uuid

from infra.projection import Statement

# Phases: granted/changed carry the whole row as of their version, so they may run
# before the partial updates of the same batch; a partial update older than a
# later whole-row write is then skipped by the version guard, which is right
# because that write already includes it. Partial updates keep their event order.
TERMS, UPDATES = 0, 1

TERMS_SQL = """INSERT INTO entitlements (tenant_id, entitlement_id, plan, message_quota, period_start, period_end, features,
    status, cancel_reason, reported_used, version, granted_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', '', $8, $9, $10, $10)
ON CONFLICT (tenant_id) DO UPDATE SET plan = EXCLUDED.plan, message_quota = EXCLUDED.message_quota,
    period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end, features = EXCLUDED.features,
    status = 'active', cancel_reason = '', reported_used = EXCLUDED.reported_used, version = EXCLUDED.version,
    updated_at = EXCLUDED.updated_at
WHERE entitlements.version < EXCLUDED.version"""
# One statement for cancellations and usage alike (NULL keeps a column), so a batch of them is one executemany.
UPDATE_SQL = """UPDATE entitlements SET status = COALESCE($2, status), cancel_reason = COALESCE($3, cancel_reason),
    reported_used = COALESCE($4, reported_used), version = $5, updated_at = $6
WHERE tenant_id = $1 AND version < $5"""


def apply(event_type: str, record: dict) -> list[Statement]:
    env = record["envelope"]
    tenant_id, version, at = env["tenant_id"], env["aggregate_version"], env["occurred_at"]
    kind = event_type.rsplit(".", 1)[-1]

    def terms(used: int) -> Statement:
        return Statement(
            TERMS_SQL,
            (
                tenant_id, uuid.UUID(env["aggregate_id"]), record["plan"], record["message_quota"],
                record["period_start"], record["period_end"], list(record["features"]), used, version, at,
            ),
            phase=TERMS,
        )  # fmt: skip

    def update(status: str | None = None, cancel_reason: str | None = None, reported_used: int | None = None) -> Statement:
        return Statement(UPDATE_SQL, (tenant_id, status, cancel_reason, reported_used, version, at), phase=UPDATES)

    if kind == "EntitlementGranted":
        return [terms(0)]
    if kind == "EntitlementChanged":
        return [terms(record["used_in_period"])]
    if kind == "EntitlementCancelled":
        return [update(status="cancelled", cancel_reason=record["reason"])]
    if kind == "UsageReported":
        return [update(reported_used=record["used_after"])]
    raise ValueError(f"the billing read model has no mapping for {event_type}")
