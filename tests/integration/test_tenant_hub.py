"""The Tenant hub end to end on the real stack: commands → Avro events → the
tenant read store → gRPC answers; membership changes that change what gRPC lets
a member see on the very next call; the last-owner rule; tenant isolation on
every method; and the `member_of` helper other hubs' tests rely on."""

from __future__ import annotations

import uuid

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hubs.tenant.commands import AcceptInvitation, ChangeMemberRole, CreateTenant, InviteMember, RemoveMember
from infra import tls
from infra.command_client import CommandClient, new_meta
from infra.migrations import migrate
from poseidon import bootstrap
from projections.tenant import PROJECTION
from schemas.protos import tenant_pb2 as pb
from schemas.protos import tenant_pb2_grpc
from tests.harness import bearer, channel, eventually, fetch, mint_token, read_topic
from tests.integration.tenancy import member_of, synthetic_owner
from tests.unit.test_tenant_mapping import Story, statements

pytestmark = pytest.mark.integration


@pytest.fixture
async def running(platform):
    for role in ("processor", "projector", "grpc"):
        platform.start(role, "tenant", wait=False)
    for role in ("processor", "projector", "grpc"):
        platform.wait_healthy(f"tenant-{role}")
    return platform


class Caller:
    """gRPC stubs of the Tenant hub carrying one principal's token (None: a
    platform principal; metadata=() sends no token at all)."""

    def __init__(self, settings, principal: str | None = None, metadata=None):
        if metadata is None and principal is not None:
            metadata = bearer(mint_token(settings, principal))
        self.id = principal
        self.channel = channel(settings, "tenant", metadata)
        self.query = tenant_pb2_grpc.TenantQueryStub(self.channel)
        self.membership = tenant_pb2_grpc.TenantMembershipStub(self.channel)

    async def __aenter__(self) -> Caller:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.channel.close()


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def code_of(call) -> grpc.StatusCode:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def slug() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


