"""The App hub end to end on the real stack: commands → Avro events (two aggregate
kinds on one topic) → the app read store → gRPC answers, including the routing
check the Message Hub will call; tenant isolation and authentication on every
method; health and reflection."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hubs.app.commands import RegisterApp, SetSubscriptionGuards, SubscribeApp, UnsubscribeApp, subscription_id
from infra import tls
from infra.command_client import CommandClient, new_meta
from poseidon import bootstrap
from schemas.protos import app_pb2 as pb
from schemas.protos import app_pb2_grpc
from tests.harness import bearer, channel, eventually, mint_token, read_topic
from tests.integration.tenancy import member_of

pytestmark = pytest.mark.integration

TENANT, OTHER = "tenant-a", "tenant-b"
SERVICE = "poseidon.app.v1.AppQuery"
PARIS_WEEKDAYS = {
    "timezone": "Europe/Paris",
    "windows": [{"day": d, "opens": "09:00", "closes": "18:00"} for d in ("mon", "tue", "wed", "thu", "fri")],
}


@pytest.fixture
async def running(platform):
    for role in ("processor", "projector", "grpc"):
        platform.start(role, "app", wait=False)
    for role in ("processor", "projector", "grpc"):
        platform.wait_healthy(f"app-{role}")
    codec = bootstrap.codec(platform.settings)
    async with CommandClient(platform.settings, codec, [bootstrap.hub("app")]) as client:
        yield platform, client, codec


def stub(settings, metadata=None):
    ch = channel(settings, "app", metadata)
    return ch, app_pb2_grpc.AppQueryStub(ch)


def ts(dt: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(dt)
    return t


async def register(client, tenant: str, name: str, visibility: str, channels=("messenger", "webchat")) -> str:
    app_id = str(uuid.uuid4())
    result = await client.send(
        RegisterApp(new_meta(app_id, tenant), name=name, kind="bot", channels=list(channels), visibility=visibility)
    )
    assert result.accepted, result
    return app_id


async def send(client, command):
    result = await client.send(command)
    assert result.accepted, result
    return result


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def subscription_at_version(query, tenant: str, app_id: str, version: int) -> pb.Subscription:
    async def check():
        try:
            reply = await query.GetSubscription(pb.GetSubscriptionRequest(tenant_id=tenant, app_id=app_id))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return reply if reply.version >= version else None

    return await eventually(check)


async def test_commands_travel_to_events_the_read_store_and_grpc_answers_including_the_routing_check(running):
    platform, client, codec = running
    settings = platform.settings
    first_party = await register(client, "platform", "Support bot", "public")
    own_private = await register(client, TENANT, "Our Odoo", "private", channels=("webchat",))
    others_private = await register(client, OTHER, "Their bot", "private")
    sub_id = subscription_id(TENANT, first_party)

    subscribed = await send(client, SubscribeApp(new_meta(sub_id, TENANT), app_id=first_party))
    guarded = await send(
        client,
        SetSubscriptionGuards(
            new_meta(sub_id, TENANT), app_id=first_party, channels=["messenger"], page_ids=["1001"], business_hours=PARIS_WEEKDAYS
        ),
    )
    twice = await client.send(SubscribeApp(new_meta(sub_id, TENANT), app_id=first_party))
    bad_zone = await client.send(
        SetSubscriptionGuards(
            new_meta(sub_id, TENANT),
            app_id=first_party,
            channels=[],
            page_ids=[],
            business_hours={"timezone": "Europe/Atlantis", "windows": PARIS_WEEKDAYS["windows"]},
        )
    )
    # Subscribing to another tenant's private app cannot be refused by the hub; routing refuses it.
    await send(client, SubscribeApp(new_meta(subscription_id(TENANT, others_private), TENANT), app_id=others_private))
    assert (subscribed.version, guarded.version) == (1, 2)
    assert (twice.accepted, twice.rejection) == (False, "AlreadySubscribed")
    assert (bad_zone.accepted, bad_zone.rejection) == (False, "InvalidCommand") and "business_hours.timezone" in bad_zone.reason

    records = [r for r in await read_topic(settings, settings.topic("app.events")) if r.key == sub_id.encode()]
    decoded = [codec.decode(r.value) for r in records]
    assert [d.name for d in decoded] == ["poseidon.app.AppSubscribed", "poseidon.app.SubscriptionGuardsSet"]
    assert {d.record["envelope"]["aggregate_id"] for d in decoded} == {sub_id}
    assert decoded[1].record["business_hours"]["timezone"] == "Europe/Paris"

    ch, query = stub(settings)
    async with ch:
        sub = await subscription_at_version(query, TENANT, first_party, 2)
        assert (sub.subscription_id, sub.active) == (sub_id, True)
        assert (list(sub.guards.channels), list(sub.guards.page_ids)) == (["messenger"], ["1001"])
        assert sub.guards.business_hours.timezone == "Europe/Paris"
        assert [(w.day, w.opens, w.closes) for w in sub.guards.business_hours.windows][0] == ("mon", "09:00", "18:00")

        app = await query.GetApp(pb.GetAppRequest(tenant_id=TENANT, app_id=first_party))
        assert (app.name, app.kind, list(app.channels), app.visibility) == (
            "Support bot",
            "bot",
            ["messenger", "webchat"],
            "public",
        )
        assert (app.owned, app.first_party, app.version) == (False, True, 1)
        mine = await query.GetApp(pb.GetAppRequest(tenant_id=TENANT, app_id=own_private))
        assert (mine.owned, mine.first_party, list(mine.channels)) == (True, False, ["webchat"])

        listed = await query.ListApps(pb.ListAppsRequest(tenant_id=TENANT, page_size=1))
        rest = await query.ListApps(pb.ListAppsRequest(tenant_id=TENANT, page_token=listed.next_page_token))
        assert {a.app_id for a in [*listed.apps, *rest.apps]} == {first_party, own_private}
        assert len(listed.apps) == 1 and rest.next_page_token == ""

        monday_10_paris = ts(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
        sunday_10_paris = ts(datetime(2026, 1, 4, 9, 0, tzinfo=UTC))

        async def check(app_id=first_party, channel="messenger", page_id="1001", at=monday_10_paris):
            return await query.CheckGuards(
                pb.CheckGuardsRequest(tenant_id=TENANT, app_id=app_id, channel=channel, page_id=page_id, at=at)
            )

        passed = await check()
        assert (passed.allowed, passed.rule) == (True, "GuardsPassed")
        assert "mon 10:00 Europe/Paris within mon 09:00-18:00" in passed.reason
        assert passed.at.ToDatetime(tzinfo=UTC) == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        assert [(d.allowed, d.rule) for d in (await check(at=sunday_10_paris), await check(page_id="2002"))] == [
            (False, "OutsideBusinessHours"),
            (False, "PageNotAllowed"),
        ]
        assert (await check(channel="webchat")).rule == "ChannelNotAllowed"
        assert (await check(app_id=others_private)).rule == "AppUnavailable"
        assert (await check(app_id=own_private)).rule == "NotSubscribed"
        err = await refused(check(channel="pigeon"))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "channel" in err.details()

        await send(client, UnsubscribeApp(new_meta(sub_id, TENANT), app_id=first_party))
        gone = await subscription_at_version(query, TENANT, first_party, 3)
        assert gone.active is False and list(gone.guards.channels) == ["messenger"]
        stopped = await check()
        assert (stopped.allowed, stopped.rule) == (False, "NotSubscribed")
        active = await query.ListSubscriptions(pb.ListSubscriptionsRequest(tenant_id=TENANT, active_only=True))
        every = await query.ListSubscriptions(pb.ListSubscriptionsRequest(tenant_id=TENANT))
        assert [s.app_id for s in active.subscriptions] == [others_private]
        assert {s.app_id for s in every.subscriptions} == {first_party, others_private}

    async with tls.channel(settings, f"127.0.0.1:{settings.grpc_port('app')}") as plain:
        health = health_pb2_grpc.HealthStub(plain)
        for service in ("", SERVICE):
            assert (
                await health.Check(health_pb2.HealthCheckRequest(service=service))
            ).status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(plain)
        async for response in reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])):
            assert SERVICE in {s.name for s in response.list_services_response.service}
            break


async def test_no_method_lets_another_tenant_read_or_infer_a_tenants_apps_and_subscriptions(running):
    platform, client, _ = running
    settings = platform.settings
    alice, bob = f"alice-{uuid.uuid4()}", f"bob-{uuid.uuid4()}"
    members = [member_of(platform, TENANT, alice, "viewer"), member_of(platform, OTHER, bob, "viewer")]
    for joining in members:
        await joining
    private_app = await register(client, TENANT, "Alice's private bot", "private")
    await send(client, SubscribeApp(new_meta(subscription_id(TENANT, private_app), TENANT), app_id=private_app))
    now = ts(datetime.now(UTC))

    ch, as_alice = stub(settings, bearer(mint_token(settings, alice)))
    async with ch:
        # The owner's viewer sees it all (and the projection has caught up).
        await subscription_at_version(as_alice, TENANT, private_app, 1)
        assert (await as_alice.GetApp(pb.GetAppRequest(tenant_id=TENANT, app_id=private_app))).owned
        decision = await as_alice.CheckGuards(
            pb.CheckGuardsRequest(tenant_id=TENANT, app_id=private_app, channel="messenger", page_id="1", at=now)
        )
        assert decision.allowed

    def asking_as(tenant: str):
        return [
            ("GetApp", lambda q: q.GetApp(pb.GetAppRequest(tenant_id=tenant, app_id=private_app))),
            ("ListApps", lambda q: q.ListApps(pb.ListAppsRequest(tenant_id=tenant))),
            ("GetSubscription", lambda q: q.GetSubscription(pb.GetSubscriptionRequest(tenant_id=tenant, app_id=private_app))),
            ("ListSubscriptions", lambda q: q.ListSubscriptions(pb.ListSubscriptionsRequest(tenant_id=tenant))),
            (
                "CheckGuards",
                lambda q: q.CheckGuards(
                    pb.CheckGuardsRequest(tenant_id=tenant, app_id=private_app, channel="messenger", page_id="1", at=now)
                ),
            ),
        ]

    ch, as_bob = stub(settings, bearer(mint_token(settings, bob)))
    async with ch:
        # Bob asking about tenant A: refused on every method, whatever the ids.
        for name, call in asking_as(TENANT):
            err = await refused(call(as_bob))
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED, name
        # Bob asking in his own tenant with A's ids: A's data is simply not there.
        assert (await refused(as_bob.GetApp(pb.GetAppRequest(tenant_id=OTHER, app_id=private_app)))).code() == (
            grpc.StatusCode.NOT_FOUND
        )
        missing = await refused(as_bob.GetApp(pb.GetAppRequest(tenant_id=OTHER, app_id=str(uuid.uuid4()))))
        assert missing.code() == grpc.StatusCode.NOT_FOUND
        assert (await refused(as_bob.GetSubscription(pb.GetSubscriptionRequest(tenant_id=OTHER, app_id=private_app)))).code() == (
            grpc.StatusCode.NOT_FOUND
        )
        assert list((await as_bob.ListApps(pb.ListAppsRequest(tenant_id=OTHER))).apps) == []
        assert list((await as_bob.ListSubscriptions(pb.ListSubscriptionsRequest(tenant_id=OTHER))).subscriptions) == []
        decision = await as_bob.CheckGuards(
            pb.CheckGuardsRequest(tenant_id=OTHER, app_id=private_app, channel="messenger", page_id="1", at=now)
        )
        assert (decision.allowed, decision.rule) == (False, "NotSubscribed")

    # A principal that is nobody's member, and callers without a valid token.
    for metadata, code in (
        (bearer(mint_token(settings, f"stranger-{uuid.uuid4()}")), grpc.StatusCode.PERMISSION_DENIED),
        ((), grpc.StatusCode.UNAUTHENTICATED),
        (bearer(mint_token(settings, alice, ttl_s=-60)), grpc.StatusCode.UNAUTHENTICATED),
        (bearer(mint_token(settings, alice)[:-4] + "AAAA"), grpc.StatusCode.UNAUTHENTICATED),
    ):
        ch, query = stub(settings, metadata)
        async with ch:
            for name, call in asking_as(TENANT):
                err = await refused(call(query))
                assert err.code() == code, (name, metadata)

    ch, query = stub(settings)
    async with ch:
        for request, field in (
            (query.GetApp(pb.GetAppRequest(tenant_id=TENANT, app_id="not-a-uuid")), "app_id"),
            (query.GetSubscription(pb.GetSubscriptionRequest(tenant_id="", app_id=private_app)), "tenant_id"),
            (query.ListApps(pb.ListAppsRequest(tenant_id=TENANT, page_token="garbage")), "page_token"),
            (query.ListSubscriptions(pb.ListSubscriptionsRequest(tenant_id=TENANT, page_size=501)), "page_size"),
        ):
            err = await refused(request)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and field in err.details()
