"""The Config hub end to end on the real stack: SetValue over gRPC → command →
Avro events on Kafka → the config read store → effective values now and at a past
moment; the scope rules enforced on the server (tenant admins for their tenant,
platform principals for global and environment); tenant isolation on every
method — another tenant's override never shows up in an answer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hubs.config.aggregate import PLATFORM_TENANT, entry_id
from hubs.config.commands import SetConfigValue, UnsetConfigValue
from infra import tls
from infra.migrations import migrate
from poseidon import bootstrap
from projections.config import PROJECTION
from schemas.protos import config_pb2 as pb
from schemas.protos import config_pb2_grpc
from tests.harness import bearer, channel, eventually, mint_token, read_topic
from tests.integration.tenancy import member_of
from tests.unit.test_config_mapping import Story

pytestmark = pytest.mark.integration

GLOBAL, ENVIRONMENT, TENANT = pb.SCOPE_KIND_GLOBAL, pb.SCOPE_KIND_ENVIRONMENT, pb.SCOPE_KIND_TENANT
KEY = "bot.greeting"


@pytest.fixture
async def running(platform):
    for role in ("processor", "projector", "grpc"):
        platform.start(role, "config", wait=False)
    for role in ("processor", "projector", "grpc"):
        platform.wait_healthy(f"config-{role}")
    return platform


class Caller:
    """The Config service as one principal sees it (None: a platform principal;
    metadata=() sends no token at all)."""

    def __init__(self, settings, principal: str | None = None, metadata=None):
        if metadata is None and principal is not None:
            metadata = bearer(mint_token(settings, principal))
        self.channel = channel(settings, "config", metadata)
        self.config = config_pb2_grpc.ConfigServiceStub(self.channel)

    async def __aenter__(self) -> config_pb2_grpc.ConfigServiceStub:
        return self.config

    async def __aexit__(self, *exc) -> None:
        await self.channel.close()


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def effective_when(config, tenant: str, environment: str, key: str, check):
    """The effective value once the read store shows what `check` expects."""

    async def probe():
        try:
            reply = await config.GetEffectiveValue(
                pb.GetEffectiveValueRequest(tenant_id=tenant, environment=environment, key=key)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise
        return reply if check(reply) else None

    return await eventually(probe)


def ts(dt: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(dt)
    return stamp


def slug() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


async def test_a_global_value_overridden_for_one_tenant_resolves_now_and_as_it_was_before_the_override(running):
    settings = running.settings
    tenant_a, tenant_b = slug(), slug()
    async with Caller(settings) as platform:
        glob = await platform.SetValue(pb.SetValueRequest(scope_kind=GLOBAL, key=KEY, value_json='{"text": "Hello"}'))
        env = await platform.SetValue(
            pb.SetValueRequest(scope_kind=ENVIRONMENT, scope_id="production", key="bot.typing_delay_ms", value_json="800")
        )
        assert (glob.version, glob.changed, env.version) == (1, True, 1)
        assert glob.entry_id == entry_id("global", "", KEY)

        before = await effective_when(platform, tenant_a, "production", KEY, lambda r: r.version == 1)
        assert (before.value_json, before.source_scope, before.source_scope_id) == ('{"text":"Hello"}', GLOBAL, "")

        override_a = await platform.SetValue(
            pb.SetValueRequest(scope_kind=TENANT, scope_id=tenant_a, key=KEY, value_json='{"text": "Hi from A"}')
        )
        await platform.SetValue(pb.SetValueRequest(scope_kind=TENANT, scope_id=tenant_b, key=KEY, value_json='{"text": "B"}'))
        await platform.SetValue(pb.SetValueRequest(scope_kind=TENANT, scope_id=tenant_b, key="bot.secret", value_json='"b-only"'))
        assert override_a.version == 1 and override_a.entry_id == entry_id("tenant", tenant_a, KEY)

        now = await effective_when(platform, tenant_a, "production", KEY, lambda r: r.source_scope == TENANT)
        assert (now.value_json, now.source_scope_id, now.version) == ('{"text":"Hi from A"}', tenant_a, 1)
        await effective_when(platform, tenant_b, "", "bot.secret", lambda r: True)

        # Tenant B's overrides never reach tenant A's answers, even for a platform caller.
        listed = await platform.ListEffective(
            pb.ListEffectiveRequest(tenant_id=tenant_a, environment="production", prefix="bot.")
        )
        assert [(v.key, v.value_json, v.source_scope) for v in listed.values] == [
            (KEY, '{"text":"Hi from A"}', TENANT),
            ("bot.typing_delay_ms", "800", ENVIRONMENT),
        ]
        assert listed.next_page_token == ""
        err = await refused(platform.GetEffectiveValue(pb.GetEffectiveValueRequest(tenant_id=tenant_a, key="bot.secret")))
        assert err.code() == grpc.StatusCode.NOT_FOUND
        # Without the environment, its values do not apply.
        err = await refused(
            platform.GetEffectiveValue(pb.GetEffectiveValueRequest(tenant_id=tenant_a, key="bot.typing_delay_ms"))
        )
        assert err.code() == grpc.StatusCode.NOT_FOUND

        # The past, reconstructed from the history: before the override, and before anything.
        just_before = now.changed_at.ToDatetime(tzinfo=UTC) - timedelta(milliseconds=1)
        past = await platform.GetValueAt(
            pb.GetValueAtRequest(tenant_id=tenant_a, environment="production", key=KEY, at=ts(just_before))
        )
        assert (past.value_json, past.source_scope, past.version) == ('{"text":"Hello"}', GLOBAL, 1)
        at_override = await platform.GetValueAt(pb.GetValueAtRequest(tenant_id=tenant_a, key=KEY, at=now.changed_at))
        assert at_override.source_scope == TENANT
        before_all = before.changed_at.ToDatetime(tzinfo=UTC) - timedelta(milliseconds=1)
        err = await refused(platform.GetValueAt(pb.GetValueAtRequest(tenant_id=tenant_a, key=KEY, at=ts(before_all))))
        assert err.code() == grpc.StatusCode.NOT_FOUND

        # Unset the override: the global value is in effect again; the history keeps both.
        unset = await platform.UnsetValue(pb.UnsetValueRequest(scope_kind=TENANT, scope_id=tenant_a, key=KEY))
        assert unset.version == 2
        again = await effective_when(platform, tenant_a, "", KEY, lambda r: r.source_scope == GLOBAL)
        assert again.value_json == '{"text":"Hello"}'
        during = await platform.GetValueAt(pb.GetValueAtRequest(tenant_id=tenant_a, key=KEY, at=now.changed_at))
        assert during.value_json == '{"text":"Hi from A"}'

        # The same value again changes nothing; rules the hub enforces come back as FAILED_PRECONDITION.
        same = await platform.SetValue(pb.SetValueRequest(scope_kind=GLOBAL, key=KEY, value_json='{"text":"Hello"}'))
        assert (same.version, same.changed) == (1, False)
        err = await refused(platform.UnsetValue(pb.UnsetValueRequest(scope_kind=TENANT, scope_id=tenant_a, key=KEY)))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "ConfigValueNotSet" in err.details()
        err = await refused(platform.SetValue(pb.SetValueRequest(scope_kind=GLOBAL, key=KEY, value_json="1", expected_version=0)))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "VersionConflict" in err.details()
        # A resent request id is answered with its first outcome, not applied twice.
        first = await platform.SetValue(
            pb.SetValueRequest(scope_kind=GLOBAL, key="bot.mood", value_json='"calm"', request_id="r-1")
        )
        resent = await platform.SetValue(
            pb.SetValueRequest(scope_kind=GLOBAL, key="bot.mood", value_json='"calm"', request_id="r-1")
        )
        assert (first.version, first.changed) == (resent.version, resent.changed) == (1, True)

    # The log: every change an Avro event keyed by its entry, owned by the scope's tenant, versions contiguous.
    codec = bootstrap.codec(settings)
    events = [codec.decode(r.value) for r in await read_topic(settings, settings.topic("config.events"))]
    by_entry: dict[str, list] = {}
    for e in events:
        by_entry.setdefault(e.record["envelope"]["aggregate_id"], []).append(e)
    override = by_entry[entry_id("tenant", tenant_a, KEY)]
    assert [e.name for e in override] == ["poseidon.config.ConfigValueSet", "poseidon.config.ConfigValueUnset"]
    assert [e.record["envelope"]["aggregate_version"] for e in override] == [1, 2]
    assert {e.record["envelope"]["tenant_id"] for e in override} == {tenant_a}
    assert {e.record["envelope"]["tenant_id"] for e in by_entry[entry_id("global", "", KEY)]} == {PLATFORM_TENANT}
    assert len(by_entry[entry_id("global", "", "bot.mood")]) == 1


async def test_tenants_see_only_their_own_scope_and_change_only_what_their_role_allows(running):
    settings = running.settings
    tenant_a, tenant_b = slug(), slug()
    alice, bob, vera = (str(uuid.uuid4()) for _ in range(3))
    await member_of(running, tenant_a, alice, "admin")
    await member_of(running, tenant_a, vera, "viewer")
    await member_of(running, tenant_b, bob, "admin")

    async with Caller(settings, alice) as a, Caller(settings, bob) as b, Caller(settings, vera) as viewer:
        async with Caller(settings) as platform:
            await platform.SetValue(pb.SetValueRequest(scope_kind=GLOBAL, key=KEY, value_json='"global"'))
        # Tenant admins set their own tenant's values through the service.
        set_a = await a.SetValue(pb.SetValueRequest(scope_kind=TENANT, scope_id=tenant_a, key=KEY, value_json='"from A"'))
        set_b = await b.SetValue(pb.SetValueRequest(scope_kind=TENANT, scope_id=tenant_b, key=KEY, value_json='"from B"'))
        await b.SetValue(pb.SetValueRequest(scope_kind=TENANT, scope_id=tenant_b, key="bot.only_b", value_json="1"))
        assert set_a.version == set_b.version == 1
        mine = await effective_when(viewer, tenant_a, "", KEY, lambda r: r.source_scope == TENANT)
        assert mine.value_json == '"from A"'  # a viewer reads its tenant's values
        await effective_when(b, tenant_b, "", "bot.only_b", lambda r: True)
        # Tenant B's override never leaks into tenant A's answers.
        listed = await a.ListEffective(pb.ListEffectiveRequest(tenant_id=tenant_a))
        assert [(v.key, v.value_json) for v in listed.values] == [(KEY, '"from A"')]
        err = await refused(a.GetEffectiveValue(pb.GetEffectiveValueRequest(tenant_id=tenant_a, key="bot.only_b")))
        assert err.code() == grpc.StatusCode.NOT_FOUND

        # Asking about tenant B, whatever the method, is refused for a member of A only.
        now = ts(datetime.now(UTC))
        for call in (
            a.GetEffectiveValue(pb.GetEffectiveValueRequest(tenant_id=tenant_b, key=KEY)),
            a.ListEffective(pb.ListEffectiveRequest(tenant_id=tenant_b)),
            a.GetValueAt(pb.GetValueAtRequest(tenant_id=tenant_b, key=KEY, at=now)),
            a.SetValue(pb.SetValueRequest(scope_kind=TENANT, scope_id=tenant_b, key=KEY, value_json='"hijack"')),
            a.UnsetValue(pb.UnsetValueRequest(scope_kind=TENANT, scope_id=tenant_b, key=KEY)),
            # A tenant that does not exist looks exactly the same.
            a.GetEffectiveValue(pb.GetEffectiveValueRequest(tenant_id=slug(), key=KEY)),
        ):
            assert (await refused(call)).code() == grpc.StatusCode.PERMISSION_DENIED

        # Roles: a viewer cannot change values; a tenant admin cannot touch global or environment values.
        for call in (
            viewer.SetValue(pb.SetValueRequest(scope_kind=TENANT, scope_id=tenant_a, key=KEY, value_json='"v"')),
            viewer.UnsetValue(pb.UnsetValueRequest(scope_kind=TENANT, scope_id=tenant_a, key=KEY)),
            a.SetValue(pb.SetValueRequest(scope_kind=GLOBAL, key=KEY, value_json='"mine now"')),
            a.SetValue(pb.SetValueRequest(scope_kind=ENVIRONMENT, scope_id="production", key=KEY, value_json='"x"')),
            a.UnsetValue(pb.UnsetValueRequest(scope_kind=GLOBAL, key=KEY)),
        ):
            assert (await refused(call)).code() == grpc.StatusCode.PERMISSION_DENIED

        # Bad arguments name the field.
        for call, field in (
            (a.GetEffectiveValue(pb.GetEffectiveValueRequest(tenant_id=tenant_a, key="Not.Valid")), "key"),
            (a.GetEffectiveValue(pb.GetEffectiveValueRequest(tenant_id="", key=KEY)), "tenant_id"),
            (a.GetEffectiveValue(pb.GetEffectiveValueRequest(tenant_id=tenant_a, environment="Prod!", key=KEY)), "environment"),
            (a.ListEffective(pb.ListEffectiveRequest(tenant_id=tenant_a, page_token="garbage")), "page_token"),
            (a.ListEffective(pb.ListEffectiveRequest(tenant_id=tenant_a, page_size=501)), "page_size"),
            (a.ListEffective(pb.ListEffectiveRequest(tenant_id=tenant_a, prefix="Bot")), "prefix"),
            (a.GetValueAt(pb.GetValueAtRequest(tenant_id=tenant_a, key=KEY)), "at"),
            (a.GetValueAt(pb.GetValueAtRequest(tenant_id=tenant_a, key=KEY, at=Timestamp(seconds=10**12))), "at is not a valid"),
            (a.SetValue(pb.SetValueRequest(scope_kind=TENANT, scope_id=tenant_a, key=KEY, value_json="{oops")), "value_json"),
            (a.SetValue(pb.SetValueRequest(scope_id=tenant_a, key=KEY, value_json="1")), "scope_kind"),
            (a.SetValue(pb.SetValueRequest(scope_kind=GLOBAL, scope_id="x", key=KEY, value_json="1")), "scope_id"),
        ):
            err = await refused(call)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, err.details())
            assert field in err.details()

    # Nothing of tenant B changed: B's value is still B's.
    async with Caller(settings, bob) as b:
        still = await b.GetEffectiveValue(pb.GetEffectiveValueRequest(tenant_id=tenant_b, key=KEY))
        assert (still.value_json, still.version) == ('"from B"', 1)

    # No token, a forged one, an expired one: UNAUTHENTICATED on every method.
    forged = mint_token(settings, alice)[:-4] + "AAAA"
    for metadata in ((), bearer(forged), bearer(mint_token(settings, alice, ttl_s=-60))):
        async with Caller(settings, metadata=metadata) as anon:
            for call in (
                anon.GetEffectiveValue(pb.GetEffectiveValueRequest(tenant_id=tenant_a, key=KEY)),
                anon.ListEffective(pb.ListEffectiveRequest(tenant_id=tenant_a)),
                anon.GetValueAt(pb.GetValueAtRequest(tenant_id=tenant_a, key=KEY, at=ts(datetime.now(UTC)))),
                anon.SetValue(pb.SetValueRequest(scope_kind=TENANT, scope_id=tenant_a, key=KEY, value_json="1")),
                anon.UnsetValue(pb.UnsetValueRequest(scope_kind=TENANT, scope_id=tenant_a, key=KEY)),
            ):
                assert (await refused(call)).code() == grpc.StatusCode.UNAUTHENTICATED

    # Health and reflection answer without a token.
    async with tls.channel(settings, f"127.0.0.1:{settings.grpc_port('config')}") as ch:
        reply = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="poseidon.config.v1.ConfigService")
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        responses = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        async for response in responses:
            assert "poseidon.config.v1.ConfigService" in {s.name for s in response.list_services_response.service}
            break


async def test_the_projection_statements_are_idempotent_and_order_proof_in_postgresql(namespace):
    """Replays and out-of-order batches cannot move a value backwards or double a history row."""
    schema = namespace.pg_schema("config")
    conn = await asyncpg.connect(namespace.pg_dsn)
    try:
        await migrate(conn, schema, PROJECTION.migrations)
        await conn.execute(f'SET search_path TO "{schema}"')
        story = Story("tenant", "tenant-a", "bot.greeting")
        events = [story.do(SetConfigValue, '"one"'), story.do(SetConfigValue, '"two"'), story.do(UnsetConfigValue)]
        batches = [PROJECTION.apply(*e) for e in events]
        for statements in (*batches, *reversed(batches), *batches):
            for s in sorted(statements, key=lambda s: s.phase):
                await conn.execute(s.sql, *s.args)
        current = await conn.fetch("SELECT value_json, version FROM config_values")
        history = await conn.fetch("SELECT version, change, value_json FROM config_history ORDER BY version")
    finally:
        await conn.close()
    assert [tuple(r) for r in current] == [(None, 3)]
    assert [tuple(r) for r in history] == [(1, "set", '"one"'), (2, "set", '"two"'), (3, "unset", None)]