async def test_a_created_tenant_travels_to_events_the_read_store_and_grpc_answers(running):
    settings = running.settings
    codec = bootstrap.codec(settings)
    tenant = slug()
    async with CommandClient(settings, codec, [bootstrap.hub("tenant")]) as client:
        created = await client.send(CreateTenant(new_meta(tenant, tenant, actor="signup"), name="Acme Ltd", owner_id="olga"))
        invited = await client.send(InviteMember(new_meta(tenant, tenant, actor="olga"), principal_id="ann", role="agent"))
        await client.send(InviteMember(new_meta(tenant, tenant, actor="olga"), principal_id="bob", role="viewer"))
        joined = await client.send(AcceptInvitation(new_meta(tenant, tenant, actor="ann"), principal_id="ann"))
    assert (created.accepted, invited.accepted, joined.accepted) == (True, True, True)
    assert created.event_types == ("poseidon.tenant.TenantCreated", "poseidon.tenant.MemberJoined")
    assert joined.version == 5

    records = [r for r in await read_topic(settings, settings.topic("tenant.events")) if r.key == tenant.encode()]
    decoded = [codec.decode(r.value) for r in records]
    assert [d.name.rsplit(".", 1)[1] for d in decoded] == [
        "TenantCreated",
        "MemberJoined",
        "MemberInvited",
        "MemberInvited",
        "MemberJoined",
    ]
    assert [d.record["envelope"]["aggregate_version"] for d in decoded] == [1, 2, 3, 4, 5]
    assert {d.record["envelope"]["tenant_id"] for d in decoded} == {tenant}
    assert decoded[4].record["principal_id"] == "ann" and decoded[4].record["role"] == "agent"

    async with Caller(settings) as platform_caller, Caller(settings, "ann") as ann, Caller(settings, "olga") as olga:

        async def at_version_5():
            try:
                reply = await platform_caller.query.GetTenant(pb.GetTenantRequest(tenant_id=tenant))
            except grpc.aio.AioRpcError:
                return None
            return reply if reply.version >= 5 else None

        reply = await eventually(at_version_5)
        assert (reply.tenant_id, reply.name, reply.member_count) == (tenant, "Acme Ltd", 2)

        first = await ann.query.ListMembers(pb.ListMembersRequest(tenant_id=tenant, page_size=1))
        assert [(m.principal_id, m.role) for m in first.members] == [("ann", "agent")]
        second = await ann.query.ListMembers(
            pb.ListMembersRequest(tenant_id=tenant, page_size=1, page_token=first.next_page_token)
        )
        assert [(m.principal_id, m.role) for m in second.members] == [("olga", "owner")]
        assert second.next_page_token == ""

        assert (await ann.query.GetMyRole(pb.GetMyRoleRequest(tenant_id=tenant))).role == "agent"
        mine = await platform_caller.query.GetMyRole(pb.GetMyRoleRequest(tenant_id=tenant))
        assert (mine.role, mine.platform) == ("owner", True)
        my_tenants = await ann.query.ListMyTenants(pb.ListMyTenantsRequest())
        assert [(t.tenant_id, t.name, t.role) for t in my_tenants.tenants] == [(tenant, "Acme Ltd", "agent")]

        invitations = await olga.query.ListInvitations(pb.ListInvitationsRequest(tenant_id=tenant))
        assert [(i.principal_id, i.role, i.invited_by, i.tenant_name) for i in invitations.invitations] == [
            ("bob", "viewer", "olga", "Acme Ltd")
        ]
        async with Caller(settings, "bob") as bob:
            mine = await bob.query.ListMyInvitations(pb.ListMyInvitationsRequest())
            assert [(i.tenant_id, i.role) for i in mine.invitations] == [(tenant, "viewer")]
            assert (await refused(bob.query.ListMembers(pb.ListMembersRequest(tenant_id=tenant)))).code() == (
                grpc.StatusCode.PERMISSION_DENIED
            )

    async with tls.channel(settings, f"127.0.0.1:{settings.grpc_port('tenant')}") as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", "poseidon.tenant.v1.TenantQuery", "poseidon.tenant.v1.TenantMembership"):
            assert (await health.Check(health_pb2.HealthCheckRequest(service=service))).status == (
                health_pb2.HealthCheckResponse.SERVING
            )
        responses = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        async for response in responses:
            names = {s.name for s in response.list_services_response.service}
            break
        assert {"poseidon.tenant.v1.TenantQuery", "poseidon.tenant.v1.TenantMembership"} <= names


async def test_a_membership_change_changes_what_grpc_lets_the_member_see_on_the_next_call(running):
    settings = running.settings
    tenant = slug()
    async with Caller(settings, "olga") as olga, Caller(settings, "ann") as ann:
        created = await olga.membership.CreateTenant(pb.CreateTenantRequest(tenant_id=tenant, name="Acme"))
        assert (created.tenant_id, created.version, created.projected) == (tenant, 2, True)
        assert (
            await code_of(ann.query.ListMembers(pb.ListMembersRequest(tenant_id=tenant)))
        ) == grpc.StatusCode.PERMISSION_DENIED

        await olga.membership.InviteMember(pb.InviteMemberRequest(tenant_id=tenant, principal_id="ann", role="admin"))
        joined = await ann.membership.AcceptInvitation(pb.AcceptInvitationRequest(tenant_id=tenant))
        assert joined.projected
        # Each change is visible to the very next call: the reply waits for the read store.
        members = await ann.query.ListMembers(pb.ListMembersRequest(tenant_id=tenant))
        assert {(m.principal_id, m.role) for m in members.members} == {("ann", "admin"), ("olga", "owner")}
        await ann.membership.InviteMember(pb.InviteMemberRequest(tenant_id=tenant, principal_id="bob", role="viewer"))
        assert (await ann.query.ListInvitations(pb.ListInvitationsRequest(tenant_id=tenant))).invitations[0].principal_id == "bob"

        demoted = await olga.membership.ChangeMemberRole(
            pb.ChangeMemberRoleRequest(tenant_id=tenant, principal_id="ann", role="viewer")
        )
        assert demoted.projected
        assert (await ann.query.GetMyRole(pb.GetMyRoleRequest(tenant_id=tenant))).role == "viewer"
        assert (await code_of(ann.query.ListInvitations(pb.ListInvitationsRequest(tenant_id=tenant)))) == (
            grpc.StatusCode.PERMISSION_DENIED
        )
        denied = await refused(
            ann.membership.InviteMember(pb.InviteMemberRequest(tenant_id=tenant, principal_id="cid", role="viewer"))
        )
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        await ann.query.ListMembers(pb.ListMembersRequest(tenant_id=tenant))  # a viewer still may

        removed = await olga.membership.RemoveMember(pb.RemoveMemberRequest(tenant_id=tenant, principal_id="ann"))
        assert removed.projected
        for call in (
            ann.query.ListMembers(pb.ListMembersRequest(tenant_id=tenant)),
            ann.query.GetTenant(pb.GetTenantRequest(tenant_id=tenant)),
            ann.query.GetMyRole(pb.GetMyRoleRequest(tenant_id=tenant)),
        ):
            assert (await code_of(call)) == grpc.StatusCode.PERMISSION_DENIED
        assert list((await ann.query.ListMyTenants(pb.ListMyTenantsRequest())).tenants) == []

        # A resend with the same command id is answered, not applied twice.
        again = await olga.membership.RemoveMember(
            pb.RemoveMemberRequest(tenant_id=tenant, principal_id="ann", command_id=removed.command_id)
        )
        assert again.duplicate and again.version == removed.version


