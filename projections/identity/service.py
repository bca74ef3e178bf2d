"""Identity gRPC service (port 50051): the one place where clear secrets exist.
It hashes and seals passwords, creates and seals TOTP secrets, checks passwords
and codes against the read store, mints refresh tokens and signs access tokens,
and sends commands that carry only sealed values, hashes and time steps. The
Principal aggregate decides every outcome (lockout, rotation, reuse, TOTP steps);
this service never trusts the read store where a race would matter.

Logins: every attempt is first counted against its client address (a token bucket
per address, before any lookup or hash: unauthenticated callers cannot saturate
the password KDF), then answered alike whatever failed — unknown login, wrong
password, missing or wrong TOTP code, a locked-out source: "invalid login, password
or code", at the cost of one KDF, so no answer tells whether an account exists or
whether the password was right. Failures are recorded per (principal, source) —
the source a keyed fingerprint of the address, never the address — in the
background, so recording costs no time an observer could tell apart from an
unknown login; the Principal aggregate locks a source out after repeated failures
and never refuses a password with a fresh TOTP code for someone else's failures.
A caller's source is its own address, or the `x-poseidon-client-address` metadata
when the caller is a trusted proxy (POSEIDON_LOGIN_TRUSTED_PROXIES: the dashboard, a
gateway). EnrollTotp needs the current password again; ResetTotp is an operator's,
with a reason kept in the TotpReset event.

Public (no token): Register (users sign themselves up), Login, Refresh,
GetSigningKeys. Everything else needs the caller's access token and acts on the
caller's own principal; a platform-scope caller may register service principals
and revoke another principal's sessions. Access tokens never carry a scope:
platform scope is for platform services whose tokens are minted where the keys
are (`poseidon token issue --platform`)."""

from __future__ import annotations

import asyncio
import ipaddress
import math
import secrets
import time
import uuid
from datetime import timedelta

import click
import grpc
import structlog
from cryptography.hazmat.primitives import serialization

from hubs.identity.aggregate import IDENTITY_TENANT, check_login, principal_id_for
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
from hubs.identity.credentials import (
    MAX_PASSWORD,
    RefreshToken,
    hash_password,
    new_totp_secret,
    password_problem,
    provisioning_uri,
    totp_step,
    verify_password,
)
from hubs.identity.events import REFRESH_TOKEN_ROTATED
from hubs.identity.sealing import Sealer, password_context, sealing_keys_dir, totp_context
from infra.arguments import canonical_uuid, is_canonical_uuid
from infra.command_client import CommandResult, new_meta
from infra.grpc_server import FailedPrecondition, InvalidArgument, NotFound, QueryService, ResourceExhausted, ServiceDeps
from infra.ratelimit import TokenBuckets
from infra.rest import Route, methods
from infra.security import (
    ALGORITHM,
    PLATFORM_SCOPE,
    AddressSet,
    PermissionDenied,
    TokenIssuer,
    Unauthenticated,
    current_principal,
)
from projections.identity import PROJECTION, queries
from schemas.contracts import Command, InvalidCommand
from schemas.protos import identity_pb2, identity_pb2_grpc

log = structlog.get_logger(__name__)

SERVICE_NAME = identity_pb2.DESCRIPTOR.services_by_name["Identity"].full_name
PUBLIC = frozenset(f"/{SERVICE_NAME}/{m}" for m in ("Register", "Login", "Refresh", "GetSigningKeys"))
COMMAND_TIMEOUT_S = 30.0  # a fresh processor first waits for its partitions
PROJECTION_WAIT_S = 5.0
KDF_CONCURRENCY = 2  # argon2id hashes at once (19 MiB and one core each)
BAD_CREDENTIALS = "invalid login, password or code"
"""The one answer to every failed login: an unknown login, a wrong password, a missing or
wrong TOTP code and a locked-out source are told apart by nobody but the log."""
CLIENT_ADDRESS_METADATA = "x-poseidon-client-address"
SOURCE_CONTEXT = "login-source"


