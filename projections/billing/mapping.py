"""Pure mapping of billing events to read-store statements. Every statement is
idempotent on its own (a version guard), so a replayed event changes nothing."""

from __future__ import annotations

import uuid

from infra.projection import Const, Keep, Statement, Update, Upsert

# Phases: granted/changed carry the whole row as of their version, so they may run
# before the partial updates of the same batch; a partial update older than a
# later whole-row write is then skipped by the version guard, which is right
# because that write already includes it. Partial updates keep their event order.
TERMS, UPDATES = 0, 1

TERMS_SQL_ROW = Upsert(
    "entitlements",
    {"tenant_id": 1, "entitlement_id": 2, "plan": 3, "message_quota": 4, "period_start": 5, "period_end": 6, "features": 7,
     "status": Const("'active'", "active"), "cancel_reason": Const("''", ""), "reported_used": 8, "version": 9,
     "granted_at": 10, "updated_at": 10},
    key=("tenant_id",),
    update=("plan", "message_quota", "period_start", "period_end", "features", "status", "cancel_reason", "reported_used",
            "version", "updated_at"),
)  # fmt: skip
TERMS_SQL = TERMS_SQL_ROW.sql
# One statement for cancellations and usage alike (NULL keeps a column), so a batch of them is one executemany.
UPDATE_SQL_ROW = Update(
    "entitlements",
    key={"tenant_id": 1},
    set={"status": Keep(2), "cancel_reason": Keep(3), "reported_used": Keep(4), "version": 5, "updated_at": 6},
    guard=5,
)
UPDATE_SQL = UPDATE_SQL_ROW.sql


def apply(event_type: str, record: dict) -> list[Statement]:
    env = record["envelope"]
    tenant_id, version, at = env["tenant_id"], env["aggregate_version"], env["occurred_at"]
    kind = event_type.rsplit(".", 1)[-1]

    def terms(used: int) -> Statement:
        return TERMS_SQL_ROW.statement(
            (
                tenant_id, uuid.UUID(env["aggregate_id"]), record["plan"], record["message_quota"],
                record["period_start"], record["period_end"], list(record["features"]), used, version, at,
            ),
            phase=TERMS,
        )  # fmt: skip

    def update(status: str | None = None, cancel_reason: str | None = None, reported_used: int | None = None) -> Statement:
        return UPDATE_SQL_ROW.statement((tenant_id, status, cancel_reason, reported_used, version, at), phase=UPDATES)

    if kind == "EntitlementGranted":
        return [terms(0)]
    if kind == "EntitlementChanged":
        return [terms(record["used_in_period"])]
    if kind == "EntitlementCancelled":
        return [update(status="cancelled", cancel_reason=record["reason"])]
    if kind == "UsageReported":
        return [update(reported_used=record["used_after"])]
    raise ValueError(f"the billing read model has no mapping for {event_type}")
