"""The Tenant hub's channel registry on the real stack: an admin connects an account
over gRPC (TenantChannels), the account's events reach the `channel_accounts`
read store, the router's ResolveChannel answers platform principals only, a
second tenant cannot take the account (ChannelTaken, without learning who has it)
nor disconnect it (NOT_FOUND, like an account nobody connected), and each tenant
lists only its own accounts. A Facebook page is never connected this way
(ProofRequired: the connect flow of tests/integration/test_facebook_connect.py)."""

from __future__ import annotations

import uuid

import grpc
import pytest

from hubs.tenant.commands import channel_account_id
from schemas.protos import tenant_pb2 as pb
from schemas.protos import tenant_pb2_grpc
from tests.harness import bearer, channel, fetch, mint_token, read_topic
from tests.integration.tenancy import member_of

pytestmark = pytest.mark.integration


@pytest.fixture
async def running(platform):
    for role in ("processor", "projector", "grpc"):
        platform.start(role, "tenant", wait=False)
    for role in ("processor", "projector", "grpc"):
        platform.wait_healthy(f"tenant-{role}")
    return platform


class Caller:
    def __init__(self, settings, principal: str | None = None):
        self.channel = channel(settings, "tenant", bearer(mint_token(settings, principal)) if principal else None)
        self.query = tenant_pb2_grpc.TenantQueryStub(self.channel)
        self.channels = tenant_pb2_grpc.TenantChannelsStub(self.channel)

    async def __aenter__(self) -> Caller:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.channel.close()


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def test_a_connected_page_resolves_to_its_tenant_for_the_platform_only_and_no_other_tenant_can_take_it(running):
    settings = running.settings
    acme, globex = f"acme-{uuid.uuid4().hex[:6]}", f"globex-{uuid.uuid4().hex[:6]}"
    alice, bob, vera = "alice-admin", "bob-admin", "vera-viewer"
    await member_of(running, acme, alice, "admin")
    await member_of(running, globex, bob, "admin")
    await member_of(running, acme, vera, "viewer")
    page, other_page = "104857600123", "104857600456"
    resolve = pb.ResolveChannelRequest(channel="telegram", account_id=page)

    async with Caller(settings, alice) as a, Caller(settings, bob) as b, Caller(settings, vera) as v, Caller(settings) as router:
        assert (await refused(router.query.ResolveChannel(resolve))).code() == grpc.StatusCode.NOT_FOUND

        viewer = await refused(
            v.channels.ConnectChannel(pb.ConnectChannelRequest(tenant_id=acme, channel="telegram", account_id=page))
        )
        assert viewer.code() == grpc.StatusCode.PERMISSION_DENIED

        connected = await a.channels.ConnectChannel(pb.ConnectChannelRequest(tenant_id=acme, channel="telegram", account_id=page))
        assert (connected.version, connected.projected, connected.tenant_id) == (1, True, acme)

        found = await router.query.ResolveChannel(resolve)
        assert (found.tenant_id, found.connected, found.channel, found.account_id) == (acme, True, "telegram", page)
        for member in (a, b, v):  # members of tenants are not the platform, whatever their role
            assert (await refused(member.query.ResolveChannel(resolve))).code() == grpc.StatusCode.PERMISSION_DENIED

        taken = await refused(
            b.channels.ConnectChannel(pb.ConnectChannelRequest(tenant_id=globex, channel="telegram", account_id=page))
        )
        assert taken.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert taken.details().startswith("ChannelTaken") and acme not in taken.details()
        not_yours = await refused(
            b.channels.DisconnectChannel(pb.DisconnectChannelRequest(tenant_id=globex, channel="telegram", account_id=page))
        )
        nobodys = await refused(
            b.channels.DisconnectChannel(pb.DisconnectChannelRequest(tenant_id=globex, channel="telegram", account_id=other_page))
        )
        assert not_yours.code() == nobodys.code() == grpc.StatusCode.NOT_FOUND
        assert not_yours.details().replace(page, "P") == nobodys.details().replace(other_page, "P")
        cross = await refused(
            b.channels.ConnectChannel(pb.ConnectChannelRequest(tenant_id=acme, channel="telegram", account_id=other_page))
        )
        assert cross.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (
            await refused(b.query.ListChannels(pb.ListChannelsRequest(tenant_id=acme)))
        ).code() == grpc.StatusCode.PERMISSION_DENIED

        again = await refused(
            a.channels.ConnectChannel(pb.ConnectChannelRequest(tenant_id=acme, channel="telegram", account_id=page))
        )
        assert again.details().startswith("AlreadyConnected")
        bad = await refused(
            a.channels.ConnectChannel(pb.ConnectChannelRequest(tenant_id=acme, channel="Face book", account_id=page))
        )
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and "channel" in bad.details()

        await a.channels.ConnectChannel(pb.ConnectChannelRequest(tenant_id=acme, channel="instagram", account_id=page))
        listed = await v.query.ListChannels(pb.ListChannelsRequest(tenant_id=acme, page_size=1))
        rest = await v.query.ListChannels(pb.ListChannelsRequest(tenant_id=acme, page_token=listed.next_page_token))
        assert [(c.channel, c.account_id) for c in [*listed.channels, *rest.channels]] == [
            ("instagram", page),
            ("telegram", page),
        ]
        assert rest.next_page_token == ""
        assert (await b.query.ListChannels(pb.ListChannelsRequest(tenant_id=globex))).channels == []

        gone = await a.channels.DisconnectChannel(
            pb.DisconnectChannelRequest(tenant_id=acme, channel="telegram", account_id=page, reason="page unpublished")
        )
        assert gone.version == 2 and gone.projected
        found = await router.query.ResolveChannel(resolve)
        assert (found.tenant_id, found.connected) == (acme, False)

    rows = await fetch(settings, settings.pg_schema("tenant"), "SELECT * FROM channel_accounts ORDER BY channel")
    assert [(r["channel"], r["tenant_id"], r["connected"], r["version"]) for r in rows] == [
        ("instagram", acme, True, 1),
        ("telegram", acme, False, 2),
    ]
    events = [
        r
        for r in await read_topic(settings, settings.topic("tenant.events"))
        if r.key == channel_account_id("telegram", page).encode()
    ]
    assert [dict(r.headers)["event_type"].decode() for r in events] == [
        "poseidon.tenant.ChannelConnected",
        "poseidon.tenant.ChannelDisconnected",
    ]
    assert {dict(r.headers)["tenant_id"].decode() for r in events} == {acme}


async def test_a_facebook_page_is_never_connected_without_proof_of_control(running):
    settings = running.settings
    acme = f"acme-{uuid.uuid4().hex[:6]}"
    await member_of(running, acme, "alice-admin", "admin")

    async with Caller(settings, "alice-admin") as a:
        plain = await refused(
            a.channels.ConnectChannel(pb.ConnectChannelRequest(tenant_id=acme, channel="facebook", account_id="104857600777"))
        )
        listed = await a.query.ListChannels(pb.ListChannelsRequest(tenant_id=acme))

    assert plain.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert plain.details().startswith("ProofRequired") and "StartFacebookConnect" in plain.details()
    assert listed.channels == []
