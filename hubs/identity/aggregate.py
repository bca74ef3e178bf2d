"""The Principal aggregate: a user or service that can log in. Decides (public
verbs, small named checks) and evolves (the @event methods only assign state).
Pure: no I/O, no clock — "now" is the command's `issued_at`, set by the Identity
gRPC service that sends every identity command.

Rules:
- A principal's id is uuid5(PRINCIPAL_NAMESPACE, canonical login), so two
  registrations of one login collide on one aggregate (AggregateAlreadyExists)
  however they race. Every principal belongs to the `platform` tenant: identity
  is platform-wide, tenant membership lives in the Tenant hub.
- Passwords and TOTP secrets are only ever recorded sealed (`sealed.v1.` prefix);
  refresh tokens only as SHA-256 hashes. The aggregate keeps neither sealed
  value in its own state: only the events (for the read store) carry them.
- Failures count per (principal, source), the source being a keyed fingerprint of
  the client address the Identity service saw: MAX_FAILED_LOGINS consecutive
  failures from one source lock that source out for LOCKOUT; while locked, its
  failures are refused unrecorded and so is a success without a verified TOTP code —
  a success with one (password and code both right) is never refused for a lockout,
  and other sources are not locked at all, so nobody can lock someone else out. A
  success resets its source's count. At most MAX_SOURCES sources are remembered
  (the least recently failing is forgotten). Events written before sources existed
  carry the source "" and lock only that source, which no new attempt uses.
- A login starts a refresh-token family (one session). Its tokens carry the
  family id, a generation and a family secret; the aggregate keeps the family
  secret's hash (`family_proof`), the current generation and the current token's
  hash. A token of the current generation with the current hash rotates the
  family; a token of an older generation is a reuse: the family is revoked. A
  principal keeps at most MAX_SESSIONS live families (the oldest is revoked).
- TOTP (RFC 6238): an enrolment is pending until confirmed with a valid code;
  once active every login needs a code, and a time step once used (to confirm
  or to log in) is never accepted again. A reset (ResetTotp, by an operator, with
  a reason; audited as TotpReset with its actor) turns TOTP off and ends every
  session, so the principal enrols again after logging in with the password."""

from __future__ import annotations

import hmac
import re
import uuid
from datetime import datetime, timedelta

from eventsourcing.domain import Aggregate, event

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
from schemas.contracts import (
    SEALED_PREFIX,
    AggregateAlreadyExists,
    AggregateNotFound,
    Command,
    InvalidCommand,
    Rejected,
)