class IdentityService(identity_pb2_grpc.IdentityServicer):
    def __init__(self, deps: ServiceDeps):
        assert deps.commands is not None, "the identity service sends commands"
        self.pool, self.settings, self.commands = deps.pool, deps.settings, deps.commands
        assert deps.keyring is not None, "the identity service signs tokens"
        self.keyring = deps.keyring
        self.sealer = Sealer(sealing_keys_dir(deps.settings))
        self.sealer.ensure_key()
        self._kdf = asyncio.Semaphore(KDF_CONCURRENCY)
        # Unknown logins are checked against this, so they cost what a real check costs.
        self._decoy_hash = hash_password(secrets.token_urlsafe(24))
        per_minute = deps.settings.login_rate_per_min
        self._attempts = TokenBuckets(per_minute / 60.0, per_minute)
        self._trusted = AddressSet(deps.settings.login_trusted_proxies)
        self._background: set[asyncio.Task] = set()

    # -- sign-up ------------------------------------------------------------

    async def Register(self, request, context) -> identity_pb2.RegisterReply:
        # Public, and it hashes a password: counted per address like a login, so sign-ups
        # cannot starve the hash slots sign-ins share.
        wait = self._attempts.acquire(self._client_address(context))
        if wait > 0:
            raise ResourceExhausted(f"too many attempts from this address; retry in {math.ceil(wait)} s")
        return await self._register(request, "user", "self-signup", context)

    async def RegisterService(self, request, context) -> identity_pb2.RegisterReply:
        caller = current_principal()
        if PLATFORM_SCOPE not in caller.scopes:
            raise PermissionDenied("registering a service principal needs the platform scope")
        return await self._register(request, "service", caller.id, context)

    async def _register(self, request, kind: str, actor: str, context) -> identity_pb2.RegisterReply:
        login = _login(request.login)
        problem = password_problem(request.password, login)
        if problem:
            raise InvalidArgument(f"password {problem}")
        principal_id = principal_id_for(login)
        if await self._principal(principal_id) is not None:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"login {login!r} is already registered")
        async with self._kdf:
            password_hash = await asyncio.to_thread(hash_password, request.password)
        sealed = self.sealer.seal(password_hash.encode(), password_context(principal_id))
        meta = new_meta(principal_id, IDENTITY_TENANT, actor=actor)
        result = await self._send(RegisterPrincipal(meta, login=login, kind=kind, sealed_password=sealed))
        if result.rejection == "AggregateAlreadyExists":
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"login {login!r} is already registered")
        _raise_unless_accepted(result)
        # Read-your-writes: once Register answers, Login finds the principal.
        await self._projected(principal_id, result.version)
        log.info("principal registered", principal_id=principal_id, kind=kind)
        return identity_pb2.RegisterReply(principal_id=principal_id, login=login)

    # -- login and tokens ---------------------------------------------------

    async def Login(self, request, context) -> identity_pb2.TokenPair:
        address = self._client_address(context)
        wait = self._attempts.acquire(address)
        if wait > 0:
            raise ResourceExhausted(f"too many login attempts from this address; retry in {math.ceil(wait)} s")
        login = _login(request.login)
        if not request.password:
            raise InvalidArgument("password is required")
        principal_id = principal_id_for(login)
        row = await self._principal(principal_id) if len(request.password) <= MAX_PASSWORD else None
        if row is None:
            await self._verify_password(self._decoy_hash, request.password[:MAX_PASSWORD])
            raise Unauthenticated(BAD_CREDENTIALS)
        source = self.sealer.fingerprint(address, SOURCE_CONTEXT)
        password_hash = self.sealer.unseal(row["sealed_password"], password_context(principal_id)).decode()
        password_ok = await self._verify_password(password_hash, request.password)
        step = -1
        if row["totp_status"] == "active":
            found = totp_step(self._totp_secret(principal_id, row), request.totp_code, time.time()) if request.totp_code else None
            step = found if found is not None and found > row["totp_last_step"] else -2
        if not password_ok or step == -2:
            self._record_failure(principal_id, "password" if not password_ok else "totp", source)
            raise Unauthenticated(BAD_CREDENTIALS)
        token = RefreshToken.start(principal_id)
        meta = new_meta(principal_id, IDENTITY_TENANT, actor=principal_id)
        expires_at = meta.issued_at + timedelta(seconds=self.settings.refresh_token_ttl_s)
        command = RecordLoginSuccess(
            meta,
            family_id=token.family_id,
            family_proof=token.family_proof,
            token_hash=token.hash,
            expires_at=expires_at,
            totp_step=step,
            source=source,
        )
        result = await self._send(command)
        if not result.accepted:
            log.info("login refused by the aggregate", principal_id=principal_id, rule=result.rejection, reason=result.reason)
            raise Unauthenticated(BAD_CREDENTIALS)
        # The session is in the read store before its first refresh can arrive.
        await self._projected(principal_id, result.version)
        return self._token_pair(principal_id, row["kind"], token)

    def _client_address(self, context) -> str:
        """The address a login counts against: the peer's, or what a trusted proxy says it serves."""
        peer = _peer_address(context.peer() or "")
        if peer in self._trusted:
            for key, value in context.invocation_metadata() or ():
                if key == CLIENT_ADDRESS_METADATA:
                    try:
                        return str(ipaddress.ip_address(str(value).strip()))
                    except ValueError:
                        raise InvalidArgument(f"{CLIENT_ADDRESS_METADATA} must be an IP address") from None
        return peer

    async def Refresh(self, request, context) -> identity_pb2.TokenPair:
        try:
            presented = RefreshToken.parse(request.refresh_token)
        except ValueError:
            raise Unauthenticated("invalid refresh token") from None
        principal_id = presented.principal_id
        family = await queries.family(self.pool, IDENTITY_TENANT, uuid.UUID(principal_id), uuid.UUID(presented.family_id))
        # A token naming no session we know (or with the wrong family secret) is
        # refused here, so forged tokens never turn into commands on the log.
        if family is None or not secrets.compare_digest(family["family_proof"], presented.family_proof):
            raise Unauthenticated("invalid refresh token")
        if family["status"] != "active":
            raise Unauthenticated("refresh token revoked")
        token = presented.next()
        meta = new_meta(principal_id, IDENTITY_TENANT, actor=principal_id)
        command = RotateRefreshToken(
            meta,
            family_id=presented.family_id,
            family_proof=presented.family_proof,
            presented_generation=presented.generation,
            presented_hash=presented.hash,
            new_hash=token.hash,
            expires_at=meta.issued_at + timedelta(seconds=self.settings.refresh_token_ttl_s),
        )
        result = await self._send(command)
        if not result.accepted:
            raise Unauthenticated(
                "refresh token expired" if result.rejection == "RefreshTokenExpired" else "invalid refresh token"
            )
        if REFRESH_TOKEN_ROTATED not in result.event_types:
            log.warning("refresh token reuse: session revoked", principal_id=principal_id, family_id=presented.family_id)
            raise Unauthenticated("refresh token already used: the session is revoked")
        row = await self._principal(principal_id)
        return self._token_pair(principal_id, row["kind"] if row is not None else "user", token)

    async def Revoke(self, request, context) -> identity_pb2.RevokeReply:
        caller = current_principal()
        principal_id = _subject(request.principal_id)
        if request.all_sessions == bool(request.session_id):
            raise InvalidArgument("give either session_id or all_sessions")
        reason = "logout" if principal_id == caller.id else f"revoked by {caller.id}"[:200]
        meta = new_meta(principal_id, IDENTITY_TENANT, actor=caller.id)
        command: Command
        if request.session_id:
            command = RevokeRefreshFamily(meta, family_id=canonical_uuid(request.session_id, "session_id"), reason=reason)
        else:
            command = RevokeAllRefreshFamilies(meta, reason=reason)
        result = await self._send(command)
        if result.rejection in ("UnknownRefreshFamily", "AggregateNotFound"):
            # Another principal's session looks exactly like a missing one.
            raise NotFound(f"session {request.session_id} not found" if request.session_id else "principal not found")
        _raise_unless_accepted(result)
        return identity_pb2.RevokeReply(revoked=len(result.event_types))

    # -- TOTP ---------------------------------------------------------------

    async def EnrollTotp(self, request, context) -> identity_pb2.TotpEnrollment:
        principal_id = _subject("")
        row = await self._principal(principal_id)
        if row is None:
            raise NotFound("principal not found")
        # Re-authentication: an access token alone (stolen, or a session left open) cannot bind a device.
        if not request.password or len(request.password) > MAX_PASSWORD:
            raise Unauthenticated("enrolling TOTP needs the current password")
        password_hash = self.sealer.unseal(row["sealed_password"], password_context(principal_id)).decode()
        if not await self._verify_password(password_hash, request.password):
            raise Unauthenticated("enrolling TOTP needs the current password")
        if row["totp_status"] == "active":
            raise FailedPrecondition("TOTP is already enabled")
        secret, enrollment_id = new_totp_secret(), str(uuid.uuid4())
        sealed = self.sealer.seal(secret.encode(), totp_context(principal_id, enrollment_id))
        meta = new_meta(principal_id, IDENTITY_TENANT, actor=principal_id)
        result = await self._send(StartTotpEnrollment(meta, enrollment_id=enrollment_id, sealed_secret=sealed))
        _raise_unless_accepted(result)
        # ConfirmTotp reads the sealed secret from the read store: wait for it.
        await self._projected(principal_id, result.version)
        return identity_pb2.TotpEnrollment(
            enrollment_id=enrollment_id, secret=secret, provisioning_uri=provisioning_uri(secret, row["login"])
        )

    async def ConfirmTotp(self, request, context) -> identity_pb2.ConfirmTotpReply:
        principal_id = _subject("")
        enrollment_id = canonical_uuid(request.enrollment_id, "enrollment_id")
        row = await self._principal(principal_id)
        if row is None:
            raise NotFound("principal not found")
        if row["totp_status"] != "pending" or str(row["totp_enrollment_id"]) != enrollment_id:
            raise FailedPrecondition(f"no pending TOTP enrolment {enrollment_id}")
        step = totp_step(self._totp_secret(principal_id, row), request.code, time.time())
        if step is None:
            raise InvalidArgument("code is not a valid TOTP code for this enrolment")
        meta = new_meta(principal_id, IDENTITY_TENANT, actor=principal_id)
        result = await self._send(ConfirmTotp(meta, enrollment_id=enrollment_id, step=step))
        if result.rejection == "TotpCodeReused":
            raise InvalidArgument("code was already used; wait for the next one")
        _raise_unless_accepted(result)
        await self._projected(principal_id, result.version)
        return identity_pb2.ConfirmTotpReply(totp_enabled=True)

    async def ResetTotp(self, request, context) -> identity_pb2.ResetTotpReply:
        caller = current_principal()
        if PLATFORM_SCOPE not in caller.scopes:
            raise PermissionDenied("resetting TOTP needs the platform scope (an operator)")
        principal_id = canonical_uuid(request.principal_id, "principal_id")
        meta = new_meta(principal_id, IDENTITY_TENANT, actor=caller.id)
        result = await self._send(ResetTotp(meta, reason=request.reason))
        _raise_unless_accepted(result)
        await self._projected(principal_id, result.version)
        log.warning("totp reset", principal_id=principal_id, actor=caller.id, reason=request.reason)
        return identity_pb2.ResetTotpReply(sessions_revoked=sum(t.endswith("RefreshFamilyRevoked") for t in result.event_types))

    # -- about the caller and the keys --------------------------------------

    async def WhoAmI(self, request, context) -> identity_pb2.WhoAmIReply:
        caller = current_principal()
        row = await self._principal(caller.id) if is_canonical_uuid(caller.id) else None
        return identity_pb2.WhoAmIReply(
            principal_id=caller.id,
            kind=caller.kind,
            scopes=sorted(caller.scopes),
            token_id=caller.token_id,
            registered=row is not None,
            login=row["login"] if row is not None else "",
            totp_enabled=row is not None and row["totp_status"] == "active",
        )

    async def GetSigningKeys(self, request, context) -> identity_pb2.SigningKeys:
        keyring = self.keyring
        active, _ = keyring.signing_key()
        keys = []
        for kid in sorted(keyring.kids(), reverse=True):
            public = keyring.public_key(kid)
            if public is None:
                continue
            pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
            keys.append(identity_pb2.SigningKey(kid=kid, alg=ALGORITHM, public_key_pem=pem, active=kid == active))
        return identity_pb2.SigningKeys(keys=keys)

    # -- helpers ------------------------------------------------------------

    def _token_pair(self, principal_id: str, kind: str, refresh: RefreshToken) -> identity_pb2.TokenPair:
        access = TokenIssuer(self.keyring, self.settings).access_token(principal_id, kind)
        return identity_pb2.TokenPair(
            access_token=access,
            token_type="Bearer",
            expires_in=self.settings.access_token_ttl_s,
            refresh_token=refresh.encode(),
            refresh_expires_in=self.settings.refresh_token_ttl_s,
            session_id=refresh.family_id,
            principal_id=principal_id,
        )

    async def _principal(self, principal_id: str):
        return await queries.principal(self.pool, IDENTITY_TENANT, uuid.UUID(principal_id))

    async def _projected(self, principal_id: str, version: int):
        """Wait (bounded) until the read store shows the principal at `version`."""
        deadline = time.monotonic() + PROJECTION_WAIT_S
        while True:
            row = await self._principal(principal_id)
            if (row is not None and row["version"] >= version) or time.monotonic() > deadline:
                return row
            await asyncio.sleep(0.02)

    async def _verify_password(self, password_hash: str, password: str) -> bool:
        async with self._kdf:
            return await asyncio.to_thread(verify_password, password_hash, password)

    def _totp_secret(self, principal_id: str, row) -> str:
        return self.sealer.unseal(row["totp_sealed_secret"], totp_context(principal_id, str(row["totp_enrollment_id"]))).decode()

    def _record_failure(self, principal_id: str, reason: str, source: str) -> None:
        """Record a failed login in the background: the caller's answer does not wait
        for the hub, so it takes as long as an unknown login's (which records nothing)."""
        task = asyncio.create_task(self._send_failure(principal_id, reason, source), name="identity-login-failure")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_failure(self, principal_id: str, reason: str, source: str) -> None:
        meta = new_meta(principal_id, IDENTITY_TENANT, actor="anonymous")
        try:
            result = await self._send(RecordLoginFailure(meta, reason=reason, source=source))
        except Exception as exc:  # logged, never raised: nobody awaits this task
            log.warning("login failure not recorded", principal_id=principal_id, error=f"{type(exc).__name__}: {exc}")
            return
        if not result.accepted and result.rejection != "PrincipalLocked":
            log.warning("login failure not recorded", rule=result.rejection, reason=result.reason)

    async def _send(self, command: Command) -> CommandResult:
        # A timeout (CommandTimeout) becomes UNAVAILABLE in the shared interceptor.
        return await self.commands.send(command, timeout=COMMAND_TIMEOUT_S)


