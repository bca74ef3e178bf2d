"""The Billing hub end to end on the real stack: the billing provider's commands
(through the CLI ingestion verbs and the command client) → Avro events → the
billing read store → gRPC answers; a command from any other actor is refused and
changes nothing; every query method refuses other tenants' members and callers
without a valid token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hubs.billing.commands import BILLING_PROVIDER, ApplyEntitlement, CancelEntitlement, ReportUsage, entitlement_id
from infra import tls
from infra.command_client import CommandClient, new_meta
from poseidon import bootstrap
from schemas.protos import billing_pb2, billing_pb2_grpc
from tests.harness import bearer, channel, eventually, mint_token, read_topic
from tests.integration.tenancy import member_of

pytestmark = pytest.mark.integration

TENANT = "tenant-a"
OTHER_TENANT = "tenant-b"
NOW = datetime.now(UTC).replace(microsecond=0)
PERIOD = (NOW - timedelta(days=1), NOW + timedelta(days=29))
Reason = billing_pb2.Reason


async def start_billing(platform) -> None:
    for role in ("processor", "projector", "grpc"):
        platform.start(role, "billing", wait=False)
    for role in ("processor", "projector", "grpc"):
        platform.wait_healthy(f"billing-{role}")


def stub(settings, metadata=None):
    ch = channel(settings, "billing", metadata)
    return ch, billing_pb2_grpc.BillingQueryStub(ch)


def provider(tenant: str, actor: str = BILLING_PROVIDER):
    return new_meta(entitlement_id(tenant), tenant, actor=actor)


def apply(tenant: str, plan="pro", quota=1000, period=PERIOD, features=("webhooks",), actor=BILLING_PROVIDER):
    return ApplyEntitlement(
        provider(tenant, actor), plan=plan, message_quota=quota, period_start=period[0], period_end=period[1], features=features
    )


async def entitlement_at(settings, tenant: str, version: int) -> billing_pb2.Entitlement:
    ch, billing = stub(settings)
    async with ch:

        async def projected():
            try:
                reply = await billing.GetEntitlement(billing_pb2.GetEntitlementRequest(tenant_id=tenant))
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return None
                raise
            return reply if reply.version >= version else None

        return await eventually(projected)


async def test_the_providers_commands_reach_the_projection_and_the_grpc_answers(platform):
    settings = platform.settings
    await start_billing(platform)
    eid = entitlement_id(TENANT)

    # The provider's ingestion entry: the CLI verb, as the billing provider.
    cli = platform.run_cli(
        "billing", "apply-entitlement", "--entitlement", eid, "--tenant", TENANT, "--actor", BILLING_PROVIDER,
        "--plan", "pro", "--message-quota", "1000", "--period-start", PERIOD[0].isoformat(),
        "--period-end", PERIOD[1].isoformat(), "--features", "webhooks,botpress",
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr + cli.stdout
    assert '"accepted": true' in cli.stdout

    codec = bootstrap.codec(settings)
    async with CommandClient(settings, codec, [bootstrap.hub("billing")]) as client:
        usage = [await client.send(ReportUsage(provider(TENANT), count=n, period_start=PERIOD[0])) for n in (250, 150)]
        assert [(r.accepted, r.version) for r in usage] == [(True, 2), (True, 3)]

        reply = await entitlement_at(settings, TENANT, 3)
        assert (reply.tenant_id, reply.entitlement_id, reply.plan, reply.status) == (TENANT, eid, "pro", "active")
        assert (reply.message_quota, reply.used, reply.remaining, reply.reason) == (1000, 400, 600, Reason.ENTITLED)
        assert list(reply.features) == ["botpress", "webhooks"]
        assert reply.period_start.ToDatetime(UTC) == PERIOD[0] and reply.period_end.ToDatetime(UTC) == PERIOD[1]

        ch, billing = stub(settings)
        async with ch:
            check = await billing.CheckEntitlement(billing_pb2.CheckEntitlementRequest(tenant_id=TENANT, feature="botpress"))
            assert (check.entitled, check.reason) == (True, Reason.ENTITLED)
            check = await billing.CheckEntitlement(billing_pb2.CheckEntitlementRequest(tenant_id=TENANT, feature="sso"))
            assert (check.entitled, check.reason) == (False, Reason.FEATURE_NOT_IN_PLAN)
            quota = await billing.GetQuota(billing_pb2.GetQuotaRequest(tenant_id=TENANT))
            assert (quota.quota, quota.used, quota.remaining, quota.reason) == (1000, 400, 600, Reason.ENTITLED)

            # The provider cancels: nothing is entitled and nothing remains, the numbers are still told.
            cancelled = await client.send(CancelEntitlement(provider(TENANT), reason="payment_failed"))
            assert cancelled.accepted
            reply = await entitlement_at(settings, TENANT, 4)
            assert (reply.status, reply.cancel_reason, reply.remaining, reply.reason) == (
                "cancelled", "payment_failed", 0, Reason.CANCELLED,
            )  # fmt: skip
            check = await billing.CheckEntitlement(billing_pb2.CheckEntitlementRequest(tenant_id=TENANT, feature="botpress"))
            assert (check.entitled, check.reason) == (False, Reason.CANCELLED)
            quota = await billing.GetQuota(billing_pb2.GetQuotaRequest(tenant_id=TENANT))
            assert (quota.quota, quota.used, quota.remaining, quota.reason) == (1000, 400, 0, Reason.CANCELLED)

    events = [
        codec.decode(r.value) for r in await read_topic(settings, settings.topic("billing.events")) if r.key == eid.encode()
    ]
    assert [e.name.rsplit(".", 1)[1] for e in events] == [
        "EntitlementGranted",
        "UsageReported",
        "UsageReported",
        "EntitlementCancelled",
    ]
    assert {e.record["envelope"]["actor"] for e in events} == {BILLING_PROVIDER}
    assert {e.record["envelope"]["tenant_id"] for e in events} == {TENANT}

    # Discovery and health work as for every hub.
    async with tls.channel(settings, f"127.0.0.1:{settings.grpc_port('billing')}") as ch:
        health = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="poseidon.billing.v1.BillingQuery")
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        responses = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        async for response in responses:
            names = {s.name for s in response.list_services_response.service}
            break
        assert "poseidon.billing.v1.BillingQuery" in names


async def test_a_command_from_any_actor_but_the_billing_provider_is_refused_and_changes_nothing(platform):
    settings = platform.settings
    await start_billing(platform)
    codec = bootstrap.codec(settings)
    async with CommandClient(settings, codec, [bootstrap.hub("billing")]) as client:
        # No entitlement yet: a platform component cannot create one.
        refused = await client.send(apply(OTHER_TENANT, actor="tenant-admin"))
        assert (refused.accepted, refused.rejection, refused.event_ids) == (False, "NotBillingProvider", ())

        assert (await client.send(apply(TENANT, plan="pro", quota=1000))).accepted
        for command in (
            apply(TENANT, plan="enterprise", quota=10**9, features=("webhooks", "sso"), actor="operator-cli"),
            CancelEntitlement(provider(TENANT, actor="message-router"), reason="self-service"),
            ReportUsage(provider(TENANT, actor="message-router"), count=1000, period_start=PERIOD[0]),
        ):
            result = await client.send(command)
            assert (result.accepted, result.rejection, result.version, result.event_ids) == (False, "NotBillingProvider", 1, ())
            assert "billing-provider" in result.reason
        # A later provider command lands on version 2: nothing came in between.
        assert (await client.send(ReportUsage(provider(TENANT), count=10, period_start=PERIOD[0]))).version == 2

    reply = await entitlement_at(settings, TENANT, 2)
    assert (reply.plan, reply.message_quota, reply.status, reply.used, list(reply.features)) == (
        "pro",
        1000,
        "active",
        10,
        ["webhooks"],
    )
    ch, billing = stub(settings)
    async with ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await billing.GetEntitlement(billing_pb2.GetEntitlementRequest(tenant_id=OTHER_TENANT))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        check = await billing.CheckEntitlement(billing_pb2.CheckEntitlementRequest(tenant_id=OTHER_TENANT, feature="webhooks"))
        assert (check.entitled, check.reason) == (False, Reason.NO_ENTITLEMENT)
    events = await read_topic(settings, settings.topic("billing.events"))
    assert len(events) == 2


async def test_every_query_refuses_other_tenants_members_and_callers_without_a_valid_token(platform):
    settings = platform.settings
    await start_billing(platform)
    await member_of(platform, TENANT, "alice", "viewer")
    await member_of(platform, OTHER_TENANT, "bob", "owner")
    async with CommandClient(settings, bootstrap.codec(settings), [bootstrap.hub("billing")]) as client:
        for tenant in (TENANT, OTHER_TENANT):
            assert (await client.send(apply(tenant))).accepted
    await entitlement_at(settings, TENANT, 1)
    await entitlement_at(settings, OTHER_TENANT, 1)

    def calls(billing, tenant: str):
        return (
            lambda: billing.GetEntitlement(billing_pb2.GetEntitlementRequest(tenant_id=tenant)),
            lambda: billing.CheckEntitlement(billing_pb2.CheckEntitlementRequest(tenant_id=tenant, feature="webhooks")),
            lambda: billing.GetQuota(billing_pb2.GetQuotaRequest(tenant_id=tenant)),
        )

    # A viewer of tenant A reads tenant A on every method.
    ch, billing = stub(settings, bearer(mint_token(settings, "alice")))
    async with ch:
        replies = [await call() for call in calls(billing, TENANT)]
        assert [r.tenant_id for r in replies] == [TENANT] * 3
        # ...and is refused tenant B on every method, exactly like a tenant that does not exist.
        for tenant in (OTHER_TENANT, "no-such-tenant"):
            for call in calls(billing, tenant):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call()
                assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
                assert err.value.details() == "requires role viewer or higher in this tenant"
        # Bad arguments name the field.
        for request, field in (
            (billing.GetEntitlement(billing_pb2.GetEntitlementRequest()), "tenant_id"),
            (billing.GetQuota(billing_pb2.GetQuotaRequest()), "tenant_id"),
            (billing.CheckEntitlement(billing_pb2.CheckEntitlementRequest(tenant_id=TENANT, feature="Not A Feature")), "feature"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await request
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in err.value.details()

    # A platform-scope service principal (the Message Hub router) reads any tenant.
    ch, billing = stub(settings)
    async with ch:
        assert [(await call()).tenant_id for call in calls(billing, OTHER_TENANT)] == [OTHER_TENANT] * 3

    # No token, a forged one, an expired one: UNAUTHENTICATED on every method.
    for metadata, reason in (
        ((), "missing bearer token"),
        (bearer(mint_token(settings, "alice")[:-4] + "AAAA"), "invalid token"),
        (bearer(mint_token(settings, "alice", ttl_s=-60)), "token expired"),
    ):
        ch, billing = stub(settings, metadata)
        async with ch:
            for call in calls(billing, TENANT):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call()
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED and reason in err.value.details()