async def test_a_tenant_always_keeps_an_owner_and_only_owners_grant_owner(running):
    settings = running.settings
    tenant = slug()
    async with Caller(settings, "olga") as olga, Caller(settings, "adam") as adam:
        await olga.membership.CreateTenant(pb.CreateTenantRequest(tenant_id=tenant, name="Acme"))
        await olga.membership.InviteMember(pb.InviteMemberRequest(tenant_id=tenant, principal_id="adam", role="admin"))
        await adam.membership.AcceptInvitation(pb.AcceptInvitationRequest(tenant_id=tenant))

        for call in (
            olga.membership.RemoveMember(pb.RemoveMemberRequest(tenant_id=tenant, principal_id="olga")),
            olga.membership.ChangeMemberRole(pb.ChangeMemberRoleRequest(tenant_id=tenant, principal_id="olga", role="admin")),
        ):
            err = await refused(call)
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert err.details().startswith("LastOwnerRequired: ")

        for call in (
            adam.membership.ChangeMemberRole(pb.ChangeMemberRoleRequest(tenant_id=tenant, principal_id="adam", role="owner")),
            adam.membership.InviteMember(pb.InviteMemberRequest(tenant_id=tenant, principal_id="eve", role="owner")),
            adam.membership.RemoveMember(pb.RemoveMemberRequest(tenant_id=tenant, principal_id="olga")),
        ):
            assert (await refused(call)).code() == grpc.StatusCode.PERMISSION_DENIED

        err = await refused(
            olga.membership.InviteMember(pb.InviteMemberRequest(tenant_id=tenant, principal_id="adam", role="agent"))
        )
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and err.details().startswith("AlreadyMember: ")

        # With a second owner the first may step down.
        await olga.membership.ChangeMemberRole(pb.ChangeMemberRoleRequest(tenant_id=tenant, principal_id="adam", role="owner"))
        await olga.membership.ChangeMemberRole(pb.ChangeMemberRoleRequest(tenant_id=tenant, principal_id="olga", role="viewer"))
        members = await adam.query.ListMembers(pb.ListMembersRequest(tenant_id=tenant))
        assert {(m.principal_id, m.role) for m in members.members} == {("adam", "owner"), ("olga", "viewer")}


