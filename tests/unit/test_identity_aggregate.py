"""The Principal aggregate's rules as given / when / then over `infra.hub.decide`,
the same pure step the aggregate processor runs: registration, lockout, refresh
rotation and reuse, revocation, TOTP. No broker, no database, no clock: "now" is
each command's issued_at."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from hubs.identity.aggregate import (
    IDENTITY_TENANT,
    LOCKOUT,
    MAX_FAILED_LOGINS,
    MAX_SESSIONS,
    Principal,
    principal_id_for,
)
from hubs.identity.commands import (
    ConfirmTotp,
    RecordLoginFailure,
    RecordLoginSuccess,
    RegisterPrincipal,
    ResetTotp,
    RevokeAllRefreshFamilies,
    RevokeRefreshFamily,
    RotateRefreshToken,
    StartTotpEnrollment,
)
from hubs.identity.hub import HUB
from infra.hub import SnapshotCodec
from schemas.contracts import CommandMeta
from tests.unit.given_when_then import Fact, Hub, event_names, given, happened, then_rejected

LOGIN = "alice@example.com"
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TTL = timedelta(days=30)
SEALED = "sealed.v1.s20261122T120000-abcdef.bm90LWEtcmVhbC1zZWFsZWQtdmFsdWU"
HOME = "a1" * 16
"""The fingerprint of the principal's own address (the service sends a keyed hash, never the address)."""
ATTACKER = "b2" * 16


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def meta(principal_id: str, at: datetime, tenant: str = IDENTITY_TENANT) -> CommandMeta:
    command_id = str(uuid.uuid4())
    return CommandMeta(command_id, principal_id, tenant, command_id, command_id, "test", issued_at=at)


