"""Pure mapping of App hub events to read-store statements. Every statement is
idempotent on its own (inserts do nothing on conflict, updates are guarded by the
aggregate version), so a replayed event changes nothing."""

from __future__ import annotations

import json
import uuid

from infra.projection import Const, Insert, P, Statement, Update, When

# Phases: rows are created before anything updates them; updates keep event order
# (their version guard needs it).
CREATED, UPDATED = 0, 1

REGISTER_ROW = Insert(
    "apps",
    {"app_id": 1, "tenant_id": 2, "name": 3, "kind": 4, "channels": 5, "visibility": 6, "version": 7,
     "registered_at": 8, "updated_at": 8},
    key=("app_id",),
)  # fmt: skip
REGISTER = REGISTER_ROW.sql
SUBSCRIBE_ROW = Insert(
    "subscriptions",
    {"tenant_id": 1, "app_id": 2, "subscription_id": 3, "active": Const("true", True), "version": 4,
     "subscribed_at": 5, "updated_at": 5},
    key=("subscription_id", "tenant_id"),
    unique=(("tenant_id", "app_id"),),
    any_conflict=True,
)  # fmt: skip
SUBSCRIBE = SUBSCRIBE_ROW.sql
SET_ACTIVE_ROW = Update(
    "subscriptions",
    key={"subscription_id": 1, "tenant_id": 2},
    set={"active": 3, "version": 4, "updated_at": 5, "subscribed_at": When(3, 5)},
    guard=4,
)
SET_ACTIVE = SET_ACTIVE_ROW.sql
SET_GUARDS_ROW = Update(
    "subscriptions",
    key={"subscription_id": 1, "tenant_id": 2},
    set={"channels": 3, "page_ids": 4, "business_hours": P(5, "jsonb"), "version": 6, "updated_at": 7},
    guard=6,
)
SET_GUARDS = SET_GUARDS_ROW.sql
SET_BOT_ROW = Update(
    "subscriptions",
    key={"subscription_id": 1, "tenant_id": 2},
    set={"bot_webhook_id": 3, "bot_sealed_secret": 4, "version": 5, "updated_at": 6},
    guard=5,
)


def apply(event_type: str, record: dict) -> list[Statement]:
    env = record["envelope"]
    aggregate_id, tenant_id = env["aggregate_id"], env["tenant_id"]
    version, at = env["aggregate_version"], env["occurred_at"]
    kind = event_type.rsplit(".", 1)[-1]

    if kind == "AppRegistered":
        return [
            REGISTER_ROW.statement(
                (uuid.UUID(aggregate_id), tenant_id, record["name"], record["kind"], list(record["channels"]),
                 record["visibility"], version, at),
                phase=CREATED,
            )
        ]  # fmt: skip
    if kind == "AppSubscribed":
        return [SUBSCRIBE_ROW.statement((tenant_id, uuid.UUID(record["app_id"]), aggregate_id, version, at), phase=CREATED)]
    if kind in ("AppResubscribed", "AppUnsubscribed"):
        return [SET_ACTIVE_ROW.statement((aggregate_id, tenant_id, kind == "AppResubscribed", version, at), phase=UPDATED)]
    if kind == "SubscriptionGuardsSet":
        hours = record["business_hours"]
        return [
            SET_GUARDS_ROW.statement(
                (aggregate_id, tenant_id, list(record["channels"]), list(record["page_ids"]),
                 None if hours is None else json.dumps(hours, sort_keys=True), version, at),
                phase=UPDATED,
            )
        ]  # fmt: skip
    if kind == "BotConnected":
        return [
            SET_BOT_ROW.statement(
                (aggregate_id, tenant_id, record["webhook_id"], record["sealed_webhook_secret"], version, at), phase=UPDATED
            )
        ]
    raise ValueError(f"the app read model has no mapping for {event_type}")
