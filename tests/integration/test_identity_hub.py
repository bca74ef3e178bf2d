"""The Identity hub on the real stack (processor, projector and gRPC server as
subprocesses, real Kafka and PostgreSQL): sign-up, login, access tokens used on
another call, refresh rotation with reuse detection, revocation, TOTP, lockout,
signing-key rotation, JWT attacks at the interceptor, and no clear secret on any
identity topic."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import grpc
import jwt
import pyotp
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hubs.identity.aggregate import principal_id_for
from infra.security import PLATFORM_SCOPE, Keyring, TokenIssuer
from projections.identity.service import BAD_CREDENTIALS, CLIENT_ADDRESS_METADATA
from schemas.protos import identity_pb2 as pb
from schemas.protos import identity_pb2_grpc
from tests.harness import bearer, channel, eventually, fetch, mint_token, read_topic

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def identity(platform):
    for role in ("processor", "projector", "grpc"):
        platform.start(role, "identity", wait=False)
    for role in ("processor", "projector", "grpc"):
        platform.wait_healthy(f"identity-{role}")
    ch = channel(platform.settings, "identity", ())
    async with ch:
        yield platform, identity_pb2_grpc.IdentityStub(ch)


async def register(stub, login: str, password: str = PASSWORD) -> pb.RegisterReply:
    # The first command of a fresh processor waits for its partitions: allow for it.
    return await stub.Register(pb.RegisterRequest(login=login, password=password), timeout=90)


async def login(stub, login: str, password: str = PASSWORD, totp_code: str = "") -> pb.TokenPair:
    return await stub.Login(pb.LoginRequest(login=login, password=password, totp_code=totp_code), timeout=60)


async def refused(call, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, f"{err.value.code()}: {err.value.details()}"
    return err.value.details()


def kid_of(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


async def identity_topic(settings, kind: str) -> list:
    return await read_topic(settings, settings.topic(f"identity.{kind}"))


async def event_names(platform, principal_id: str) -> list[str]:
    from poseidon import bootstrap

    codec = bootstrap.codec(platform.settings)
    records = await identity_topic(platform.settings, "events")
    return [codec.decode(r.value).name.rsplit(".", 1)[1] for r in records if r.key == principal_id.encode()]


async def test_a_principal_signs_up_logs_in_refreshes_and_a_reused_refresh_token_revokes_its_session(identity):
    platform, stub = identity
    settings = platform.settings
    reply = await register(stub, " Alice@Example.com")
    assert (reply.login, reply.principal_id) == ("alice@example.com", principal_id_for("alice@example.com"))
    alice = reply.principal_id
    assert "already registered" in await refused(
        stub.Register(pb.RegisterRequest(login="ALICE@example.com", password=PASSWORD)), grpc.StatusCode.ALREADY_EXISTS
    )
    assert "password must be 12" in await refused(
        stub.Register(pb.RegisterRequest(login="bob@example.com", password="short")), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "login must be" in await refused(
        stub.Register(pb.RegisterRequest(login="no spaces@x.y", password=PASSWORD)), grpc.StatusCode.INVALID_ARGUMENT
    )

    for wrong in (login(stub, "alice@example.com", "not the password!"), login(stub, "nobody@example.com")):
        assert await refused(wrong, grpc.StatusCode.UNAUTHENTICATED) == BAD_CREDENTIALS
    pair = await login(stub, "Alice@example.com")
    assert (pair.token_type, pair.expires_in, pair.principal_id) == ("Bearer", settings.access_token_ttl_s, alice)

    # The access token verifies with the key GetSigningKeys publishes for its kid, and works on another call.
    keys = {k.kid: k for k in (await stub.GetSigningKeys(pb.GetSigningKeysRequest())).keys}
    published = keys[kid_of(pair.access_token)]
    assert published.alg == "ES256" and published.active and "PRIVATE" not in published.public_key_pem
    claims = jwt.decode(pair.access_token, published.public_key_pem, algorithms=["ES256"], audience=settings.jwt_audience)
    assert (claims["sub"], claims["kind"], claims["scope"], claims["iss"]) == (alice, "user", "", settings.jwt_issuer)
    me = await stub.WhoAmI(pb.WhoAmIRequest(), metadata=bearer(pair.access_token))
    assert (me.principal_id, me.kind, me.login, me.registered, me.totp_enabled) == (
        alice,
        "user",
        "alice@example.com",
        True,
        False,
    )
    await refused(stub.WhoAmI(pb.WhoAmIRequest()), grpc.StatusCode.UNAUTHENTICATED)

    # Rotation: a new pair for the same session; the new access token works.
    second = await stub.Refresh(pb.RefreshRequest(refresh_token=pair.refresh_token))
    assert second.session_id == pair.session_id and second.refresh_token != pair.refresh_token
    assert (await stub.WhoAmI(pb.WhoAmIRequest(), metadata=bearer(second.access_token))).principal_id == alice
    third = await stub.Refresh(pb.RefreshRequest(refresh_token=second.refresh_token))

    # Reuse of an already used token: the whole family is revoked, the newest token included.
    assert "already used" in await refused(
        stub.Refresh(pb.RefreshRequest(refresh_token=pair.refresh_token)), grpc.StatusCode.UNAUTHENTICATED
    )
    await refused(stub.Refresh(pb.RefreshRequest(refresh_token=third.refresh_token)), grpc.StatusCode.UNAUTHENTICATED)
    await refused(
        stub.Refresh(pb.RefreshRequest(refresh_token=third.refresh_token[:-3] + "AAA")), grpc.StatusCode.UNAUTHENTICATED
    )
    assert (
        await refused(stub.Refresh(pb.RefreshRequest(refresh_token="prt1_forged")), grpc.StatusCode.UNAUTHENTICATED)
        == "invalid refresh token"
    )

    async def family_revoked():
        rows = await fetch(
            settings,
            settings.pg_schema("identity"),
            "SELECT status, revoked_reason, generation, reuse_detected_at FROM refresh_families WHERE family_id = $1",
            uuid.UUID(pair.session_id),
        )
        return rows and rows[0]["status"] == "revoked" and rows[0]

    row = await eventually(family_revoked)
    assert (row["revoked_reason"], row["generation"]) == ("reuse", 2) and row["reuse_detected_at"] is not None
    assert (await event_names(platform, alice))[-3:] == [
        "RefreshTokenRotated",
        "RefreshTokenReuseDetected",
        "RefreshFamilyRevoked",
    ]

    # Revoke: one session by id (with the caller's own access token), then all.
    one, two, three = [await login(stub, "alice@example.com") for _ in range(3)]
    revoked = await stub.Revoke(pb.RevokeRequest(session_id=one.session_id), metadata=bearer(one.access_token))
    assert revoked.revoked == 1
    await refused(stub.Refresh(pb.RefreshRequest(refresh_token=one.refresh_token)), grpc.StatusCode.UNAUTHENTICATED)
    two = await stub.Refresh(pb.RefreshRequest(refresh_token=two.refresh_token))
    assert (await stub.Revoke(pb.RevokeRequest(all_sessions=True), metadata=bearer(two.access_token))).revoked == 2
    for token in (two.refresh_token, three.refresh_token):
        await refused(stub.Refresh(pb.RefreshRequest(refresh_token=token)), grpc.StatusCode.UNAUTHENTICATED)
    assert "either session_id or all_sessions" in await refused(
        stub.Revoke(pb.RevokeRequest(), metadata=bearer(two.access_token)), grpc.StatusCode.INVALID_ARGUMENT
    )

    # Key rotation: tokens signed before keep working, new ones carry the new kid.
    new_kid = Keyring(settings.keys_dir).rotate()
    rotated = await login(stub, "alice@example.com")
    assert kid_of(rotated.access_token) == new_kid != kid_of(pair.access_token)
    for token in (pair.access_token, rotated.access_token):
        assert (await stub.WhoAmI(pb.WhoAmIRequest(), metadata=bearer(token))).principal_id == alice
    keys = (await stub.GetSigningKeys(pb.GetSigningKeysRequest())).keys
    assert [k.kid for k in keys if k.active] == [new_kid] and kid_of(pair.access_token) in {k.kid for k in keys}


async def test_another_principal_can_neither_revoke_nor_enrol_for_someone_else(identity):
    platform, stub = identity
    settings = platform.settings
    alice = (await register(stub, "alice@example.com")).principal_id
    await register(stub, "mallory@example.com")
    victim = await login(stub, "alice@example.com")
    attacker = await login(stub, "mallory@example.com")
    as_mallory = bearer(attacker.access_token)
    # Alice's session id answers exactly like a session that does not exist.
    for session_id in (victim.session_id, str(uuid.uuid4())):
        details = await refused(
            stub.Revoke(pb.RevokeRequest(session_id=session_id), metadata=as_mallory), grpc.StatusCode.NOT_FOUND
        )
        assert details == f"session {session_id} not found"
    await refused(
        stub.Revoke(pb.RevokeRequest(all_sessions=True, principal_id=alice), metadata=as_mallory),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    enrollment = await stub.EnrollTotp(pb.EnrollTotpRequest(password=PASSWORD), metadata=bearer(victim.access_token))
    code = pyotp.TOTP(enrollment.secret).now()
    confirm = pb.ConfirmTotpRequest(enrollment_id=enrollment.enrollment_id, code=code)
    await refused(stub.ConfirmTotp(confirm, metadata=as_mallory), grpc.StatusCode.FAILED_PRECONDITION)
    assert (await stub.WhoAmI(pb.WhoAmIRequest(), metadata=as_mallory)).login == "mallory@example.com"
    await refused(
        stub.RegisterService(pb.RegisterRequest(login="svc-router", password=PASSWORD), metadata=as_mallory),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    # Alice's session is untouched; a platform principal may revoke it.
    still = await stub.Refresh(pb.RefreshRequest(refresh_token=victim.refresh_token))
    platform_md = bearer(mint_token(settings, "test-platform", "service", [PLATFORM_SCOPE]))
    assert (await stub.Revoke(pb.RevokeRequest(all_sessions=True, principal_id=alice), metadata=platform_md)).revoked == 1
    await refused(stub.Refresh(pb.RefreshRequest(refresh_token=still.refresh_token)), grpc.StatusCode.UNAUTHENTICATED)
    # Service principals are registered by platform callers only, and log in like users.
    await stub.RegisterService(pb.RegisterRequest(login="svc-router", password=PASSWORD), metadata=platform_md, timeout=60)
    service = await login(stub, "svc-router")
    assert jwt.decode(service.access_token, options={"verify_signature": False})["kind"] == "service"


async def test_totp_enrolment_makes_a_fresh_code_necessary_at_login_and_no_secret_reaches_kafka_in_clear(identity):
    platform, stub = identity
    settings = platform.settings
    bob = (await register(stub, "bob@example.com")).principal_id
    pair = await login(stub, "bob@example.com")
    as_bob = bearer(pair.access_token)
    # Re-authentication: the access token alone does not enrol a device.
    for password in ("", "not the password at all"):
        assert "needs the current password" in await refused(
            stub.EnrollTotp(pb.EnrollTotpRequest(password=password), metadata=as_bob), grpc.StatusCode.UNAUTHENTICATED
        )
    enrollment = await stub.EnrollTotp(pb.EnrollTotpRequest(password=PASSWORD), metadata=as_bob)
    totp = pyotp.parse_uri(enrollment.provisioning_uri)
    assert totp.secret == enrollment.secret and totp.issuer == "Poseidon" and totp.name == "bob@example.com"
    wrong = pb.ConfirmTotpRequest(enrollment_id=enrollment.enrollment_id, code=f"{(int(totp.now()) + 1) % 1_000_000:06d}")
    assert "code is not a valid TOTP code" in await refused(
        stub.ConfirmTotp(wrong, metadata=as_bob), grpc.StatusCode.INVALID_ARGUMENT
    )
    confirm_code = totp.now()
    confirmed = await stub.ConfirmTotp(
        pb.ConfirmTotpRequest(enrollment_id=enrollment.enrollment_id, code=confirm_code), metadata=as_bob
    )
    assert confirmed.totp_enabled and (await stub.WhoAmI(pb.WhoAmIRequest(), metadata=as_bob)).totp_enabled
    await refused(stub.EnrollTotp(pb.EnrollTotpRequest(password=PASSWORD), metadata=as_bob), grpc.StatusCode.FAILED_PRECONDITION)

    # A missing or spent code is answered like a wrong password: nothing tells the password was right.
    assert await refused(login(stub, "bob@example.com"), grpc.StatusCode.UNAUTHENTICATED) == BAD_CREDENTIALS
    # The confirming code's time step is spent; the next step's code is accepted, once.
    spent = login(stub, "bob@example.com", totp_code=confirm_code)
    assert await refused(spent, grpc.StatusCode.UNAUTHENTICATED) == BAD_CREDENTIALS
    next_code = totp.at(time.time() + 30)
    with_mfa = await login(stub, "bob@example.com", totp_code=next_code)
    assert (await stub.WhoAmI(pb.WhoAmIRequest(), metadata=bearer(with_mfa.access_token))).principal_id == bob
    await refused(login(stub, "bob@example.com", totp_code=next_code), grpc.StatusCode.UNAUTHENTICATED)
    refreshed = await stub.Refresh(pb.RefreshRequest(refresh_token=with_mfa.refresh_token))

    # Failures are recorded in the background (the answer does not wait for them).
    names = await eventually(lambda: _names_with(platform, bob, "LoginFailed", 3))
    assert names[:5] == ["PrincipalRegistered", "LoginSucceeded", "TotpEnrollmentStarted", "TotpEnabled", "LoginFailed"]
    assert names.count("LoginFailed") == 3 and "RefreshTokenRotated" in names

    # Nothing secret on the identity topics, in any form a reader could use.
    password_hash = await sealed_value_opens_to_an_argon2id_hash(platform, bob)
    # (TOTP codes are not searched: six digits occur by chance; commands carry the code's time step only.)
    secrets = [PASSWORD, enrollment.secret, pair.refresh_token, with_mfa.refresh_token, refreshed.refresh_token,
               password_hash, "$argon2", pair.access_token]  # fmt: skip
    records = [(kind, r) for kind in ("events", "commands", "command-results") for r in await identity_topic(settings, kind)]
    assert sum(1 for kind, _ in records if kind == "events") == len(names)
    for kind, record in records:
        raw = (record.value or b"") + b"".join(v for _, v in record.headers or ())
        for secret in secrets:
            assert secret.encode() not in raw, f"{secret[:12]}… found in identity.{kind} offset {record.offset}"
        assert base64.b64encode(PASSWORD.encode())[:-4] not in raw and base64.b32encode(PASSWORD.encode())[:-8] not in raw
    rows = await fetch(
        settings,
        settings.pg_schema("identity"),
        "SELECT sealed_password, totp_sealed_secret FROM principals WHERE principal_id = $1",
        uuid.UUID(bob),
    )
    assert rows[0]["sealed_password"].startswith("sealed.v1.") and rows[0]["totp_sealed_secret"].startswith("sealed.v1.")
    assert enrollment.secret not in rows[0]["totp_sealed_secret"]


async def sealed_value_opens_to_an_argon2id_hash(platform, principal_id: str) -> str:
    """The sealed password in the read store opens, with the service's key, to an
    argon2id hash of the password: what Kafka carries is that value, sealed."""
    from argon2 import PasswordHasher

    from hubs.identity.sealing import Sealer, password_context, sealing_keys_dir

    settings = platform.settings
    [row] = await fetch(
        settings,
        settings.pg_schema("identity"),
        "SELECT sealed_password FROM principals WHERE principal_id = $1",
        uuid.UUID(principal_id),
    )
    password_hash = Sealer(sealing_keys_dir(settings)).unseal(row["sealed_password"], password_context(principal_id)).decode()
    assert password_hash.startswith("$argon2id$") and PasswordHasher().verify(password_hash, PASSWORD)
    return password_hash


async def _names_with(platform, principal_id: str, name: str, count: int) -> list[str] | None:
    names = await event_names(platform, principal_id)
    return names if names.count(name) >= count else None


def from_address(address: str) -> tuple[tuple[str, str], ...]:
    """Metadata a trusted proxy (the tests' loopback is one by default) sends for the browser it serves."""
    return ((CLIENT_ADDRESS_METADATA, address),)


async def test_an_operator_resets_totp_with_a_reason_that_the_log_keeps(identity):
    platform, stub = identity
    dave = (await register(stub, "dave@example.com")).principal_id
    first = await login(stub, "dave@example.com")
    as_dave = bearer(first.access_token)
    enrollment = await stub.EnrollTotp(pb.EnrollTotpRequest(password=PASSWORD), metadata=as_dave)
    totp = pyotp.TOTP(enrollment.secret)
    confirm = pb.ConfirmTotpRequest(enrollment_id=enrollment.enrollment_id, code=totp.now())
    await stub.ConfirmTotp(confirm, metadata=as_dave)
    reset = pb.ResetTotpRequest(principal_id=dave, reason="lost phone; identity checked on a call")
    # Dave himself (a user token, no platform scope) cannot reset it: that would undo the second factor.
    await refused(stub.ResetTotp(reset, metadata=as_dave), grpc.StatusCode.PERMISSION_DENIED)
    operator = mint_token(platform.settings, "operator-olga", "service", [PLATFORM_SCOPE])
    reply = await stub.ResetTotp(reset, metadata=bearer(operator))
    assert reply.sessions_revoked == 1
    await refused(stub.Refresh(pb.RefreshRequest(refresh_token=first.refresh_token)), grpc.StatusCode.UNAUTHENTICATED)
    again = await login(stub, "dave@example.com")  # no code needed any more
    assert not (await stub.WhoAmI(pb.WhoAmIRequest(), metadata=bearer(again.access_token))).totp_enabled
    from poseidon import bootstrap

    codec = bootstrap.codec(platform.settings)
    records = await identity_topic(platform.settings, "events")
    [event] = [d.record for d in (codec.decode(r.value) for r in records) if d.name.endswith(".TotpReset")]
    assert event["reason"] == "lost phone; identity checked on a call" and event["envelope"]["actor"] == "operator-olga"


async def test_the_interceptor_refuses_every_forged_or_misused_token_on_the_identity_port(platform):
    platform.start("grpc", "identity")
    settings = platform.settings
    ch = channel(settings, "identity", ())
    async with ch:
        stub = identity_pb2_grpc.IdentityStub(ch)
        [key] = (await stub.GetSigningKeys(pb.GetSigningKeysRequest())).keys
        keyring = Keyring(settings.keys_dir)
        issuer = TokenIssuer(keyring, settings)
        good = issuer.access_token("user-1")
        header, payload, signature = good.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))

        def b64(data: dict) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

        hs_header = b64({"alg": "HS256", "typ": "JWT", "kid": key.kid})
        hs_payload = b64({**claims, "sub": "admin"})
        hs_signature = (
            base64.urlsafe_b64encode(
                hmac.new(key.public_key_pem.encode(), f"{hs_header}.{hs_payload}".encode(), hashlib.sha256).digest()
            )
            .rstrip(b"=")
            .decode()
        )
        stranger = TokenIssuer(Keyring(platform.workdir / "stranger-keys"), settings)
        attacks = {
            "alg none": (
                jwt.encode(claims, None, algorithm="none", headers={"kid": key.kid}),
                "algorithm 'none' is not accepted",
            ),
            "HS256 with the public key": (f"{hs_header}.{hs_payload}.{hs_signature}", "algorithm 'HS256' is not accepted"),
            "expired": (issuer.access_token("user-1", ttl_s=-60), "token expired"),
            "not yet valid": (issuer.access_token("user-1", now=time.time() + 3600), "token not valid yet"),
            "wrong audience": (TokenIssuer(keyring, settings.with_(jwt_audience="elsewhere")).access_token("u"), "audience"),
            "wrong issuer": (
                TokenIssuer(keyring, settings.with_(jwt_issuer="evil-idp")).access_token("u"),
                "issuer is not trusted",
            ),
            "unknown kid": (stranger.access_token("user-1"), "unknown signing key id"),
            "tampered payload": (f"{header}.{b64({**claims, 'sub': 'admin'})}.{signature}", "invalid token"),
            "garbage": ("not.a.jwt", "malformed token"),
        }
        for name, (token, reason) in attacks.items():
            details = await refused(stub.WhoAmI(pb.WhoAmIRequest(), metadata=bearer(token)), grpc.StatusCode.UNAUTHENTICATED)
            assert reason in details, f"{name}: {details}"
        assert (await stub.WhoAmI(pb.WhoAmIRequest(), metadata=bearer(good))).principal_id == "user-1"
        health = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="poseidon.identity.v1.Identity")
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