class Story:
    """Commands for one principal, so a test reads as a list of verbs."""

    def __init__(self, login: str = LOGIN):
        self.login = login
        self.id = principal_id_for(login)

    def register(self, *, login: str | None = None, kind: str = "user", sealed: str = SEALED, at=T0, **m) -> RegisterPrincipal:
        return RegisterPrincipal(
            meta(m.pop("principal_id", self.id), at, **m), login=login or self.login, kind=kind, sealed_password=sealed
        )

    def login_ok(
        self, family: str, *, step: int = -1, at=T0, expires=None, token: str | None = None, source: str = HOME
    ) -> RecordLoginSuccess:
        return RecordLoginSuccess(
            meta(self.id, at),
            family_id=family,
            family_proof=h(f"proof-{family}"),
            token_hash=h(token or f"{family}-0"),
            expires_at=expires or at + TTL,
            totp_step=step,
            source=source,
        )

    def login_failed(self, reason: str = "password", at=T0, source: str = HOME) -> RecordLoginFailure:
        return RecordLoginFailure(meta(self.id, at), reason=reason, source=source)

    def reset_totp(self, reason: str = "lost phone, identity checked by support", at=T0) -> ResetTotp:
        return ResetTotp(meta(self.id, at), reason=reason)

    def rotate(self, family: str, generation: int, *, presented=None, proof=None, at=T0, expires=None) -> RotateRefreshToken:
        return RotateRefreshToken(
            meta(self.id, at),
            family_id=family,
            family_proof=proof or h(f"proof-{family}"),
            presented_generation=generation,
            presented_hash=h(presented or f"{family}-{generation}"),
            new_hash=h(f"{family}-{generation + 1}"),
            expires_at=expires or at + TTL,
        )

    def revoke(self, family: str, at=T0) -> RevokeRefreshFamily:
        return RevokeRefreshFamily(meta(self.id, at), family_id=family, reason="logout")

    def revoke_all(self, at=T0) -> RevokeAllRefreshFamilies:
        return RevokeAllRefreshFamilies(meta(self.id, at), reason="password reset")

    def enroll(self, enrollment: str, sealed: str = SEALED, at=T0) -> StartTotpEnrollment:
        return StartTotpEnrollment(meta(self.id, at), enrollment_id=enrollment, sealed_secret=sealed)

    def confirm(self, enrollment: str, step: int, at=T0) -> ConfirmTotp:
        return ConfirmTotp(meta(self.id, at), enrollment_id=enrollment, step=step)

    # -- what happened to the principal, for `given` --

    def registered(self, kind: str = "user", sealed: str = SEALED) -> Fact:
        return happened(
            Principal.PrincipalRegistered,
            principal_id=self.id,
            tenant_id=IDENTITY_TENANT,
            login=self.login,
            kind=kind,
            sealed_password=sealed,
        )

    def logged_in(self, family: str, *, step: int = -1, at=T0, expires=None, source: str = HOME) -> Fact:
        return happened(
            Principal.LoginSucceeded,
            family_id=family,
            family_proof=h(f"proof-{family}"),
            token_hash=h(f"{family}-0"),
            expires_at=expires or at + TTL,
            totp_step=step,
            logged_in_at=at,
            source=source,
        )

    def failed_logins(self, count: int, reason: str = "password", source: str = HOME) -> list[Fact]:
        """`count` consecutive LoginFailed from `source`, counting from one."""
        return [happened(Principal.LoginFailed, reason=reason, failed_logins=n, source=source) for n in range(1, count + 1)]

    def locked_out(self, at=T0, source: str = HOME) -> Fact:
        return happened(Principal.PrincipalLockedOut, locked_until=at + LOCKOUT, failed_logins=MAX_FAILED_LOGINS, source=source)

    def rotated(self, family: str, generation: int, at=T0) -> Fact:
        """RefreshTokenRotated to `generation`, the token a rotation of `generation - 1` issues."""
        return happened(
            Principal.RefreshTokenRotated,
            family_id=family,
            generation=generation,
            token_hash=h(f"{family}-{generation}"),
            expires_at=at + TTL,
        )

    def revoked(self, family: str, reason: str = "logout") -> Fact:
        return happened(Principal.RefreshFamilyRevoked, family_id=family, reason=reason)

    def enrolled(self, enrollment: str, sealed: str = SEALED) -> Fact:
        return happened(Principal.TotpEnrollmentStarted, enrollment_id=enrollment, sealed_secret=sealed)

    def totp_enabled(self, enrollment: str, step: int) -> Fact:
        return happened(Principal.TotpEnabled, enrollment_id=enrollment, step=step)


when = Hub(HUB).when


def fid() -> str:
    return str(uuid.uuid4())


# -- registration ---------------------------------------------------------


def test_registering_records_the_sealed_password_in_the_event_but_not_in_the_aggregate():
    alice = Story()
    decision = when(None, alice.register())
    assert event_names(decision) == ["PrincipalRegistered"]
    registered = decision.events[0]
    assert (registered.login, registered.kind, registered.sealed_password) == (LOGIN, "user", SEALED)
    principal = decision.aggregate
    assert str(principal.id) == alice.id == str(uuid.uuid5(uuid.UUID("4f38505b-d709-4a7d-bee6-996c6b49d586"), LOGIN))
    assert principal.tenant_id == IDENTITY_TENANT
    assert SEALED not in repr(vars(principal))


def test_a_login_can_be_registered_only_once():
    alice = Story()
    assert "already registered" in then_rejected(when(given(alice.registered()), alice.register()), "AggregateAlreadyExists")


