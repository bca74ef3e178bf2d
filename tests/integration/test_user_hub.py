"""The User hub end to end on the real stack: profile commands → Avro events →
the user read store (clear profiles, masked directory, preferences) → gRPC
answers whose PII masking depends on the caller's role; tenant isolation and
authentication on every method; and no clear email or phone in any log line."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hubs.user.aggregate import profile_id
from hubs.user.commands import CreateProfile, RemovePreference, SetPreference, UpdateProfile
from infra import tls
from infra.command_client import CommandClient, new_meta
from poseidon import bootstrap
from schemas.protos import user_pb2 as pb
from schemas.protos import user_pb2_grpc
from tests.harness import bearer, channel, eventually, fetch, mint_token, read_topic
from tests.integration.tenancy import member_of

pytestmark = pytest.mark.integration

EMAIL, PHONE, NAME = "alice.martin@example.com", "+33612345678", "Alice Martin"
SERVICE = "poseidon.user.v1.UserQuery"


@pytest.fixture
async def running(platform):
    for role in ("processor", "projector", "grpc"):
        platform.start(role, "user", wait=False)
    for role in ("processor", "projector", "grpc"):
        platform.wait_healthy(f"user-{role}")
    async with CommandClient(platform.settings, bootstrap.codec(platform.settings), [bootstrap.hub("user")]) as client:
        yield platform, client


class Caller:
    """UserQuery stub carrying one principal's token (None: a platform principal;
    metadata=() sends no token at all)."""

    def __init__(self, settings, principal: str | None = None, metadata=None):
        if metadata is None and principal is not None:
            metadata = bearer(mint_token(settings, principal))
        self.channel = channel(settings, "user", metadata)
        self.stub = user_pb2_grpc.UserQueryStub(self.channel)

    async def __aenter__(self) -> user_pb2_grpc.UserQueryStub:
        return self.stub

    async def __aexit__(self, *exc) -> None:
        await self.channel.close()


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


def create(tenant: str, principal: str, **fields) -> CreateProfile:
    fields = {"display_name": NAME, "email": EMAIL, "phone": PHONE, "locale": "fr-FR", "timezone": "Europe/Paris", **fields}
    return CreateProfile(new_meta(str(profile_id(tenant, principal)), tenant, actor=principal), principal_id=principal, **fields)


def to(tenant: str, principal: str) -> dict:
    return {"meta": new_meta(str(profile_id(tenant, principal)), tenant, actor=principal)}


async def profile_at_version(settings, tenant: str, principal: str, version: int) -> pb.Profile:
    async with Caller(settings) as user:

        async def reached():
            try:
                reply = await user.GetProfile(pb.GetProfileRequest(tenant_id=tenant, principal_id=principal))
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return None
                raise
            return reply if reply.version >= version else None

        return await eventually(reached)


async def test_a_profile_travels_from_commands_to_events_the_read_store_and_grpc_answers(running):
    platform, client = running
    settings, codec = platform.settings, bootstrap.codec(platform.settings)
    tenant, alice = "tenant-a", str(uuid.uuid4())
    pid = str(profile_id(tenant, alice))

    results = [
        await client.send(create(tenant, alice)),
        await client.send(UpdateProfile(**to(tenant, alice), display_name="Alice M.", phone="+14155552671")),
        await client.send(SetPreference(**to(tenant, alice), key="theme", value="dark")),
        await client.send(SetPreference(**to(tenant, alice), key="notifications.sms", value="true")),
        await client.send(RemovePreference(**to(tenant, alice), key="theme")),
    ]
    assert [(r.accepted, r.version) for r in results] == [(True, 1), (True, 2), (True, 3), (True, 4), (True, 5)]
    bad_email = await client.send(create(tenant, str(uuid.uuid4()), email="carol@@example.com"))
    bad_phone = await client.send(UpdateProfile(**to(tenant, alice), phone="+33 6 99 88 77 66"))
    unknown_key = await client.send(SetPreference(**to(tenant, alice), key="font", value="big"))
    assert [(r.rejection, r.version) for r in (bad_email, bad_phone, unknown_key)] == [
        ("InvalidCommand", 0), ("InvalidCommand", 5), ("InvalidCommand", 5),
    ]  # fmt: skip
    assert "exactly one '@'" in bad_email.reason and "carol" not in bad_email.reason
    assert "only digits" in bad_phone.reason and "99 88" not in bad_phone.reason
    assert "notifications.email" in unknown_key.reason

    events = [codec.decode(r.value) for r in await read_topic(settings, settings.topic("user.events")) if r.key == pid.encode()]
    assert [e.name for e in events] == [
        "poseidon.user.ProfileCreated", "poseidon.user.ProfileUpdated", "poseidon.user.PreferenceSet",
        "poseidon.user.PreferenceSet", "poseidon.user.PreferenceRemoved",
    ]  # fmt: skip
    assert {e.record["envelope"]["tenant_id"] for e in events} == {tenant}
    created = events[0].record
    assert (created["principal_id"], created["email"], created["phone"]) == (alice, EMAIL, PHONE)
    assert (events[1].record["display_name"], events[1].record["email"]) == ("Alice M.", None)

    reply = await profile_at_version(settings, tenant, alice, 5)
    assert (reply.tenant_id, reply.principal_id, reply.display_name, reply.email, reply.phone) == (
        tenant, alice, "Alice M.", EMAIL, "+14155552671",
    )  # fmt: skip
    assert (reply.locale, reply.timezone, reply.pii_masked) == ("fr-FR", "Europe/Paris", False)

    # The read store keeps clear PII in `profiles` only; the directory has it masked.
    schema = settings.pg_schema("user")
    [clear] = await fetch(settings, schema, "SELECT email, phone FROM profiles WHERE profile_id = $1", uuid.UUID(pid))
    [masked] = await fetch(
        settings,
        schema,
        "SELECT email_masked, phone_masked, display_name FROM profile_directory WHERE profile_id = $1",
        uuid.UUID(pid),
    )
    assert tuple(clear) == (EMAIL, "+14155552671")
    assert tuple(masked) == ("a***@example.com", "+14******71", "Alice M.")

    async with Caller(settings) as user:
        prefs = await user.GetPreferences(pb.GetPreferencesRequest(tenant_id=tenant, principal_id=alice))
        assert [(p.key, p.value) for p in prefs.preferences] == [("notifications.sms", "true")]
        assert prefs.version == 5
        page = await user.ListProfiles(pb.ListProfilesRequest(tenant_id=tenant))
        assert [(p.principal_id, p.email, p.pii_masked) for p in page.profiles] == [(alice, EMAIL, False)]
        assert page.next_page_token == ""

        nobody = str(uuid.uuid4())
        for call in (
            user.GetProfile(pb.GetProfileRequest(tenant_id=tenant, principal_id=nobody)),
            user.GetPreferences(pb.GetPreferencesRequest(tenant_id=tenant, principal_id=nobody)),
        ):
            assert (await refused(call)).code() == grpc.StatusCode.NOT_FOUND
        for call, field in (
            (user.GetProfile(pb.GetProfileRequest(tenant_id=tenant, principal_id="alice")), "principal_id"),
            (user.GetProfile(pb.GetProfileRequest(principal_id=alice)), "tenant_id"),
            (user.GetPreferences(pb.GetPreferencesRequest(tenant_id=tenant, principal_id="")), "principal_id"),
            (user.ListProfiles(pb.ListProfilesRequest(tenant_id=tenant, page_size=1000)), "page_size"),
            (user.ListProfiles(pb.ListProfilesRequest(tenant_id=tenant, page_token="garbage")), "page_token"),
            (user.ListProfiles(pb.ListProfilesRequest()), "tenant_id"),
        ):
            error = await refused(call)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and field in error.details()

    # No token on any method: UNAUTHENTICATED.
    async with Caller(settings, metadata=()) as anonymous:
        for call in (
            anonymous.GetProfile(pb.GetProfileRequest(tenant_id=tenant, principal_id=alice)),
            anonymous.ListProfiles(pb.ListProfilesRequest(tenant_id=tenant)),
            anonymous.GetPreferences(pb.GetPreferencesRequest(tenant_id=tenant, principal_id=alice)),
        ):
            error = await refused(call)
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED and "missing bearer token" in error.details()

    async with tls.channel(settings, f"127.0.0.1:{settings.grpc_port('user')}") as plain:
        health = health_pb2_grpc.HealthStub(plain)
        for service in ("", SERVICE):
            assert (
                await health.Check(health_pb2.HealthCheckRequest(service=service))
            ).status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(plain)
        async for response in reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])):
            assert SERVICE in {s.name for s in response.list_services_response.service}
            break

    # Every process of the hub logged its work, and not one clear email, phone or name.
    logs = {
        name: platform.procs[name].log.read_text(errors="replace") for name in ("user-processor", "user-projector", "user-grpc")
    }
    assert logs["user-processor"].count('"command accepted"') >= 5 and '"command rejected"' in logs["user-processor"]
    for name, text in logs.items():
        for secret in (EMAIL, "alice.martin", PHONE, "33612345678", "14155552671", "carol@", "99 88 77 66", NAME, "Alice M."):
            assert secret not in text, f"{secret!r} appears in the {name} log"


async def test_what_a_caller_reads_depends_on_its_role_and_never_crosses_tenants(running):
    platform, client = running
    settings = platform.settings
    tenant, other_tenant = f"t-{uuid.uuid4().hex[:10]}", f"t-{uuid.uuid4().hex[:10]}"
    alice, bob, admin, agent, viewer, outsider = (str(uuid.uuid4()) for _ in range(6))
    await asyncio.gather(
        member_of(platform, tenant, alice, "viewer"),
        member_of(platform, tenant, bob, "agent"),
        member_of(platform, tenant, admin, "admin"),
        member_of(platform, tenant, agent, "agent"),
        member_of(platform, tenant, viewer, "viewer"),
        member_of(platform, other_tenant, outsider, "admin"),
    )
    assert (await client.send(create(tenant, alice))).accepted
    assert (await client.send(create(tenant, bob, display_name="Bob Stone", email="bob@example.org", phone=""))).accepted
    assert (await client.send(create(other_tenant, outsider, display_name="Olga", email="olga@other.example"))).accepted
    assert (await client.send(SetPreference(**to(tenant, alice), key="theme", value="dark"))).accepted
    await profile_at_version(settings, tenant, alice, 2)
    await profile_at_version(settings, tenant, bob, 1)
    await profile_at_version(settings, other_tenant, outsider, 1)

    def get(principal, tenant_id=tenant):
        return pb.GetProfileRequest(tenant_id=tenant_id, principal_id=principal)

    def prefs(principal, tenant_id=tenant):
        return pb.GetPreferencesRequest(tenant_id=tenant_id, principal_id=principal)

    clear_alice = (EMAIL, PHONE, False)
    masked_alice = ("a***@example.com", "+33******78", True)

    # The principal itself: its own profile and preferences in full, even as a viewer.
    async with Caller(settings, alice) as user:
        own = await user.GetProfile(get(alice))
        assert (own.email, own.phone, own.pii_masked) == clear_alice
        assert [(p.key, p.value) for p in (await user.GetPreferences(prefs(alice))).preferences] == [("theme", "dark")]
        other = await user.GetProfile(get(bob))
        assert (other.display_name, other.email, other.phone, other.pii_masked) == ("Bob Stone", "b***@example.org", "", True)
        assert (await refused(user.GetPreferences(prefs(bob)))).code() == grpc.StatusCode.PERMISSION_DENIED

    # Admins read everyone in full, preferences included.
    async with Caller(settings, admin) as user:
        full = await user.GetProfile(get(alice))
        assert (full.email, full.phone, full.pii_masked) == clear_alice
        page = await user.ListProfiles(pb.ListProfilesRequest(tenant_id=tenant))
        assert sorted((p.email, p.pii_masked) for p in page.profiles) == [
            ("alice.martin@example.com", False),
            ("bob@example.org", False),
        ]
        assert [p.key for p in (await user.GetPreferences(prefs(alice))).preferences] == ["theme"]

    # Agents and viewers: masked email and phone on every read, no one else's preferences.
    for principal in (agent, viewer):
        async with Caller(settings, principal) as user:
            seen = await user.GetProfile(get(alice))
            assert (seen.email, seen.phone, seen.pii_masked) == masked_alice
            assert seen.display_name == NAME
            first = await user.ListProfiles(pb.ListProfilesRequest(tenant_id=tenant, page_size=1))
            second = await user.ListProfiles(
                pb.ListProfilesRequest(tenant_id=tenant, page_size=1, page_token=first.next_page_token)
            )
            listed = [*first.profiles, *second.profiles]
            assert sorted(p.principal_id for p in listed) == sorted([alice, bob]) and second.next_page_token == ""
            assert all(p.pii_masked and "***" in p.email for p in listed)
            assert EMAIL not in str(listed) and PHONE not in str(listed)
            error = await refused(user.GetPreferences(prefs(alice)))
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    # A member of another tenant, whatever ids it sends: refused on every method.
    async with Caller(settings, outsider) as user:
        for call in (
            user.GetProfile(get(alice)),
            user.ListProfiles(pb.ListProfilesRequest(tenant_id=tenant)),
            user.GetPreferences(prefs(alice)),
            user.GetProfile(get(outsider)),
        ):
            assert (await refused(call)).code() == grpc.StatusCode.PERMISSION_DENIED
        # In its own tenant (where it is admin), another tenant's principal is simply not there.
        for call in (user.GetProfile(get(alice, other_tenant)), user.GetPreferences(prefs(alice, other_tenant))):
            assert (await refused(call)).code() == grpc.StatusCode.NOT_FOUND
        listed = (await user.ListProfiles(pb.ListProfilesRequest(tenant_id=other_tenant))).profiles
        assert [p.principal_id for p in listed] == [outsider]

    # A principal with a valid token but no membership anywhere.
    async with Caller(settings, str(uuid.uuid4())) as user:
        for call in (
            user.GetProfile(get(alice)),
            user.ListProfiles(pb.ListProfilesRequest(tenant_id=tenant)),
            user.GetPreferences(prefs(alice)),
        ):
            assert (await refused(call)).code() == grpc.StatusCode.PERMISSION_DENIED
