"""Pure mapping of user events to read-store statements. Clear PII goes to
`profiles` only; `profile_directory` gets email and phone through the masking
helper. Every statement is idempotent on its own (keys and version guards)."""

from __future__ import annotations

import uuid

from base.pii import mask_email, mask_phone
from infra.projection import Insert, Keep, Statement, Update, Upsert

# Phases: rows exist before anything updates them; preference rows depend on no
# other row; profile updates run in event order (their version guard needs it).
CREATED, PREFERENCES, UPDATED = 0, 1, 2

CREATE_PROFILE_ROW = Insert(
    "profiles",
    {"profile_id": 1, "tenant_id": 2, "principal_id": 3, "display_name": 4, "email": 5, "phone": 6, "locale": 7,
     "timezone": 8, "version": 9, "created_at": 10, "updated_at": 10},
    key=("profile_id",),
)  # fmt: skip
CREATE_PROFILE = CREATE_PROFILE_ROW.sql
CREATE_DIRECTORY_ROW = Insert(
    "profile_directory",
    {"profile_id": 1, "tenant_id": 2, "principal_id": 3, "display_name": 4, "email_masked": 5, "phone_masked": 6,
     "locale": 7, "timezone": 8, "version": 9, "created_at": 10, "updated_at": 10},
    key=("profile_id",),
)  # fmt: skip
CREATE_DIRECTORY = CREATE_DIRECTORY_ROW.sql
# One statement per table for every later event (NULL keeps a column): a
# preference event only moves the version, so a batch of any events is one executemany.
UPDATE_PROFILE_ROW = Update(
    "profiles",
    key={"profile_id": 1},
    set={"display_name": Keep(2), "email": Keep(3), "phone": Keep(4), "locale": Keep(5), "timezone": Keep(6),
         "version": 7, "updated_at": 8},
    guard=7,
)  # fmt: skip
UPDATE_PROFILE = UPDATE_PROFILE_ROW.sql
UPDATE_DIRECTORY_ROW = Update(
    "profile_directory",
    key={"profile_id": 1},
    set={"display_name": Keep(2), "email_masked": Keep(3), "phone_masked": Keep(4), "locale": Keep(5),
         "timezone": Keep(6), "version": 7, "updated_at": 8},
    guard=7,
)  # fmt: skip
UPDATE_DIRECTORY = UPDATE_DIRECTORY_ROW.sql
# value NULL records a removal (see the migration).
PUT_PREFERENCE_ROW = Upsert(
    "preferences",
    {"profile_id": 1, "key": 2, "tenant_id": 3, "value": 4, "version": 5, "updated_at": 6},
    key=("profile_id", "key"),
    update=("value", "version", "updated_at"),
)
PUT_PREFERENCE = PUT_PREFERENCE_ROW.sql


def _masked(value: str | None, mask) -> str | None:
    return None if value is None else mask(value)


def apply(event_type: str, record: dict) -> list[Statement]:
    env = record["envelope"]
    profile_id = uuid.UUID(env["aggregate_id"])
    tenant_id, version, at = env["tenant_id"], env["aggregate_version"], env["occurred_at"]
    kind = event_type.rsplit(".", 1)[-1]

    def update(display_name=None, email=None, phone=None, locale=None, timezone=None) -> list[Statement]:
        return [
            UPDATE_PROFILE_ROW.statement( (profile_id, display_name, email, phone, locale, timezone, version, at), phase=UPDATED),
            UPDATE_DIRECTORY_ROW.statement(
                (
                    profile_id, display_name, _masked(email, mask_email), _masked(phone, mask_phone),
                    locale, timezone, version, at,
                ),
                phase=UPDATED,
            ),
        ]  # fmt: skip

    def preference(key: str, value: str | None) -> Statement:
        return PUT_PREFERENCE_ROW.statement((profile_id, key, tenant_id, value, version, at), phase=PREFERENCES)

    if kind == "ProfileCreated":
        principal_id = uuid.UUID(record["principal_id"])
        shared = (record["locale"], record["timezone"], version, at)
        return [
            CREATE_PROFILE_ROW.statement(
                (profile_id, tenant_id, principal_id, record["display_name"], record["email"], record["phone"], *shared),
                phase=CREATED,
            ),
            CREATE_DIRECTORY_ROW.statement(
                (
                    profile_id, tenant_id, principal_id, record["display_name"],
                    mask_email(record["email"]), mask_phone(record["phone"]), *shared,
                ),
                phase=CREATED,
            ),
        ]  # fmt: skip
    if kind == "ProfileUpdated":
        return update(**{k: record[k] for k in ("display_name", "email", "phone", "locale", "timezone")})
    if kind == "PreferenceSet":
        return [preference(record["key"], record["value"]), *update()]
    if kind == "PreferenceRemoved":
        return [preference(record["key"], None), *update()]
    raise ValueError(f"the user read model has no mapping for {event_type}")
