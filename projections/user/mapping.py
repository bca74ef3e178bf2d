"""Pure mapping of user events to read-store statements. Clear PII goes to
`profiles` only; `profile_directory` gets email and phone through the masking
helper. Every statement is idempotent on its own (keys and version guards)."""

from __future__ import annotations

import uuid

from infra.pii import mask_email, mask_phone
from infra.projection import Statement

# Phases: rows exist before anything updates them; preference rows depend on no
# other row; profile updates run in event order (their version guard needs it).
CREATED, PREFERENCES, UPDATED = 0, 1, 2

CREATE_PROFILE = """INSERT INTO profiles (profile_id, tenant_id, principal_id, display_name, email, phone, locale, timezone,
    version, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) ON CONFLICT (profile_id) DO NOTHING"""
CREATE_DIRECTORY = """INSERT INTO profile_directory (profile_id, tenant_id, principal_id, display_name, email_masked,
    phone_masked, locale, timezone, version, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) ON CONFLICT (profile_id) DO NOTHING"""
# One statement per table for every later event (NULL keeps a column): a
# preference event only moves the version, so a batch of any events is one executemany.
UPDATE_PROFILE = """UPDATE profiles SET display_name = COALESCE($2, display_name), email = COALESCE($3, email),
    phone = COALESCE($4, phone), locale = COALESCE($5, locale), timezone = COALESCE($6, timezone),
    version = $7, updated_at = $8
WHERE profile_id = $1 AND version < $7"""
UPDATE_DIRECTORY = """UPDATE profile_directory SET display_name = COALESCE($2, display_name),
    email_masked = COALESCE($3, email_masked), phone_masked = COALESCE($4, phone_masked),
    locale = COALESCE($5, locale), timezone = COALESCE($6, timezone), version = $7, updated_at = $8
WHERE profile_id = $1 AND version < $7"""
# value NULL records a removal (see the migration).
PUT_PREFERENCE = """INSERT INTO preferences (profile_id, key, tenant_id, value, version, updated_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (profile_id, key) DO UPDATE SET value = EXCLUDED.value, version = EXCLUDED.version,
    updated_at = EXCLUDED.updated_at
WHERE preferences.version < EXCLUDED.version"""


def _masked(value: str | None, mask) -> str | None:
    return None if value is None else mask(value)


def apply(event_type: str, record: dict) -> list[Statement]:
    env = record["envelope"]
    profile_id = uuid.UUID(env["aggregate_id"])
    tenant_id, version, at = env["tenant_id"], env["aggregate_version"], env["occurred_at"]
    kind = event_type.rsplit(".", 1)[-1]

    def update(display_name=None, email=None, phone=None, locale=None, timezone=None) -> list[Statement]:
        return [
            Statement(UPDATE_PROFILE, (profile_id, display_name, email, phone, locale, timezone, version, at), phase=UPDATED),
            Statement(
                UPDATE_DIRECTORY,
                (
                    profile_id, display_name, _masked(email, mask_email), _masked(phone, mask_phone),
                    locale, timezone, version, at,
                ),
                phase=UPDATED,
            ),
        ]  # fmt: skip

    def preference(key: str, value: str | None) -> Statement:
        return Statement(PUT_PREFERENCE, (profile_id, key, tenant_id, value, version, at), phase=PREFERENCES)

    if kind == "ProfileCreated":
        principal_id = uuid.UUID(record["principal_id"])
        shared = (record["locale"], record["timezone"], version, at)
        return [
            Statement(
                CREATE_PROFILE,
                (profile_id, tenant_id, principal_id, record["display_name"], record["email"], record["phone"], *shared),
                phase=CREATED,
            ),
            Statement(
                CREATE_DIRECTORY,
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