@pytest.mark.parametrize(
    "change, rule, says",
    [
        ({"principal_id": str(uuid.uuid4())}, "InvalidCommand", "principal id of login"),
        ({"login": "Alice@Example.com"}, "LoginNameInvalid", "canonical form"),
        ({"login": "a b@example.com"}, "LoginNameInvalid", "ASCII letters"),
        ({"login": "x"}, "LoginNameInvalid", "3 to 254"),
        ({"tenant": "acme"}, "InvalidCommand", "'platform' tenant"),
        ({"kind": "robot"}, "InvalidCommand", "kind must be one of"),
        ({"sealed": "correct horse battery staple"}, "InvalidCommand", "never a clear secret"),
        ({"sealed": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"}, "InvalidCommand", "never a clear secret"),
    ],
)
def test_registration_refuses_anything_but_a_canonical_login_its_own_id_and_a_sealed_password(change, rule, says):
    assert says in then_rejected(when(None, Story().register(**change)), rule)


def test_commands_for_a_principal_that_does_not_exist_are_refused():
    assert "does not exist" in then_rejected(when(None, Story().login_failed()), "AggregateNotFound")


def test_identity_commands_outside_the_platform_tenant_are_refused():
    alice = Story()
    command = RecordLoginFailure(meta(alice.id, T0, tenant="acme"), reason="password")
    then_rejected(when(given(alice.registered()), command), "TenantMismatch")


# -- lockout --------------------------------------------------------------


def test_five_consecutive_failures_lock_their_source_out():
    alice = Story()
    principal = given(alice.registered(), alice.failed_logins(MAX_FAILED_LOGINS - 1, source=ATTACKER))
    decision = when(principal, alice.login_failed("totp", at=T0 + timedelta(seconds=5), source=ATTACKER))
    assert event_names(decision) == ["LoginFailed", "PrincipalLockedOut"]
    assert (decision.events[0].failed_logins, decision.events[0].source) == (MAX_FAILED_LOGINS, ATTACKER)
    assert decision.events[1].locked_until == T0 + timedelta(seconds=5) + LOCKOUT and decision.events[1].source == ATTACKER


def test_while_a_source_is_locked_out_it_records_nothing_but_other_sources_log_in():
    alice = Story()
    locked = given(alice.registered(), alice.failed_logins(MAX_FAILED_LOGINS, source=ATTACKER), alice.locked_out(source=ATTACKER))
    later = T0 + LOCKOUT - timedelta(seconds=1)
    reason = then_rejected(when(locked, alice.login_ok(fid(), at=later, source=ATTACKER)), "PrincipalLocked")
    assert "source is locked out" in reason
    then_rejected(when(locked, alice.login_failed(at=later, source=ATTACKER)), "PrincipalLocked")
    # Someone else's failures lock nobody else out: the principal's own address still logs in.
    assert event_names(when(locked, alice.login_ok(fid(), at=later))) == ["LoginSucceeded"]
    decision = when(locked, alice.login_failed(at=later))
    assert event_names(decision) == ["LoginFailed"] and decision.events[0].failed_logins == 1


def test_a_password_with_a_fresh_totp_code_is_never_refused_for_a_lockout():
    alice, enrollment = Story(), str(uuid.uuid4())
    locked = given(
        alice.registered(),
        alice.enrolled(enrollment),
        alice.totp_enabled(enrollment, step=10),
        alice.failed_logins(MAX_FAILED_LOGINS, "totp", source=HOME),
        alice.locked_out(source=HOME),
    )
    later = T0 + timedelta(minutes=1)
    then_rejected(when(locked, alice.login_failed("totp", at=later)), "PrincipalLocked")
    then_rejected(when(locked, alice.login_ok(fid(), step=-1, at=later)), "PrincipalLocked")
    assert event_names(when(locked, alice.login_ok(fid(), step=11, at=later))) == ["LoginSucceeded"]


def test_a_lockout_recorded_before_sources_existed_locks_only_that_legacy_source():
    alice = Story()
    legacy = given(alice.registered(), alice.failed_logins(MAX_FAILED_LOGINS, source=""), alice.locked_out(source=""))
    later = T0 + timedelta(minutes=1)
    assert legacy.is_locked(later, "") and not legacy.is_locked(later, HOME)
    assert event_names(when(legacy, alice.login_ok(fid(), at=later))) == ["LoginSucceeded"]


def test_a_source_must_be_a_fingerprint_never_an_address():
    alice = Story()
    for source in ("203.0.113.9", "A1" * 16, "a" * 65):
        assert "never an address" in then_rejected(
            when(given(alice.registered()), alice.login_failed(source=source)), "InvalidCommand"
        )


def test_after_the_lockout_a_login_succeeds_and_failures_count_from_zero():
    alice = Story()
    locked = given(alice.registered(), alice.failed_logins(MAX_FAILED_LOGINS), alice.locked_out())
    assert event_names(when(locked, alice.login_ok(fid(), at=T0 + LOCKOUT))) == ["LoginSucceeded"]
    decision = when(locked, alice.login_failed(at=T0 + LOCKOUT))
    assert event_names(decision) == ["LoginFailed"] and decision.events[0].failed_logins == 1


def test_a_success_resets_the_failure_count():
    alice = Story()
    principal = given(
        alice.registered(), alice.failed_logins(MAX_FAILED_LOGINS - 1), alice.logged_in(fid()), alice.failed_logins(3)
    )
    decision = when(principal, alice.login_failed())
    assert event_names(decision) == ["LoginFailed"] and decision.events[0].failed_logins == MAX_FAILED_LOGINS - 1


def test_a_failure_needs_a_known_reason():
    alice = Story()
    then_rejected(when(given(alice.registered()), alice.login_failed("guess")), "InvalidCommand", "reason must be one of")


# -- refresh tokens -------------------------------------------------------


def test_the_current_refresh_token_rotates_to_the_next_generation():
    alice, family = Story(), fid()
    principal = given(alice.registered(), alice.logged_in(family))
    decision = when(principal, alice.rotate(family, 0))
    assert event_names(decision) == ["RefreshTokenRotated"]
    rotated = decision.events[0]
    assert (rotated.family_id, rotated.generation, rotated.token_hash) == (family, 1, h(f"{family}-1"))
    assert event_names(when(decision.aggregate, alice.rotate(family, 1))) == ["RefreshTokenRotated"]


def test_a_reused_refresh_token_revokes_its_whole_family():
    alice, family = Story(), fid()
    principal = given(alice.registered(), alice.logged_in(family), alice.rotated(family, 1), alice.rotated(family, 2))
    decision = when(principal, alice.rotate(family, 0))
    assert event_names(decision) == ["RefreshTokenReuseDetected", "RefreshFamilyRevoked"]
    detected, revoked = decision.events
    assert (detected.presented_generation, detected.current_generation) == (0, 2)
    assert (revoked.family_id, revoked.reason) == (family, "reuse")
    # The newest token, held by whoever rotated last, stops working too.
    then_rejected(when(decision.aggregate, alice.rotate(family, 2)), "UnknownRefreshToken")


def test_a_token_without_the_family_secret_is_unknown_and_revokes_nothing():
    alice, family = Story(), fid()
    principal = given(alice.registered(), alice.logged_in(family), alice.rotated(family, 1))
    then_rejected(when(principal, alice.rotate(family, 0, proof=h("guessed"))), "UnknownRefreshToken")
    then_rejected(when(principal, alice.rotate(fid(), 0)), "UnknownRefreshToken")
    assert event_names(when(principal, alice.rotate(family, 1))) == ["RefreshTokenRotated"]


def test_a_current_generation_token_with_another_hash_is_refused():
    alice, family = Story(), fid()
    principal = given(alice.registered(), alice.logged_in(family))
    then_rejected(when(principal, alice.rotate(family, 0, presented="forged")), "UnknownRefreshToken")
    then_rejected(when(principal, alice.rotate(family, 3)), "UnknownRefreshToken")


def test_an_expired_refresh_token_does_not_rotate():
    alice, family = Story(), fid()
    principal = given(alice.registered(), alice.logged_in(family, expires=T0 + timedelta(hours=1)))
    then_rejected(when(principal, alice.rotate(family, 0, at=T0 + timedelta(hours=1))), "RefreshTokenExpired")


def test_revoking_a_session_stops_its_tokens_and_leaves_the_others():
    alice, one, two = Story(), fid(), fid()
    principal = given(alice.registered(), alice.logged_in(one), alice.logged_in(two))
    decision = when(principal, alice.revoke(one))
    assert event_names(decision) == ["RefreshFamilyRevoked"] and decision.events[0].reason == "logout"
    then_rejected(when(decision.aggregate, alice.rotate(one, 0)), "UnknownRefreshToken")
    assert event_names(when(decision.aggregate, alice.rotate(two, 0))) == ["RefreshTokenRotated"]
    then_rejected(when(decision.aggregate, alice.revoke(one)), "UnknownRefreshFamily")


def test_revoking_all_sessions_revokes_each_live_one():
    alice, families = Story(), [fid(), fid(), fid()]
    principal = given(alice.registered(), [alice.logged_in(f) for f in families], alice.revoked(families[1]))
    decision = when(principal, alice.revoke_all())
    assert [e.family_id for e in decision.events] == [families[0], families[2]]
    assert event_names(when(decision.aggregate, alice.revoke_all())) == []


def test_a_principal_keeps_at_most_the_session_limit_and_forgets_expired_sessions():
    alice = Story()
    families = [fid() for _ in range(MAX_SESSIONS)]
    principal = given(alice.registered(), [alice.logged_in(f) for f in families])
    decision = when(principal, alice.login_ok(fid()))
    assert event_names(decision) == ["RefreshFamilyRevoked", "LoginSucceeded"]
    assert (decision.events[0].family_id, decision.events[0].reason) == (families[0], "session limit")
    assert len(decision.aggregate.families) == MAX_SESSIONS
    after_expiry = when(decision.aggregate, alice.login_ok(fid(), at=T0 + TTL + timedelta(seconds=1)))
    assert event_names(after_expiry) == ["LoginSucceeded"] and len(after_expiry.aggregate.families) == 1


def test_login_success_refuses_malformed_token_material():
    alice = Story()
    principal = given(alice.registered())
    bad_hash = RecordLoginSuccess(
        meta(alice.id, T0), family_id=fid(), family_proof="nope", token_hash=h("t"), expires_at=T0 + TTL
    )
    assert "family_proof must be a lower-case hex SHA-256" in then_rejected(when(principal, bad_hash), "InvalidCommand")
    assert "expires_at must be later" in then_rejected(when(principal, alice.login_ok(fid(), expires=T0)), "InvalidCommand")


# -- TOTP -----------------------------------------------------------------


def test_totp_is_required_at_login_once_confirmed_and_not_before():
    alice, enrollment = Story(), str(uuid.uuid4())
    pending = given(alice.registered(), alice.enrolled(enrollment))
    assert pending.totp == "pending"
    assert event_names(when(pending, alice.login_ok(fid()))) == ["LoginSucceeded"]
    decision = when(pending, alice.confirm(enrollment, step=1000))
    assert event_names(decision) == ["TotpEnabled"]
    active = decision.aggregate
    assert "TOTP code is required" in then_rejected(when(active, alice.login_ok(fid())), "TotpRequired")
    assert event_names(when(active, alice.login_ok(fid(), step=1001))) == ["LoginSucceeded"]


def test_a_totp_time_step_is_never_accepted_twice():
    alice, enrollment = Story(), str(uuid.uuid4())
    active = given(alice.registered(), alice.enrolled(enrollment), alice.totp_enabled(enrollment, step=1000))
    then_rejected(when(active, alice.login_ok(fid(), step=1000)), "TotpCodeReused")
    logged_in = given(alice.logged_in(fid(), step=1001), on=active)
    then_rejected(when(logged_in, alice.login_ok(fid(), step=1001)), "TotpCodeReused")
    then_rejected(when(logged_in, alice.login_ok(fid(), step=999)), "TotpCodeReused")


def test_confirming_needs_the_pending_enrolment():
    alice, enrollment = Story(), str(uuid.uuid4())
    then_rejected(when(given(alice.registered()), alice.confirm(enrollment, step=5)), "UnknownTotpEnrollment")
    pending = given(alice.registered(), alice.enrolled(enrollment), alice.enrolled(replaced := str(uuid.uuid4())))
    then_rejected(when(pending, alice.confirm(enrollment, step=5)), "UnknownTotpEnrollment")
    assert event_names(when(pending, alice.confirm(replaced, step=5))) == ["TotpEnabled"]


def test_an_active_totp_cannot_be_replaced_and_secrets_must_be_sealed():
    alice, enrollment = Story(), str(uuid.uuid4())
    active = given(alice.registered(), alice.enrolled(enrollment), alice.totp_enabled(enrollment, step=7))
    then_rejected(when(active, alice.enroll(str(uuid.uuid4()))), "TotpAlreadyEnabled")
    clear = alice.enroll(str(uuid.uuid4()), sealed="JBSWY3DPEHPK3PXP")
    assert "never a clear secret" in then_rejected(when(given(alice.registered()), clear), "InvalidCommand")


def test_a_totp_step_at_login_without_totp_is_refused():
    alice = Story()
    then_rejected(when(given(alice.registered()), alice.login_ok(fid(), step=5)), "InvalidCommand")


# -- state survives the processor's snapshot -------------------------------


def test_the_principal_survives_the_processor_snapshot_with_sessions_lock_and_totp():
    alice, family, enrollment = Story(), fid(), str(uuid.uuid4())
    principal = given(
        alice.registered(),
        alice.enrolled(enrollment),
        alice.totp_enabled(enrollment, step=10),
        alice.logged_in(family, step=11),
        alice.rotated(family, 1),
        alice.failed_logins(MAX_FAILED_LOGINS),
        alice.locked_out(),
    )
    codec = SnapshotCodec()
    restored, last_hash = codec.loads(codec.dumps(principal, "abc"))
    assert last_hash == "abc" and restored.version == principal.version
    assert restored.families == principal.families and restored.families[family]["expires_at"] == T0 + TTL
    assert restored.sources == {HOME: {"failed": 0, "locked_until": T0 + LOCKOUT}}
    assert (restored.is_locked(T0, HOME), restored.totp, restored.totp_last_step) == (True, "active", 11)
    later = T0 + LOCKOUT
    assert event_names(when(restored, alice.rotate(family, 0, at=later))) == ["RefreshTokenReuseDetected", "RefreshFamilyRevoked"]


# -- TOTP reset ------------------------------------------------------------


def test_an_operator_reset_turns_totp_off_ends_every_session_and_keeps_the_reason():
    alice, enrollment, one, two = Story(), str(uuid.uuid4()), fid(), fid()
    principal = given(
        alice.registered(), alice.enrolled(enrollment), alice.totp_enabled(enrollment, 10), alice.logged_in(one, step=11),
        alice.logged_in(two, step=12),
    )  # fmt: skip
    decision = when(principal, alice.reset_totp())
    assert event_names(decision) == ["TotpReset", "RefreshFamilyRevoked", "RefreshFamilyRevoked"]
    assert decision.events[0].reason == "lost phone, identity checked by support"
    assert (decision.aggregate.totp, decision.aggregate.families) == ("none", {})
    # Logging in again needs no code; enrolling again works.
    assert event_names(when(decision.aggregate, alice.login_ok(fid()))) == ["LoginSucceeded"]
    assert event_names(when(decision.aggregate, alice.enroll(str(uuid.uuid4())))) == ["TotpEnrollmentStarted"]


def test_a_reset_needs_totp_to_be_on_and_a_reason():
    alice = Story()
    then_rejected(when(given(alice.registered()), alice.reset_totp()), "TotpNotEnabled")
    pending = given(alice.registered(), alice.enrolled(str(uuid.uuid4())))
    assert "reason must be 1 to 200" in then_rejected(when(pending, alice.reset_totp(reason="")), "InvalidCommand")