IDENTITY_TENANT = "platform"
"""The tenant id every principal (and every identity command) carries."""
PRINCIPAL_NAMESPACE = uuid.UUID("4f38505b-d709-4a7d-bee6-996c6b49d586")
"""Fixed forever: principal id = uuid5(PRINCIPAL_NAMESPACE, canonical login)."""
KINDS = ("user", "service")
FAILURE_REASONS = ("password", "totp")
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
MAX_SOURCES = 1000
_SOURCE = re.compile(r"^[0-9a-f]{0,64}$")
MAX_SESSIONS = 50
MAX_REASON = 200
_LOGIN = re.compile(r"^[a-z0-9][a-z0-9._%+@-]{1,252}[a-z0-9]$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class LoginNameInvalid(InvalidCommand):
    pass


class PrincipalLocked(Rejected):
    pass


class TotpRequired(Rejected):
    pass


class TotpCodeReused(Rejected):
    pass


class TotpAlreadyEnabled(Rejected):
    pass


class TotpNotEnabled(Rejected):
    pass


class UnknownTotpEnrollment(Rejected):
    pass


class UnknownRefreshToken(Rejected):
    pass


class RefreshTokenExpired(Rejected):
    pass


class UnknownRefreshFamily(Rejected):
    pass


def canonical_login(login: str) -> str:
    """Login names are ASCII and case-insensitive: `Alice@Example.com ` is `alice@example.com`."""
    return (login or "").strip().lower()


def principal_id_for(login: str) -> str:
    return str(uuid.uuid5(PRINCIPAL_NAMESPACE, canonical_login(login)))


class Principal(Aggregate):
    @staticmethod
    def create_id(principal_id: str, **_: object) -> uuid.UUID:
        return uuid.UUID(principal_id)

    @event("PrincipalRegistered")
    def __init__(self, principal_id: str, tenant_id: str, login: str, kind: str, sealed_password: str):
        self.tenant_id = tenant_id
        self.login = login
        self.kind = kind
        self.failed_logins = 0
        self.locked_until: datetime | None = None
        self.totp = "none"
        """none, pending (enrolment started) or active."""
        self.totp_enrollment_id = ""
        self.totp_last_step = -1
        self.families: dict[str, dict] = {}
        """Live refresh-token families: id → proof, hash, generation, expires_at."""

    @property
    def sources(self) -> dict[str, dict]:
        """Source fingerprint → {"failed": consecutive failures, "locked_until": datetime | None}.
        Kept in __dict__ so a principal stored before sources existed loads with none."""
        return self.__dict__.setdefault("_sources", {})

    def is_locked(self, now: datetime, source: str = "") -> bool:
        locked_until = self.sources.get(source, {}).get("locked_until")
        if source == "" and self.locked_until is not None:
            locked_until = self.locked_until  # recorded before sources existed
        return locked_until is not None and now < locked_until

    # -- logins -------------------------------------------------------------

    def record_login_success(
        self,
        family_id: str,
        family_proof: str,
        token_hash: str,
        expires_at: datetime,
        totp_step: int,
        now: datetime,
        source: str = "",
    ) -> None:
        check_source(source)
        if totp_step < 0:
            check_not_locked(self, now, source)
        check_uuid(family_id, "family_id")
        check_sha256(family_proof, "family_proof")
        check_sha256(token_hash, "token_hash")
        check_in_future(expires_at, now, "expires_at")
        if family_id in self.families:
            raise InvalidCommand(f"refresh family {family_id} already exists")
        check_totp_for_login(self, totp_step)
        live = [fid for fid, f in self.families.items() if f["expires_at"] > now]
        for oldest in live[: max(0, len(live) - MAX_SESSIONS + 1)]:
            self._refresh_family_revoked(oldest, "session limit")
        self._login_succeeded(family_id, family_proof, token_hash, expires_at, totp_step, now, source)

    def record_login_failure(self, reason: str, now: datetime, source: str = "") -> None:
        check_source(source)
        check_not_locked(self, now, source)
        if reason not in FAILURE_REASONS:
            raise InvalidCommand(f"reason must be one of {', '.join(FAILURE_REASONS)}, not {reason!r}")
        failed = self.sources.get(source, {}).get("failed", 0) + 1
        self._login_failed(reason, failed, source)
        if failed >= MAX_FAILED_LOGINS:
            self._principal_locked_out(now + LOCKOUT, failed, source)

    # -- refresh tokens -----------------------------------------------------

    def rotate_refresh_token(
        self,
        family_id: str,
        family_proof: str,
        presented_generation: int,
        presented_hash: str,
        new_hash: str,
        expires_at: datetime,
        now: datetime,
    ) -> None:
        check_sha256(presented_hash, "presented_hash")
        check_sha256(new_hash, "new_hash")
        family = check_family_proof(self, family_id, family_proof)
        if 0 <= presented_generation < family["generation"]:
            # Only a holder of the family secret can name this family: an older
            # token of it means two parties hold tokens of one session.
            self._refresh_token_reuse_detected(family_id, presented_generation, family["generation"])
            self._refresh_family_revoked(family_id, "reuse")
            return
        if presented_generation != family["generation"] or not hmac.compare_digest(presented_hash, family["hash"]):
            raise UnknownRefreshToken("refresh token is not the current token of its family")
        if now >= family["expires_at"]:
            raise RefreshTokenExpired("refresh token expired")
        check_in_future(expires_at, now, "expires_at")
        self._refresh_token_rotated(family_id, family["generation"] + 1, new_hash, expires_at)

    def revoke_refresh_family(self, family_id: str, reason: str) -> None:
        check_reason(reason)
        if family_id not in self.families:
            raise UnknownRefreshFamily(f"no live session {family_id!r} for this principal")
        self._refresh_family_revoked(family_id, reason)

    def revoke_all_refresh_families(self, reason: str) -> None:
        check_reason(reason)
        for family_id in list(self.families):
            self._refresh_family_revoked(family_id, reason)

    # -- TOTP ---------------------------------------------------------------

    def start_totp_enrollment(self, enrollment_id: str, sealed_secret: str) -> None:
        if self.totp == "active":
            raise TotpAlreadyEnabled("TOTP is already enabled for this principal")
        check_uuid(enrollment_id, "enrollment_id")
        check_sealed(sealed_secret, "sealed_secret")
        self._totp_enrollment_started(enrollment_id, sealed_secret)

    def reset_totp(self, reason: str) -> None:
        check_reason(reason)
        if self.totp == "none":
            raise TotpNotEnabled("TOTP is neither enabled nor being enrolled for this principal")
        self._totp_reset(reason)
        for family_id in list(self.families):
            self._refresh_family_revoked(family_id, "totp reset")

    def confirm_totp(self, enrollment_id: str, step: int) -> None:
        if self.totp != "pending" or enrollment_id != self.totp_enrollment_id:
            raise UnknownTotpEnrollment(f"no pending TOTP enrolment {enrollment_id!r}")
        check_step_is_fresh(self, step)
        self._totp_enabled(enrollment_id, step)

    # -- events -------------------------------------------------------------

    @event("LoginSucceeded")
    def _login_succeeded(
        self,
        family_id: str,
        family_proof: str,
        token_hash: str,
        expires_at: datetime,
        totp_step: int,
        logged_in_at: datetime,
        source: str = "",
    ) -> None:
        self.families = {fid: f for fid, f in self.families.items() if f["expires_at"] > logged_in_at}
        self.families[family_id] = {"proof": family_proof, "hash": token_hash, "generation": 0, "expires_at": expires_at}
        self.failed_logins = 0
        self.sources.pop(source, None)
        if totp_step >= 0:
            self.totp_last_step = totp_step

    @event("LoginFailed")
    def _login_failed(self, reason: str, failed_logins: int, source: str = "") -> None:
        entry = self.sources.pop(source, {"failed": 0, "locked_until": None})
        entry["failed"] = failed_logins
        self.sources[source] = entry  # re-inserted: the most recently failing source is last
        while len(self.sources) > MAX_SOURCES:
            del self.sources[next(iter(self.sources))]
        if source == "":
            self.failed_logins = failed_logins

    @event("PrincipalLockedOut")
    def _principal_locked_out(self, locked_until: datetime, failed_logins: int, source: str = "") -> None:
        self.sources[source] = {"failed": 0, "locked_until": locked_until}
        if source == "":
            self.locked_until = locked_until
            self.failed_logins = 0

    @event("RefreshTokenRotated")
    def _refresh_token_rotated(self, family_id: str, generation: int, token_hash: str, expires_at: datetime) -> None:
        family = self.families[family_id]
        family.update(generation=generation, hash=token_hash, expires_at=expires_at)

    @event("RefreshTokenReuseDetected")
    def _refresh_token_reuse_detected(self, family_id: str, presented_generation: int, current_generation: int) -> None:
        pass

    @event("RefreshFamilyRevoked")
    def _refresh_family_revoked(self, family_id: str, reason: str) -> None:
        self.families.pop(family_id, None)

    @event("TotpEnrollmentStarted")
    def _totp_enrollment_started(self, enrollment_id: str, sealed_secret: str) -> None:
        self.totp = "pending"
        self.totp_enrollment_id = enrollment_id

    @event("TotpEnabled")
    def _totp_enabled(self, enrollment_id: str, step: int) -> None:
        self.totp = "active"
        self.totp_last_step = step

    @event("TotpReset")
    def _totp_reset(self, reason: str) -> None:
        self.totp = "none"
        self.totp_enrollment_id = ""


# -- checks -------------------------------------------------------------------


def check_login(login: str) -> str:
    if login != canonical_login(login):
        raise LoginNameInvalid(f"login must be given in canonical form {canonical_login(login)!r}")
    if not _LOGIN.match(login):
        raise LoginNameInvalid(
            "login must be 3 to 254 ASCII letters, digits or . _ % + - @, starting and ending with a letter or digit"
        )
    return login


def check_principal_id(principal_id: str, login: str) -> None:
    expected = principal_id_for(login)
    if principal_id != expected:
        raise InvalidCommand(f"the principal id of login {login!r} is {expected}, not {principal_id!r}")


def check_platform_tenant(tenant_id: str) -> None:
    if tenant_id != IDENTITY_TENANT:
        raise InvalidCommand(f"principals belong to the {IDENTITY_TENANT!r} tenant, not {tenant_id!r}")


def check_sealed(value: str, name: str) -> None:
    if not isinstance(value, str) or not value.startswith(SEALED_PREFIX) or len(value) > 4096:
        raise InvalidCommand(f"{name} must be a sealed value ({SEALED_PREFIX}…), never a clear secret")


def check_sha256(value: str, name: str) -> None:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise InvalidCommand(f"{name} must be a lower-case hex SHA-256 digest")


def check_uuid(value: str, name: str) -> None:
    try:
        canonical = str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise InvalidCommand(f"{name} must be a UUID, not {value!r}") from None
    if canonical != value:
        raise InvalidCommand(f"{name} must be a lower-case hyphenated UUID ({canonical}), not {value!r}")


def check_in_future(moment: datetime, now: datetime, name: str) -> None:
    if moment <= now:
        raise InvalidCommand(f"{name} must be later than the command's issued_at")


def check_reason(reason: str) -> None:
    if not reason or len(reason) > MAX_REASON:
        raise InvalidCommand(f"reason must be 1 to {MAX_REASON} characters")


def check_not_locked(principal: Principal, now: datetime, source: str = "") -> None:
    if principal.is_locked(now, source):
        raise PrincipalLocked(f"this source is locked out after {MAX_FAILED_LOGINS} failed logins for {LOCKOUT}")


def check_source(source: str) -> None:
    if not isinstance(source, str) or not _SOURCE.match(source):
        raise InvalidCommand("source must be a lower-case hex fingerprint of at most 64 characters (never an address)")


def check_step_is_fresh(principal: Principal, step: int) -> None:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise InvalidCommand(f"step must be a non-negative TOTP time step, not {step!r}")
    if step <= principal.totp_last_step:
        raise TotpCodeReused("this TOTP code (or an earlier one) was already used")


def check_totp_for_login(principal: Principal, totp_step: int) -> None:
    if principal.totp == "active":
        if totp_step < 0:
            raise TotpRequired("a TOTP code is required for this principal")
        check_step_is_fresh(principal, totp_step)
    elif totp_step >= 0:
        raise InvalidCommand("a TOTP step was given but TOTP is not enabled for this principal")


def check_family_proof(principal: Principal, family_id: str, family_proof: str) -> dict:
    family = principal.families.get(family_id)
    if family is None or not hmac.compare_digest(family["proof"], family_proof or ""):
        raise UnknownRefreshToken("refresh token does not belong to a live session of this principal")
    return family


def handle(principal: Principal | None, command: Command) -> Principal:
    """The one handler of every identity command: returns the principal with its
    new pending events, or raises a Rejected subclass before changing anything."""
    meta = command.meta
    now = meta.issued_at
    if isinstance(command, RegisterPrincipal):
        if principal is not None:
            raise AggregateAlreadyExists(f"login {command.login!r} is already registered")
        check_platform_tenant(meta.tenant_id)
        login = check_login(command.login)
        check_principal_id(meta.aggregate_id, login)
        if command.kind not in KINDS:
            raise InvalidCommand(f"kind must be one of {', '.join(KINDS)}, not {command.kind!r}")
        check_sealed(command.sealed_password, "sealed_password")
        return Principal(
            principal_id=meta.aggregate_id,
            tenant_id=meta.tenant_id,
            login=login,
            kind=command.kind,
            sealed_password=command.sealed_password,
        )
    if principal is None:
        raise AggregateNotFound(f"principal {meta.aggregate_id} does not exist")
    if isinstance(command, RecordLoginSuccess):
        principal.record_login_success(
            command.family_id,
            command.family_proof,
            command.token_hash,
            command.expires_at,
            command.totp_step,
            now,
            command.source,
        )
    elif isinstance(command, RecordLoginFailure):
        principal.record_login_failure(command.reason, now, command.source)
    elif isinstance(command, ResetTotp):
        principal.reset_totp(command.reason)
    elif isinstance(command, RotateRefreshToken):
        principal.rotate_refresh_token(
            command.family_id,
            command.family_proof,
            command.presented_generation,
            command.presented_hash,
            command.new_hash,
            command.expires_at,
            now,
        )
    elif isinstance(command, RevokeRefreshFamily):
        principal.revoke_refresh_family(command.family_id, command.reason)
    elif isinstance(command, RevokeAllRefreshFamilies):
        principal.revoke_all_refresh_families(command.reason)
    elif isinstance(command, StartTotpEnrollment):
        principal.start_totp_enrollment(command.enrollment_id, command.sealed_secret)
    elif isinstance(command, ConfirmTotp):
        principal.confirm_totp(command.enrollment_id, command.step)
    else:
        raise InvalidCommand(f"the identity hub has no handler for {type(command).__name__}")
    return principal
