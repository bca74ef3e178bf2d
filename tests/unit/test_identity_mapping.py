"""The identity read model's pure event → statements mapping, fed realistic
records: events the Principal aggregate really emitted, wrapped in the envelope
the processor builds and passed through the real Avro codec."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from hubs.identity.aggregate import IDENTITY_TENANT, LOCKOUT, MAX_FAILED_LOGINS, principal_id_for
from hubs.identity.commands import (
    ConfirmTotp,
    RecordLoginFailure,
    RecordLoginSuccess,
    RegisterPrincipal,
    ResetTotp,
    RevokeRefreshFamily,
    RotateRefreshToken,
    StartTotpEnrollment,
)
from hubs.identity.hub import HUB
from infra.hub import decide, event_payload
from infra.projection import Statement
from projections.identity import PROJECTION
from projections.identity.mapping import (
    FAMILY_ADDED,
    FAMILY_UPDATED,
    PRINCIPAL_ADDED,
    PRINCIPAL_UPDATED,
    REGISTER,
    START_FAMILY,
    UPDATE_FAMILY,
    UPDATE_PRINCIPAL,
    apply,
)
from schemas.codec import Catalog, Codec
from schemas.contracts import CommandMeta

CODEC = Codec(Catalog.load())
EVENT_FIELDS = {
    name: [f["name"] for f in CODEC.catalog.latest(name).parsed["fields"] if f["name"] != "envelope"]
    for name in CODEC.catalog.names()
    if name.startswith("poseidon.identity.") and ".commands." not in name
}
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SEALED = "sealed.v1.s20261122T120000-abcdef.c2VhbGVk"
PRINCIPAL_COLUMNS = (
    "principal_id", "version", "failed_logins", "locked_until", "totp_status", "totp_enrollment_id",
    "totp_sealed_secret", "totp_last_step", "last_login_at", "updated_at",
)  # fmt: skip
FAMILY_COLUMNS = (
    "family_id", "version", "generation", "token_hash", "expires_at", "status", "reason", "reuse_detected_at", "updated_at",
)  # fmt: skip


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Story:
    """Runs commands against one principal and keeps the decoded event records."""

    def __init__(self, login: str = "alice@example.com"):
        self.id = principal_id_for(login)
        self.login_name = login
        self.principal = None
        self.records: list[tuple[str, dict]] = []

    def do(self, cls, at: datetime = T0, **payload) -> list[tuple[str, dict]]:
        command_id = str(uuid.uuid4())
        meta = CommandMeta(command_id, self.id, IDENTITY_TENANT, command_id, command_id, "test", issued_at=at)
        decision = decide(HUB, self.principal, cls(meta, **payload))
        assert decision.accepted, decision.rejection
        self.principal = decision.aggregate
        new = []
        for domain_event in decision.events:
            name = HUB.event_name(domain_event)
            record = {
                "envelope": {
                    "event_id": str(uuid.uuid4()),
                    "event_type": name,
                    "aggregate_id": self.id,
                    "aggregate_version": domain_event.originator_version,
                    "tenant_id": IDENTITY_TENANT,
                    "correlation_id": command_id,
                    "causation_id": command_id,
                    "occurred_at": domain_event.timestamp,
                    "actor": "test",
                    "previous_hash": "",
                },
                **event_payload(domain_event, EVENT_FIELDS[name]),
            }
            decoded = CODEC.decode(CODEC.encode(name, record))
            new.append((decoded.name, decoded.record))
        self.records.extend(new)
        return new

    def registered(self) -> Story:
        self.do(RegisterPrincipal, login=self.login_name, kind="user", sealed_password=SEALED)
        return self

    def login(self, family: str, step: int = -1, at: datetime = T0):
        return self.do(
            RecordLoginSuccess,
            at=at,
            family_id=family,
            family_proof=h("proof"),
            token_hash=h(f"{family}-0"),
            expires_at=at + timedelta(days=30),
            totp_step=step,
        )


def principal_update(statement: Statement) -> dict:
    assert (statement.sql, statement.phase) == (UPDATE_PRINCIPAL, PRINCIPAL_UPDATED)
    return dict(zip(PRINCIPAL_COLUMNS, statement.args, strict=True))


def family_update(statement: Statement) -> dict:
    assert (statement.sql, statement.phase) == (UPDATE_FAMILY, FAMILY_UPDATED)
    return dict(zip(FAMILY_COLUMNS, statement.args, strict=True))


def changed(row: dict) -> dict:
    """The columns an update sets (the rest are NULL: kept by COALESCE)."""
    return {k: v for k, v in row.items() if v is not None and k not in ("principal_id", "family_id", "version", "updated_at")}


def test_registration_inserts_the_principal_with_its_sealed_password_only():
    story = Story()
    [(event_type, record)] = story.registered().records
    [statement] = apply(event_type, record)
    env = record["envelope"]
    assert statement == Statement(
        REGISTER,
        (uuid.UUID(story.id), IDENTITY_TENANT, "alice@example.com", "user", SEALED, 1, env["occurred_at"]),
        phase=PRINCIPAL_ADDED,
    )


def test_a_login_adds_its_session_and_resets_the_failure_count():
    story = Story().registered()
    family = str(uuid.uuid4())
    [(event_type, record)] = story.login(family)
    insert, update = apply(event_type, record)
    assert (insert.sql, insert.phase) == (START_FAMILY, FAMILY_ADDED)
    assert insert.args[:5] == (uuid.UUID(family), IDENTITY_TENANT, uuid.UUID(story.id), h("proof"), h(f"{family}-0"))
    assert insert.args[5] == T0 + timedelta(days=30) and insert.args[7] == 2
    row = principal_update(update)
    assert row["version"] == 2 and changed(row) == {"failed_logins": 0, "last_login_at": T0}


def test_failures_count_and_the_lockout_sets_locked_until():
    story = Story().registered()
    for _ in range(MAX_FAILED_LOGINS - 1):
        story.do(RecordLoginFailure, reason="password")
    (failed_type, failed), (locked_type, locked) = story.do(RecordLoginFailure, reason="totp")
    assert changed(principal_update(apply(failed_type, failed)[0])) == {"failed_logins": MAX_FAILED_LOGINS}
    row = principal_update(apply(locked_type, locked)[0])
    assert changed(row) == {"failed_logins": 0, "locked_until": T0 + LOCKOUT} and row["version"] == MAX_FAILED_LOGINS + 2


def test_rotation_reuse_and_revocation_update_the_family_row_in_version_order():
    story = Story().registered()
    family = str(uuid.uuid4())
    story.login(family)
    rotate = {
        "family_id": family,
        "family_proof": h("proof"),
        "new_hash": h(f"{family}-1"),
        "expires_at": T0 + timedelta(days=31),
    }
    [(rotated_type, rotated)] = story.do(RotateRefreshToken, presented_generation=0, presented_hash=h(f"{family}-0"), **rotate)
    reuse = story.do(RotateRefreshToken, presented_generation=0, presented_hash=h(f"{family}-0"), **rotate)
    row = family_update(apply(rotated_type, rotated)[0])
    assert (row["family_id"], row["version"]) == (uuid.UUID(family), 3)
    assert changed(row) == {"generation": 1, "token_hash": h(f"{family}-1"), "expires_at": T0 + timedelta(days=31)}
    detected, revoked = (family_update(apply(t, r)[0]) for t, r in reuse)
    assert changed(detected) == {"reuse_detected_at": reuse[0][1]["envelope"]["occurred_at"]} and detected["version"] == 4
    assert changed(revoked) == {"status": "revoked", "reason": "reuse"} and revoked["version"] == 5


def test_totp_enrolment_stores_the_sealed_secret_and_activation_the_used_step():
    story = Story().registered()
    enrollment = str(uuid.uuid4())
    [(started_type, started)] = story.do(StartTotpEnrollment, enrollment_id=enrollment, sealed_secret=SEALED)
    [(enabled_type, enabled)] = story.do(ConfirmTotp, enrollment_id=enrollment, step=123)
    assert changed(principal_update(apply(started_type, started)[0])) == {
        "totp_status": "pending",
        "totp_enrollment_id": uuid.UUID(enrollment),
        "totp_sealed_secret": SEALED,
    }
    assert changed(principal_update(apply(enabled_type, enabled)[0])) == {"totp_status": "active", "totp_last_step": 123}
    [(login_type, login)] = story.login(str(uuid.uuid4()), step=124)
    assert changed(principal_update(apply(login_type, login)[1]))["totp_last_step"] == 124
    [(reset_type, reset), _] = story.do(ResetTotp, reason="lost phone")
    # Status "none" is what every check reads; the old sealed secret is overwritten by the next enrolment.
    assert changed(principal_update(apply(reset_type, reset)[0])) == {"totp_status": "none"}


def test_every_event_after_registration_moves_the_principal_row_to_its_version():
    story = Story().registered()
    family = str(uuid.uuid4())
    story.login(family)
    story.do(RevokeRefreshFamily, family_id=family, reason="logout")
    story.do(RecordLoginFailure, reason="password")
    for event_type, record in story.records[1:]:
        updates = [principal_update(s) for s in apply(event_type, record) if s.sql == UPDATE_PRINCIPAL]
        assert [u["version"] for u in updates] == [record["envelope"]["aggregate_version"]]


def test_every_identity_event_schema_has_a_mapping_and_unknown_events_are_refused():
    assert set(EVENT_FIELDS) == {f"poseidon.identity.{n}" for n in (
        "PrincipalRegistered", "LoginSucceeded", "LoginFailed", "PrincipalLockedOut", "RefreshTokenRotated",
        "RefreshTokenReuseDetected", "RefreshFamilyRevoked", "TotpEnrollmentStarted", "TotpEnabled", "TotpReset",
    )}  # fmt: skip
    with pytest.raises(ValueError, match="no mapping"):
        apply(
            "poseidon.identity.Unheard",
            {"envelope": {"aggregate_id": str(uuid.uuid4()), "aggregate_version": 1, "occurred_at": T0}},
        )
    assert PROJECTION.topics == ("identity.events",) and set(PROJECTION.tables) == {"principals", "refresh_families"}