def _peer_address(peer: str) -> str:
    """`ipv4:10.0.0.7:51234` → `10.0.0.7`, `ipv6:[::1]:51234` → `::1`; anything else as given."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer


def _raise_unless_accepted(result: CommandResult) -> None:
    if result.accepted:
        return
    if result.rejection == "AggregateNotFound":
        raise NotFound("principal not found")
    if result.rejection == "InvalidCommand" or result.rejection.endswith("Invalid"):
        raise InvalidArgument(result.reason)
    raise FailedPrecondition(f"{result.rejection}: {result.reason}")


def _login(value: str) -> str:
    if not value:
        raise InvalidArgument("login is required")
    try:
        return check_login(value.strip().lower())
    except InvalidCommand as exc:
        raise InvalidArgument(str(exc)) from None


def _subject(requested: str) -> str:
    """The principal a guarded call acts on: the caller, or (platform scope only) another."""
    caller = current_principal()
    if requested and requested != caller.id:
        if PLATFORM_SCOPE not in caller.scopes:
            raise PermissionDenied("a principal may only act on itself")
        return canonical_uuid(requested, "principal_id")
    if not is_canonical_uuid(caller.id):
        raise NotFound("principal not found")  # a platform token whose subject is no identity principal
    return caller.id


def _add_to_server(server: grpc.aio.Server, deps: ServiceDeps) -> None:
    identity_pb2_grpc.add_IdentityServicer_to_server(IdentityService(deps), server)


def _routes() -> tuple[Route, ...]:
    """The REST operations of this service (the API gateway answers them with these methods);
    the OAuth2 token endpoint and JWKS are in projections/identity/oauth.py."""
    m = methods(identity_pb2, "Identity")
    return (
        Route("POST", "/v1/users", m.Register, "Register a person's login and password.", 201, public=True),
        Route("POST", "/v1/service-principals", m.RegisterService, "Register an external system's client (platform only).", 201),
        Route("POST", "/v1/sessions", m.Login, "Sign in with login, password and (once enrolled) a TOTP code.", 201, public=True),
        Route("POST", "/v1/sessions/refresh", m.Refresh, "A new token pair for a refresh token (each works once).", public=True),
        Route("POST", "/v1/sessions/revoke", m.Revoke, "End one session or every session."),
        Route("GET", "/v1/me", m.WhoAmI, "The caller as its token says."),
        Route("POST", "/v1/me/totp", m.EnrollTotp, "Start enrolling a TOTP device (needs the password).", 201),
        Route("POST", "/v1/me/totp/confirm", m.ConfirmTotp, "Confirm the enrolment with a first code."),
        Route("POST", "/v1/totp/reset", m.ResetTotp, "Remove a principal's TOTP (platform only)."),
        Route(
            "GET", "/v1/signing-keys", m.GetSigningKeys, "The public token-signing keys as PEM (see also the JWKS).", public=True
        ),
    )


SERVICE = QueryService(
    hub="identity",
    read_model=PROJECTION,
    service_names=(SERVICE_NAME,),
    add_to_server=_add_to_server,
    public_methods=PUBLIC,
    sends_commands=True,
    issues_tokens=True,
    http_routes=_routes(),
)


@click.command("principal-id")
@click.option("--login", required=True, help="Login name (any case).")
def _principal_id_cli(login: str) -> None:
    """Print the principal id of a login (the --principal of `revoke-session` / `revoke-all`, tenant `platform`)."""
    click.echo(principal_id_for(login))


CLI_QUERIES = [_principal_id_cli]
