"""Attacks on the gRPC services of every hub, against real servers (in this
process, on the test's namespace, real PostgreSQL and Kafka): forged,
expired and misused tokens on every guarded method; and a member of tenant A
asking every method for tenant B's data. Methods are enumerated from the
generated descriptors, so a new method is probed without editing this file."""

from __future__ import annotations

import asyncio
import time
import uuid

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.timestamp_pb2 import Timestamp

from infra import tls
from infra.security import PLATFORM_SCOPE
from poseidon import bootstrap
from tests.attacks.grpc_targets import Method, forged_tokens, hub_methods, hub_servers
from tests.harness import bearer, mint_token
from tests.integration.tenancy import member_of

pytestmark = pytest.mark.integration

HUBS = sorted({m.hub for m in hub_methods()})
PUBLIC = frozenset().union(*(bootstrap.query_service(hub).public_methods for hub in HUBS))
CONTROL_DEADLINE_S = 3.0
"""Controls may send commands to hubs whose processors do not run here: they
time out, which is fine — the point is that they are not refused."""


async def status_of(method: Method, channel: grpc.aio.Channel, request, metadata=(), timeout: float = 10.0):
    """(code, details, response or None) of one call."""
    try:
        reply = await method.callable(channel)(request, metadata=metadata, timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or "", None
    return grpc.StatusCode.OK, "", reply


def channels(settings) -> dict[str, grpc.aio.Channel]:
    return {hub: tls.channel(settings, f"127.0.0.1:{settings.grpc_port(hub)}") for hub in HUBS}


async def test_every_guarded_method_of_every_hub_refuses_forged_and_misused_tokens(namespace, attacks):
    guarded = [m for m in hub_methods() if m.path not in PUBLIC]
    forged = forged_tokens(namespace)
    assert len(guarded) >= 40 and len(forged) >= 20
    genuine = bearer(mint_token(namespace, "operator", "service", [PLATFORM_SCOPE]))
    async with hub_servers(namespace, HUBS):
        chans = channels(namespace)
        try:
            for name, (metadata, words) in forged.items():
                row = attacks.row("JWT / bearer", name, "UNAUTHENTICATED with a reason, on every guarded method")
                results = await asyncio.gather(*(status_of(m, chans[m.hub], m.request(), metadata) for m in guarded))
                for method, (code, details, _) in zip(guarded, results, strict=True):
                    row.cases += 1
                    assert code == grpc.StatusCode.UNAUTHENTICATED, f"{name} on {method}: {code} {details}"
                    assert words in details, f"{name} on {method}: {details!r}"
            # Control: the same calls with a genuine token get past the guard.
            controls = await asyncio.gather(
                *(status_of(m, chans[m.hub], m.request(), genuine, CONTROL_DEADLINE_S) for m in guarded)
            )
            assert not [
                str(m) for m, (code, *_) in zip(guarded, controls, strict=True) if code == grpc.StatusCode.UNAUTHENTICATED
            ]
        finally:
            for ch in chans.values():
                await ch.close()


def test_a_replayed_refresh_token_is_covered_where_refresh_rotation_lives(attacks):
    """Refresh reuse needs the Identity processor; tests/integration/test_identity_hub.py
    already replays a rotated refresh token and checks the whole family is revoked
    (UNAUTHENTICATED, `refresh_families.revoked_reason = 'reuse'`). Not duplicated:
    this pins that the test still exists under that name."""
    from tests.integration import test_identity_hub

    name = "test_a_principal_signs_up_logs_in_refreshes_and_a_reused_refresh_token_revokes_its_session"
    attacks.tried(
        "JWT / bearer",
        "replayed refresh token (covered by tests/integration/test_identity_hub.py)",
        "UNAUTHENTICATED; the session's family revoked",
        0,
    )
    assert callable(getattr(test_identity_hub, name))


# ---------------------------------------------------------------- cross-tenant sweep

# Values that pass each field's validation, so a refusal is about the tenant,
# not the request's shape. Tenant fields get the victim's tenant id.
TENANT_FIELDS = ("tenant_id", "scope_id")
VALID = {
    "channel": "messenger",
    "account_id": "104010101010101",
    "key": "messaging.greeting",
    "value_json": '"hello"',
    "feature": "botpress",
    "role": "viewer",
    "environment": "",
    "prefix": "",
    "name": "Probe",
    "message_id": "m_1",
    "login": "probe@example.com",
    "password": "correct horse battery staple",
    "code": "123456",
    "totp_code": "",
    "refresh_token": "prt1_forged",
    "owner_id": "",  # the caller: naming another owner is refused on its own (platform only)
}

# Methods without a tenant field are scoped by the caller (or platform-only);
# each is listed with what a member of another tenant must get. A new method
# without a tenant field fails the sweep until it is classified here.
CALLER_SCOPED = {
    "/poseidon.tenant.v1.TenantQuery/ListMyTenants": "answers only the caller's tenants",
    "/poseidon.tenant.v1.TenantQuery/ListMyInvitations": "answers only the caller's invitations",
    "/poseidon.tenant.v1.TenantQuery/ResolveChannel": grpc.StatusCode.PERMISSION_DENIED,
    "/poseidon.identity.v1.Identity/RegisterService": grpc.StatusCode.PERMISSION_DENIED,
    "/poseidon.identity.v1.Identity/Revoke": grpc.StatusCode.PERMISSION_DENIED,
    "/poseidon.identity.v1.Identity/ResetTotp": grpc.StatusCode.PERMISSION_DENIED,
    "/poseidon.identity.v1.Identity/WhoAmI": "answers only the caller",
    "/poseidon.identity.v1.Identity/EnrollTotp": "acts only on the caller",
    "/poseidon.identity.v1.Identity/ConfirmTotp": "acts only on the caller's enrolment",
    "/poseidon.identity.v1.Identity/Register": "public: creates a new principal, reads nothing",
    "/poseidon.identity.v1.Identity/Login": "public: the caller's credentials",
    "/poseidon.identity.v1.Identity/Refresh": "public: the caller's refresh token",
    "/poseidon.identity.v1.Identity/GetSigningKeys": "public: public keys only",
}
# Tenant-field methods whose tenant is not a tenant to read: creating a tenant
# with the victim's id is refused as taken; accepting an invitation for the
# victim is refused, and one that does not exist answers like a missing tenant.
NOT_A_READ = {
    "/poseidon.tenant.v1.TenantMembership/CreateTenant": (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS),
    "/poseidon.tenant.v1.TenantMembership/AcceptInvitation": (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND),
}


def probe(method: Method, tenant: str, victim: str):
    """A well-formed request of `method` aimed at `tenant`, naming the victim principal."""
    values = {}
    for name, field in method.fields.items():
        if field.type == FieldType.STRING:
            if name in TENANT_FIELDS:
                values[name] = tenant
            elif name == "principal_id":
                values[name] = victim
            elif name in VALID:
                values[name] = VALID[name]
            elif name.endswith("_id"):
                values[name] = str(uuid.uuid4())
        elif field.type == FieldType.ENUM and name == "scope_kind":
            values[name] = field.enum_type.values_by_name["SCOPE_KIND_TENANT"].number
        elif field.type == FieldType.MESSAGE and field.message_type.full_name == "google.protobuf.Timestamp":
            values[name] = Timestamp(seconds=int(time.time()))
    return method.request(**values)


class FieldType:
    STRING = FieldDescriptor.TYPE_STRING
    ENUM = FieldDescriptor.TYPE_ENUM
    MESSAGE = FieldDescriptor.TYPE_MESSAGE


@pytest.fixture
async def two_tenants(platform):
    """Tenant A owned by alice, tenant B owned by bob (real Tenant hub commands),
    alice also invited nowhere in B."""
    a, b = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    await asyncio.gather(member_of(platform, a, alice, "owner"), member_of(platform, b, bob, "owner"))
    return platform.settings, (a, alice), (b, bob)


async def test_a_member_of_one_tenant_gets_nothing_of_another_from_any_method(two_tenants, attacks):
    settings, (a, alice), (b, bob) = two_tenants
    ghost = f"c-{uuid.uuid4().hex[:8]}"  # no such tenant: B must look exactly like it
    as_alice = bearer(mint_token(settings, alice))
    methods = hub_methods()
    unclassified = [str(m) for m in methods if not set(TENANT_FIELDS) & set(m.fields) and m.path not in CALLER_SCOPED]
    assert not unclassified, f"methods without a tenant field must be classified in CALLER_SCOPED: {unclassified}"
    async with hub_servers(settings, HUBS):
        chans = channels(settings)
        try:
            tenant_scoped = [m for m in methods if set(TENANT_FIELDS) & set(m.fields)]
            for method in tenant_scoped:
                row = attacks.row(
                    "cross-tenant gRPC", f"{method.hub}: member of A asks for B", "PERMISSION_DENIED, same as a missing tenant"
                )
                code, details, reply = await status_of(method, chans[method.hub], probe(method, b, bob), as_alice)
                row.cases += 1
                assert reply is None and bob not in details, f"{method} answered with B's data: {reply}"
                expected = NOT_A_READ.get(method.path, (grpc.StatusCode.PERMISSION_DENIED,))
                assert code in expected, f"{method}: {code} {details}"
                if method.path in NOT_A_READ:
                    continue  # (creating the ghost tenant would make alice its owner)
                # Another tenant looks exactly like no tenant: no existence oracle.
                ghost_code, ghost_details, _ = await status_of(method, chans[method.hub], probe(method, ghost, bob), as_alice)
                assert (ghost_code, ghost_details.replace(ghost, b)) == (code, details), f"{method}: {ghost_code} {ghost_details}"
            # Controls: in her own tenant alice gets past the role check on every one of them.
            controls = await asyncio.gather(
                *(
                    status_of(m, chans[m.hub], probe(m, a, alice), as_alice, CONTROL_DEADLINE_S)
                    for m in tenant_scoped
                    if m.path not in NOT_A_READ
                )
            )
            denied = [details for code, details, _ in controls if code == grpc.StatusCode.PERMISSION_DENIED]
            assert not denied, denied

            for path, expected in CALLER_SCOPED.items():
                method = next(m for m in methods if m.path == path)
                row = attacks.row(
                    "cross-tenant gRPC",
                    f"{method.hub}: caller-scoped methods asked about B",
                    "refused, or nothing of B in the answer",
                )
                code, details, reply = await status_of(
                    method, chans[method.hub], probe(method, b, bob), as_alice, CONTROL_DEADLINE_S
                )
                row.cases += 1
                if isinstance(expected, grpc.StatusCode):
                    assert code == expected, f"{path}: {code} {details}"
                answer = reply.SerializeToString() if reply is not None else b""
                assert b.encode() not in answer and bob.encode() not in answer, f"{path} leaked B: {reply}"
        finally:
            for ch in chans.values():
                await ch.close()
