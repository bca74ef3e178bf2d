"""Pure mapping of identity events to read-store statements. Every statement is
idempotent on its own: inserts do nothing on conflict, updates are guarded by
the aggregate version, so a replayed event changes nothing."""

from __future__ import annotations

import uuid

from infra.projection import Statement

# Phases: rows exist before anything updates them; principal and family updates
# each keep event order (their version guards need it) but not relative to each other.
PRINCIPAL_ADDED, FAMILY_ADDED, PRINCIPAL_UPDATED, FAMILY_UPDATED = 0, 1, 2, 3

REGISTER = """INSERT INTO principals (principal_id, tenant_id, login, kind, sealed_password, version, registered_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (principal_id) DO NOTHING"""
START_FAMILY = """INSERT INTO refresh_families (family_id, tenant_id, principal_id, family_proof, generation,
    current_token_hash, status, expires_at, created_at, updated_at, version)
VALUES ($1, $2, $3, $4, 0, $5, 'active', $6, $7, $7, $8) ON CONFLICT (family_id) DO NOTHING"""
# One statement for every principal change (NULL keeps a column), so a batch of them is one executemany.
UPDATE_PRINCIPAL = """UPDATE principals SET failed_logins = COALESCE($3, failed_logins),
    locked_until = COALESCE($4, locked_until), totp_status = COALESCE($5, totp_status),
    totp_enrollment_id = COALESCE($6, totp_enrollment_id), totp_sealed_secret = COALESCE($7, totp_sealed_secret),
    totp_last_step = COALESCE($8, totp_last_step), last_login_at = COALESCE($9, last_login_at),
    version = $2, updated_at = $10
WHERE principal_id = $1 AND version < $2"""
UPDATE_FAMILY = """UPDATE refresh_families SET generation = COALESCE($3, generation),
    current_token_hash = COALESCE($4, current_token_hash), expires_at = COALESCE($5, expires_at),
    status = COALESCE($6, status), revoked_reason = COALESCE($7, revoked_reason),
    reuse_detected_at = COALESCE($8, reuse_detected_at), version = $2, updated_at = $9
WHERE family_id = $1 AND version < $2"""


def apply(event_type: str, record: dict) -> list[Statement]:
    env = record["envelope"]
    principal_id = uuid.UUID(env["aggregate_id"])
    version, at = env["aggregate_version"], env["occurred_at"]
    kind = event_type.rsplit(".", 1)[-1]

    def principal(
        failed_logins=None,
        locked_until=None,
        totp_status=None,
        totp_enrollment_id=None,
        totp_sealed_secret=None,
        totp_last_step=None,
        last_login_at=None,
    ) -> Statement:
        return Statement(
            UPDATE_PRINCIPAL,
            (
                principal_id, version, failed_logins, locked_until, totp_status,
                uuid.UUID(totp_enrollment_id) if totp_enrollment_id else None,
                totp_sealed_secret, totp_last_step, last_login_at, at,
            ),
            phase=PRINCIPAL_UPDATED,
        )  # fmt: skip

    def family(family_id: str, generation=None, token_hash=None, expires_at=None, status=None, reason=None, reuse_at=None):
        return Statement(
            UPDATE_FAMILY,
            (uuid.UUID(family_id), version, generation, token_hash, expires_at, status, reason, reuse_at, at),
            phase=FAMILY_UPDATED,
        )

    if kind == "PrincipalRegistered":
        return [
            Statement(
                REGISTER,
                (principal_id, env["tenant_id"], record["login"], record["kind"], record["sealed_password"], version, at),
                phase=PRINCIPAL_ADDED,
            )
        ]
    if kind == "LoginSucceeded":
        step = record["totp_step"]
        return [
            Statement(
                START_FAMILY,
                (
                    uuid.UUID(record["family_id"]),
                    env["tenant_id"],
                    principal_id,
                    record["family_proof"],
                    record["token_hash"],
                    record["expires_at"],
                    at,
                    version,
                ),
                phase=FAMILY_ADDED,
            ),  # fmt: skip
            principal(failed_logins=0, totp_last_step=step if step >= 0 else None, last_login_at=record["logged_in_at"]),
        ]
    if kind == "LoginFailed":
        return [principal(failed_logins=record["failed_logins"])]
    if kind == "PrincipalLockedOut":
        return [principal(failed_logins=0, locked_until=record["locked_until"])]
    if kind == "RefreshTokenRotated":
        return [
            family(
                record["family_id"],
                generation=record["generation"],
                token_hash=record["token_hash"],
                expires_at=record["expires_at"],
            ),
            principal(),
        ]
    if kind == "RefreshTokenReuseDetected":
        return [family(record["family_id"], reuse_at=at), principal()]
    if kind == "RefreshFamilyRevoked":
        return [family(record["family_id"], status="revoked", reason=record["reason"]), principal()]
    if kind == "TotpEnrollmentStarted":
        return [
            principal(
                totp_status="pending", totp_enrollment_id=record["enrollment_id"], totp_sealed_secret=record["sealed_secret"]
            )
        ]
    if kind == "TotpEnabled":
        return [principal(totp_status="active", totp_last_step=record["step"])]
    raise ValueError(f"the identity read model has no mapping for {event_type}")
