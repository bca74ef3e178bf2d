"""Pure mapping of App hub events to read-store statements. Every statement is
idempotent on its own (inserts do nothing on conflict, updates are guarded by the
aggregate version), so a replayed event changes nothing."""

from __future__ import annotations

import json
import uuid

from infra.projection import Statement

# Phases: rows are created before anything updates them; updates keep event order
# (their version guard needs it).
CREATED, UPDATED = 0, 1

REGISTER = """INSERT INTO apps (app_id, tenant_id, name, kind, channels, visibility, version, registered_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (app_id) DO NOTHING"""
SUBSCRIBE = """INSERT INTO subscriptions (tenant_id, app_id, subscription_id, active, version, subscribed_at, updated_at)
VALUES ($1, $2, $3, true, $4, $5, $5) ON CONFLICT DO NOTHING"""
SET_ACTIVE = """UPDATE subscriptions SET active = $3, version = $4, updated_at = $5,
    subscribed_at = CASE WHEN $3 THEN $5 ELSE subscribed_at END
WHERE subscription_id = $1 AND tenant_id = $2 AND version < $4"""
SET_GUARDS = """UPDATE subscriptions SET channels = $3, page_ids = $4, business_hours = $5::jsonb, version = $6, updated_at = $7
WHERE subscription_id = $1 AND tenant_id = $2 AND version < $6"""


def apply(event_type: str, record: dict) -> list[Statement]:
    env = record["envelope"]
    aggregate_id, tenant_id = env["aggregate_id"], env["tenant_id"]
    version, at = env["aggregate_version"], env["occurred_at"]
    kind = event_type.rsplit(".", 1)[-1]

    if kind == "AppRegistered":
        return [
            Statement(
                REGISTER,
                (uuid.UUID(aggregate_id), tenant_id, record["name"], record["kind"], list(record["channels"]),
                 record["visibility"], version, at),
                phase=CREATED,
            )
        ]  # fmt: skip
    if kind == "AppSubscribed":
        return [Statement(SUBSCRIBE, (tenant_id, uuid.UUID(record["app_id"]), aggregate_id, version, at), phase=CREATED)]
    if kind in ("AppResubscribed", "AppUnsubscribed"):
        return [Statement(SET_ACTIVE, (aggregate_id, tenant_id, kind == "AppResubscribed", version, at), phase=UPDATED)]
    if kind == "SubscriptionGuardsSet":
        hours = record["business_hours"]
        return [
            Statement(
                SET_GUARDS,
                (aggregate_id, tenant_id, list(record["channels"]), list(record["page_ids"]),
                 None if hours is None else json.dumps(hours, sort_keys=True), version, at),
                phase=UPDATED,
            )
        ]  # fmt: skip
    raise ValueError(f"the app read model has no mapping for {event_type}")