async def test_a_member_of_one_tenant_can_neither_read_nor_change_another_and_strangers_are_unauthenticated(running):
    settings = running.settings
    a, b, missing = slug(), slug(), slug()
    await member_of(running, a, "alice", "owner")
    await member_of(running, b, "bert", "owner")
    await member_of(running, b, "bob", "viewer")
    denied = grpc.StatusCode.PERMISSION_DENIED
    async with Caller(settings, "alice") as alice:
        for tenant in (b, missing):  # another tenant and no tenant look the same
            calls = {
                "GetTenant": alice.query.GetTenant(pb.GetTenantRequest(tenant_id=tenant)),
                "ListMembers": alice.query.ListMembers(pb.ListMembersRequest(tenant_id=tenant)),
                "GetMyRole": alice.query.GetMyRole(pb.GetMyRoleRequest(tenant_id=tenant)),
                "ListInvitations": alice.query.ListInvitations(pb.ListInvitationsRequest(tenant_id=tenant)),
                "InviteMember": alice.membership.InviteMember(
                    pb.InviteMemberRequest(tenant_id=tenant, principal_id="alice", role="owner")
                ),
                "ChangeMemberRole": alice.membership.ChangeMemberRole(
                    pb.ChangeMemberRoleRequest(tenant_id=tenant, principal_id="bob", role="admin")
                ),
                "RemoveMember": alice.membership.RemoveMember(pb.RemoveMemberRequest(tenant_id=tenant, principal_id="bob")),
            }
            codes = {name: await code_of(call) for name, call in calls.items()}
            assert codes == dict.fromkeys(calls, denied), tenant
            # Accepting or leaving where one has nothing: NOT_FOUND, worded the same for both.
            not_invited = await refused(alice.membership.AcceptInvitation(pb.AcceptInvitationRequest(tenant_id=tenant)))
            assert not_invited.code() == grpc.StatusCode.NOT_FOUND
            assert not_invited.details() == f"no pending invitation for alice in tenant {tenant}"
            not_member = await refused(
                alice.membership.RemoveMember(pb.RemoveMemberRequest(tenant_id=tenant, principal_id="alice"))
            )
            assert not_member.code() == grpc.StatusCode.NOT_FOUND
        mine = await alice.query.ListMyTenants(pb.ListMyTenantsRequest())
        assert [(t.tenant_id, t.role) for t in mine.tenants] == [(a, "owner")]
        # Naming someone else where a platform principal would is refused too.
        err = await refused(alice.membership.AcceptInvitation(pb.AcceptInvitationRequest(tenant_id=a, principal_id="bob")))
        assert err.code() == denied
        err = await refused(alice.membership.CreateTenant(pb.CreateTenantRequest(name="X", owner_id="bob")))
        assert err.code() == denied
    members = await fetch(
        settings, settings.pg_schema("tenant"), "SELECT principal_id, role FROM memberships WHERE tenant_id = $1", b
    )
    assert {(r["principal_id"], r["role"]) for r in members} == {("bert", "owner"), ("bob", "viewer")}

    async with Caller(settings) as platform_caller:
        assert (
            await code_of(platform_caller.query.GetTenant(pb.GetTenantRequest(tenant_id=missing)))
        ) == grpc.StatusCode.NOT_FOUND
        err = await refused(platform_caller.query.ListMyTenants(pb.ListMyTenantsRequest()))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        for call, field in (
            (platform_caller.query.ListMembers(pb.ListMembersRequest(tenant_id=a, page_token="garbage")), "page_token"),
            (platform_caller.query.ListMembers(pb.ListMembersRequest(tenant_id=a, page_size=501)), "page_size"),
            (platform_caller.query.GetTenant(pb.GetTenantRequest()), "tenant_id"),
            (platform_caller.membership.CreateTenant(pb.CreateTenantRequest(tenant_id="Not A Slug", name="X")), "tenant_id"),
            (platform_caller.membership.CreateTenant(pb.CreateTenantRequest(name="X")), "owner_id"),
            (platform_caller.membership.CreateTenant(pb.CreateTenantRequest(name="", owner_id="o")), "name"),
            (
                platform_caller.membership.InviteMember(pb.InviteMemberRequest(tenant_id=a, principal_id="x", role="god")),
                "role",
            ),
            (platform_caller.membership.RemoveMember(pb.RemoveMemberRequest(tenant_id=a)), "principal_id"),
        ):
            err = await refused(call)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and field in err.details(), (field, err.details())

    for metadata in ((), bearer(mint_token(settings, "alice", ttl_s=-60)), bearer("not-a-token")):
        async with Caller(settings, metadata=metadata) as stranger:
            for call in (
                stranger.query.GetTenant(pb.GetTenantRequest(tenant_id=a)),
                stranger.query.ListMembers(pb.ListMembersRequest(tenant_id=a)),
                stranger.query.GetMyRole(pb.GetMyRoleRequest(tenant_id=a)),
                stranger.query.ListMyTenants(pb.ListMyTenantsRequest()),
                stranger.query.ListInvitations(pb.ListInvitationsRequest(tenant_id=a)),
                stranger.query.ListMyInvitations(pb.ListMyInvitationsRequest()),
                stranger.membership.CreateTenant(pb.CreateTenantRequest(name="X")),
                stranger.membership.InviteMember(pb.InviteMemberRequest(tenant_id=a, principal_id="x", role="viewer")),
                stranger.membership.AcceptInvitation(pb.AcceptInvitationRequest(tenant_id=a)),
                stranger.membership.ChangeMemberRole(pb.ChangeMemberRoleRequest(tenant_id=a, principal_id="x", role="viewer")),
                stranger.membership.RemoveMember(pb.RemoveMemberRequest(tenant_id=a, principal_id="x")),
            ):
                assert (await code_of(call)) == grpc.StatusCode.UNAUTHENTICATED


