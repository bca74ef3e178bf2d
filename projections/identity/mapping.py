"""Pure mapping of identity events to read-store statements. Every statement is
idempotent on its own: inserts do nothing on conflict, updates are guarded by
the aggregate version, so a replayed event changes nothing."""

from __future__ import annotations

import uuid

from infra.projection import Const, Insert, Keep, Statement, Update

# Phases: rows exist before anything updates them; principal and family updates
# each keep event order (their version guards need it) but not relative to each other.
PRINCIPAL_ADDED, FAMILY_ADDED, PRINCIPAL_UPDATED, FAMILY_UPDATED = 0, 1, 2, 3

REGISTER_ROW = Insert(
    "principals",
    {"principal_id": 1, "tenant_id": 2, "login": 3, "kind": 4, "sealed_password": 5, "version": 6, "registered_at": 7,
     "updated_at": 7},
    key=("principal_id",),
)  # fmt: skip
REGISTER = REGISTER_ROW.sql
START_FAMILY_ROW = Insert(
    "refresh_families",
    {"family_id": 1, "tenant_id": 2, "principal_id": 3, "family_proof": 4, "generation": Const("0", 0),
     "current_token_hash": 5, "status": Const("'active'", "active"), "expires_at": 6, "created_at": 7, "updated_at": 7,
     "version": 8},
    key=("family_id",),
)  # fmt: skip
START_FAMILY = START_FAMILY_ROW.sql
# One statement for every principal change (NULL keeps a column), so a batch of them is one executemany.
UPDATE_PRINCIPAL_ROW = Update(
    "principals",
    key={"principal_id": 1},
    set={"failed_logins": Keep(3), "locked_until": Keep(4), "totp_status": Keep(5), "totp_enrollment_id": Keep(6),
         "totp_sealed_secret": Keep(7), "totp_last_step": Keep(8), "last_login_at": Keep(9), "version": 2,
         "updated_at": 10},
    guard=2,
)  # fmt: skip
UPDATE_PRINCIPAL = UPDATE_PRINCIPAL_ROW.sql
UPDATE_FAMILY_ROW = Update(
    "refresh_families",
    key={"family_id": 1},
    set={"generation": Keep(3), "current_token_hash": Keep(4), "expires_at": Keep(5), "status": Keep(6),
         "revoked_reason": Keep(7), "reuse_detected_at": Keep(8), "version": 2, "updated_at": 9},
    guard=2,
)  # fmt: skip
UPDATE_FAMILY = UPDATE_FAMILY_ROW.sql


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
        return UPDATE_PRINCIPAL_ROW.statement(
            (
                principal_id, version, failed_logins, locked_until, totp_status,
                uuid.UUID(totp_enrollment_id) if totp_enrollment_id else None,
                totp_sealed_secret, totp_last_step, last_login_at, at,
            ),
            phase=PRINCIPAL_UPDATED,
        )  # fmt: skip

    def family(family_id: str, generation=None, token_hash=None, expires_at=None, status=None, reason=None, reuse_at=None):
        return UPDATE_FAMILY_ROW.statement(
            (uuid.UUID(family_id), version, generation, token_hash, expires_at, status, reason, reuse_at, at),
            phase=FAMILY_UPDATED,
        )

    if kind == "PrincipalRegistered":
        return [
            REGISTER_ROW.statement(
                (principal_id, env["tenant_id"], record["login"], record["kind"], record["sealed_password"], version, at),
                phase=PRINCIPAL_ADDED,
            )
        ]
    if kind == "LoginSucceeded":
        step = record["totp_step"]
        return [
            START_FAMILY_ROW.statement(
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
    if kind == "TotpReset":
        # Status "none" is what every check reads; the sealed secret is replaced by the next enrolment.
        return [principal(totp_status="none")]
    raise ValueError(f"the identity read model has no mapping for {event_type}")