async def test_member_of_makes_real_memberships_and_sets_any_role_it_is_asked_for(platform):
    settings = platform.settings
    await member_of(platform, "tenant-a", "alice", "viewer")
    await member_of(platform, "tenant-a", "alice", "admin")
    await member_of(platform, "tenant-b", "bob", "owner")
    await member_of(platform, "tenant-b", "bob", "agent")  # the only owner steps down: a synthetic owner takes over
    rows = await fetch(
        settings, settings.pg_schema("tenant"), "SELECT tenant_id, principal_id, role FROM memberships ORDER BY 1, 2"
    )
    assert [tuple(r) for r in rows] == [
        ("tenant-a", "alice", "admin"),
        ("tenant-a", synthetic_owner("tenant-a"), "owner"),
        ("tenant-b", "bob", "agent"),
        ("tenant-b", synthetic_owner("tenant-b"), "owner"),
    ]


async def test_replaying_tenant_events_into_the_read_store_changes_nothing_and_order_is_kept(stack):
    """The mapping's SQL on a real PostgreSQL: applying the whole history twice,
    or an old event after newer ones, leaves the rows as one pass did."""
    story = Story()
    story.run(CreateTenant, name="Acme", owner_id="olga")
    story.run(InviteMember, actor="olga", principal_id="ann", role="agent")
    story.run(AcceptInvitation, actor="ann", principal_id="ann")
    story.run(ChangeMemberRole, principal_id="ann", role="admin")
    story.run(InviteMember, principal_id="bob", role="viewer")
    story.run(InviteMember, principal_id="cid", role="agent")
    story.run(RemoveMember, principal_id="cid")
    story.run(InviteMember, principal_id="dan", role="viewer")
    story.run(AcceptInvitation, principal_id="dan")
    story.run(RemoveMember, principal_id="dan")

    schema = f"tenant_replay_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(stack.pg_dsn)
    try:
        await migrate(conn, schema, PROJECTION.migrations)
        await conn.execute(f'SET search_path TO "{schema}"')

        async def run(records) -> dict[str, list[tuple]]:
            async with conn.transaction():
                for s in sorted(statements(records), key=lambda s: s.phase):
                    await conn.execute(s.sql, *s.args)
            return {
                "tenants": [tuple(r) for r in await conn.fetch("SELECT tenant_id, name, version, created_by FROM tenants")],
                "memberships": [tuple(r) for r in await conn.fetch("SELECT principal_id, role FROM memberships ORDER BY 1")],
                "invitations": [
                    tuple(r) for r in await conn.fetch("SELECT principal_id, role, invited_by FROM invitations ORDER BY 1")
                ],
            }

        once = await run(story.records)
        assert once == {
            "tenants": [("acme", "Acme", 11, "operator-cli")],
            "memberships": [("ann", "admin"), ("olga", "owner")],
            "invitations": [("bob", "viewer", "operator-cli")],
        }
        assert await run(story.records) == once
        assert await run(story.records[2:4]) == once  # ann's old invitation and joining: not resurrected
        assert await run(list(reversed(story.records))) == once
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
