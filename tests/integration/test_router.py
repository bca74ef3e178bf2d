"""The Message Hub's router on the real stack: inbound items produced to
`ingress.inbound` are decided from the router's own projection of the Tenant,
App, Billing and Wallet hubs' events and recorded by the Message hub's processor — routed to the
subscribed bot, rejected for an unknown page or an unentitled tenant, one
decision for a webhook re-delivered ten times at once, a delivery receipt moving
our reply to delivered, garbage dead-lettered — with the correlation id of the
inbound item on every event; the decision records the log positions its facts
were read at, a page connected a moment before is routed at once, and the
Message hub's processor starts the inbound-message saga with the decision.
Processors run as the platform's processes; the projectors, gRPC servers and the
router run in this test's event loop (lean on a shared 2-core machine)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY

from hubs.app.commands import RegisterApp, SubscribeApp, subscription_id
from hubs.billing.commands import BILLING_PROVIDER, ApplyEntitlement, entitlement_id
from hubs.message.aggregate import conversation_id
from hubs.message.commands import RecordOutboundMessage, UpdateDeliveryStatus
from hubs.tenant.commands import ConnectChannel, CreateTenant, channel_account_id
from infra.command_client import CommandClient, new_meta
from infra.projector import Projector
from infra.topics import TopicSpec, ensure_topics
from poseidon import bootstrap, roles
from poseidon.roles import router as run_router
from schemas.codec import Codec
from schemas.protos import message_pb2, message_pb2_grpc
from tests.harness import channel, eventually, fetch, free_port, read_topic

pytestmark = pytest.mark.integration

ACME, GLOBEX = "acme", "globex"
PAGE, GLOBEX_PAGE, UNKNOWN_PAGE = "104857600123", "104857600456", "999000999"
NOW = datetime.now(UTC).replace(microsecond=0)
ROUTING_OF = """SELECT routing_rule, routed_app_id, routed_spoke FROM messages
WHERE tenant_id = $1 AND conversation_id = $2 AND message_id = $3 AND routing_rule <> ''"""
STATUS_OF = "SELECT status FROM messages WHERE tenant_id = $1 AND conversation_id = $2 AND message_id = $3"


def inbound(codec: Codec, kind: str = "message", *, account: str = PAGE, contact: str = "psid-1", message_id: str = "",
            text: str = "", **fields) -> tuple[bytes, bytes, str]:  # fmt: skip
    """(key, value, correlation id) of an InboundReceived as ingress produces it."""
    event_id = str(uuid.uuid4())
    correlation = f"webhook-{event_id[:8]}"
    key = f"facebook/{account}/{contact}"
    record = {
        "envelope": {
            "event_id": event_id, "event_type": "poseidon.ingress.InboundReceived", "aggregate_id": key,
            "aggregate_version": 0, "tenant_id": "", "correlation_id": correlation, "causation_id": "",
            "occurred_at": NOW, "actor": "ingress", "previous_hash": "",
        },
        "platform": "facebook", "kind": kind, "account_id": account, "contact_id": contact, "message_id": message_id,
        "text": text, "sent_at": NOW, "raw": "{}", **fields,
    }  # fmt: skip
    return key.encode(), codec.encode("poseidon.ingress.InboundReceived", record), correlation


@pytest.fixture
async def stack(platform):
    """Processors of the four hubs (subprocesses); their projectors and gRPC
    servers (tasks of this loop)."""
    settings = platform.settings.with_(ops_port=free_port())
    await ensure_topics(settings, [TopicSpec("ingress.inbound"), TopicSpec("ingress.inbound.dlq")])
    for hub in ("tenant", "app", "billing", "message"):
        platform.start("processor", hub, wait=False)
    codec = bootstrap.codec(settings)
    served = ("tenant", "app", "billing", "message")
    projectors = [asyncio.create_task(Projector(bootstrap.projection(h), settings, codec).run()) for h in served]
    servers = [await roles.start_grpc(h, settings) for h in served]
    for hub in ("tenant", "app", "billing", "message"):
        await asyncio.to_thread(platform.wait_healthy, f"{hub}-processor")
    hubs = [bootstrap.hub(h) for h in ("tenant", "app", "billing", "message")]
    async with CommandClient(settings, codec, hubs) as client:
        yield settings, codec, client
    for task in projectors:
        task.cancel()
    await asyncio.gather(*projectors, return_exceptions=True)
    for server in servers:
        await server.stop(grace=0)


async def given_a_tenant_with_a_connected_page_a_subscribed_bot_and_an_entitlement(settings, client: CommandClient) -> str:
    """acme: page connected, bot subscribed, entitled. globex: page connected, bot subscribed, never entitled."""
    app_id = str(uuid.uuid4())
    period = (NOW - timedelta(days=1), NOW + timedelta(days=30))
    commands = [
        CreateTenant(new_meta(ACME, ACME, actor="operator"), name="Acme", owner_id="olga"),
        CreateTenant(new_meta(GLOBEX, GLOBEX, actor="operator"), name="Globex", owner_id="gus"),
        ConnectChannel(new_meta(channel_account_id("facebook", PAGE), ACME), channel="facebook", account_id=PAGE),
        ConnectChannel(
            new_meta(channel_account_id("facebook", GLOBEX_PAGE), GLOBEX), channel="facebook", account_id=GLOBEX_PAGE
        ),
        RegisterApp(new_meta(app_id, "platform"), name="Support bot", kind="bot", channels=["messenger"], visibility="public"),
        SubscribeApp(new_meta(subscription_id(ACME, app_id), ACME), app_id=app_id),
        SubscribeApp(new_meta(subscription_id(GLOBEX, app_id), GLOBEX), app_id=app_id),
        ApplyEntitlement(
            new_meta(entitlement_id(ACME), ACME, actor=BILLING_PROVIDER), plan="pro", message_quota=1000,
            period_start=period[0], period_end=period[1], features=("messaging",),
        ),
    ]  # fmt: skip
    futures = [await client.submit(c) for c in commands]
    results = await asyncio.wait_for(asyncio.gather(*futures), 90)
    assert all(r.accepted for r in results), [(r.rejection, r.reason) for r in results if not r.accepted]

    async def projected() -> bool:
        counts = [
            await fetch(settings, settings.pg_schema("tenant"), "SELECT count(*) AS n FROM channel_accounts WHERE connected"),
            await fetch(settings, settings.pg_schema("app"), "SELECT count(*) AS n FROM subscriptions WHERE active"),
            await fetch(settings, settings.pg_schema("billing"), "SELECT count(*) AS n FROM entitlements"),
        ]
        return [c[0]["n"] for c in counts] == [2, 2, 1]

    await eventually(projected, timeout=60)
    return app_id


async def message_events(settings) -> list[tuple[str, dict]]:
    codec = bootstrap.codec(settings)
    out = []
    for record in await read_topic(settings, settings.topic("message.events")):
        decoded = codec.decode(record.value)
        out.append((decoded.name.rsplit(".", 1)[1], decoded.record))
    return out


async def _decision_of(settings, message_id: str) -> tuple[str, dict] | None:
    for name, record in await message_events(settings):
        if name in ("MessageRouted", "MessageRejected") and record["message_id"] == message_id:
            return name, record
    return None


async def test_the_router_decides_once_per_message_rejects_with_named_rules_and_applies_receipts(stack):
    settings, codec, client = stack
    app_id = await given_a_tenant_with_a_connected_page_a_subscribed_bot_and_an_entitlement(settings, client)
    router = asyncio.create_task(run_router(settings))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    topic = settings.topic("ingress.inbound")

    async def produce(key: bytes, value: bytes, *_):
        await producer.send_and_wait(topic, value, key=key)

    def duplicates() -> float:  # this process's counter: the router runs in it
        return REGISTRY.get_sample_value("poseidon_router_items_total", {"kind": "message", "outcome": "duplicate"}) or 0.0

    duplicates_before = duplicates()
    try:
        routed = inbound(
            codec,
            message_id="m_in_1",
            text="Where is my parcel?",
            attachments=[{"type": "image", "url": "https://cdn.example/p.jpg"}],
        )
        unknown = inbound(codec, account=UNKNOWN_PAGE, message_id="m_in_2", text="hello?")
        unentitled = inbound(codec, account=GLOBEX_PAGE, contact="psid-9", message_id="m_in_3", text="hi")
        redelivered = [inbound(codec, contact="psid-2", message_id="m_in_dup", text="once please") for _ in range(10)]
        for item in (routed, unknown, unentitled):
            await produce(*item)
        await asyncio.gather(*(produce(*item) for item in redelivered))  # the same webhook, ten times at once
        await producer.send_and_wait(topic, b"\x00not avro", key=b"facebook/x/y")

        def decisions(events):
            return {r["message_id"]: (name, r) for name, r in events if name in ("MessageRouted", "MessageRejected")}

        async def decided():
            events = await message_events(settings)
            return events if {"m_in_1", "m_in_2", "m_in_3", "m_in_dup"} <= set(decisions(events)) else None

        await eventually(decided, timeout=90)

        async def all_redeliveries_handled():
            return duplicates() - duplicates_before == 9

        await eventually(all_redeliveries_handled, timeout=60)
        events = await message_events(settings)
        by_message = decisions(events)

        name, record = by_message["m_in_1"]
        assert name == "MessageRouted"
        assert (record["rule"], record["app_id"], record["spoke"]) == ("Routed", app_id, "botpress")
        assert (record["channel"], record["channel_account_id"], record["contact_id"]) == ("facebook", PAGE, "psid-1")
        assert record["attachments"] == [{"type": "image", "url": "https://cdn.example/p.jpg"}]
        assert record["facts"]["tenant"] == ACME and record["facts"]["entitlement"] == "ENTITLED"
        assert record["facts"]["wallet"] == "", "acme opened no wallet: its saga's reservation is refused, visibly"
        positions = {k: v for k, v in record["facts"].items() if k.startswith("positions.")}
        assert set(positions) == {f"positions.{t}.events" for t in ("tenant", "app", "billing", "wallet")}
        assert sum(int(o) for o in positions["positions.tenant.events"].split()) >= 4, "read past the four setup events"
        # The Message hub's processor started the inbound-message saga with the decision, in its transaction.
        [routed_event] = [
            r for r in await read_topic(settings, settings.topic("message.events"))
            if dict(r.headers).get("event_type", b"").endswith(b"MessageRouted")
            and codec.decode(r.value).record["message_id"] == "m_in_1"
        ]  # fmt: skip
        assert dict(routed_event.headers).get("dispatched") == b"1"
        starts = [codec.decode(r.value).record for r in await read_topic(settings, settings.topic("saga.commands"))]
        started = [json.loads(c["input_json"]) for c in starts if c["saga_type"] == "inbound_message"]
        assert [(b["message_id"], b["tenant_id"]) for b in started if b["message_id"] == "m_in_1"] == [("m_in_1", ACME)]
        assert record["envelope"]["tenant_id"] == ACME
        assert record["envelope"]["aggregate_id"] == conversation_id(ACME, "facebook", PAGE, "psid-1")
        assert record["envelope"]["correlation_id"] == routed[2], "the inbound item's correlation id travels on"

        name, record = by_message["m_in_2"]
        assert (name, record["rule"], record["envelope"]["tenant_id"]) == ("MessageRejected", "UnknownChannelAccount", "platform")

        name, record = by_message["m_in_3"]
        assert (name, record["rule"], record["envelope"]["tenant_id"]) == ("MessageRejected", "NotEntitled", GLOBEX)
        assert record["reason"].startswith("NO_ENTITLEMENT")

        dup = [(n, r) for n, r in events if r.get("message_id") == "m_in_dup"]
        assert [n for n, _ in dup] == ["InboundMessageRecorded", "MessageRouted"], "ten deliveries, one message, one decision"

        # Our reply goes out (as the channel spoke reports it) and the platform's delivery receipt comes back.
        talk = conversation_id(ACME, "facebook", PAGE, "psid-1")
        reply = await client.send(RecordOutboundMessage(new_meta(talk, ACME, actor="botpress-spoke"), "out-1", "It ships today."))
        assert reply.accepted
        sent = UpdateDeliveryStatus(new_meta(talk, ACME, actor="facebook-spoke"), "out-1", "sent", platform_message_id="m_out_1")
        assert (await client.send(sent)).accepted
        receipt = inbound(codec, "delivery", mids=["m_out_1"], watermark=0)
        await produce(*receipt)

        async def delivered():
            return [
                r for n, r in await message_events(settings)
                if n == "DeliveryStatusUpdated" and r["message_id"] == "out-1" and r["status"] == "delivered"
            ]  # fmt: skip

        [status] = await eventually(delivered, timeout=60)
        assert (status["previous_status"], status["envelope"]["correlation_id"]) == ("sent", receipt[2])
        outbound = [r for n, r in await message_events(settings) if n == "OutboundMessageRecorded"]
        assert (outbound[0]["channel_account_id"], outbound[0]["contact_id"], outbound[0]["last_inbound_at"]) == (
            PAGE,
            "psid-1",
            NOW,
        )

        # The read store explains the decision, and gRPC answers with it.
        rows = await eventually(
            lambda: fetch(settings, settings.pg_schema("message"), ROUTING_OF, ACME, uuid.UUID(talk), "m_in_1")
        )
        assert (rows[0]["routing_rule"], rows[0]["routed_app_id"], rows[0]["routed_spoke"]) == ("Routed", app_id, "botpress")
        async with channel(settings, "message") as ch:
            detail = await message_pb2_grpc.MessageQueryStub(ch).GetMessage(
                message_pb2.GetMessageRequest(tenant_id=ACME, conversation_id=talk, message_id="m_in_1")
            )
        assert (detail.message.routing.rule, detail.message.routing.app_id, detail.message.routing.facts["tenant"]) == (
            "Routed",
            app_id,
            ACME,
        )
        assert [(a.kind, a.url) for a in detail.message.attachments] == [("image", "https://cdn.example/p.jpg")]

        async def delivered_in_read_store():
            found = await fetch(settings, settings.pg_schema("message"), STATUS_OF, ACME, uuid.UUID(talk), "out-1")
            return found and found[0]["status"] == "delivered"

        await eventually(delivered_in_read_store)

        dead = await eventually(lambda: read_topic(settings, settings.topic("ingress.inbound.dlq")), timeout=30)
        assert [r.value for r in dead] != [] and codec.decode(dead[0].value).record["payload"] == b"\x00not avro"

        def scrape(path: str) -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{settings.ops_port}/{path}", timeout=5) as r:
                return r.read().decode()

        # A page connected a moment ago routes at once: the router's facts are as current
        # as the Tenant hub's log when it decides (no projector lag in between).
        fresh_page = "104857600789"
        connect = ConnectChannel(
            new_meta(channel_account_id("facebook", fresh_page), ACME), channel="facebook", account_id=fresh_page
        )
        assert (await client.send(connect)).accepted
        await produce(*inbound(codec, account=fresh_page, contact="psid-3", message_id="m_in_fresh", text="new page"))
        name, record = await eventually(lambda: _decision_of(settings, "m_in_fresh"), timeout=60)
        assert (name, record["rule"], record["envelope"]["tenant_id"]) == ("MessageRouted", "Routed", ACME)

        metrics = await asyncio.to_thread(scrape, "metrics")
        assert 'poseidon_routing_decisions_total{rule="Routed"}' in metrics
        assert 'poseidon_routing_decisions_total{rule="UnknownChannelAccount"}' in metrics
        assert json.loads(await asyncio.to_thread(scrape, "healthz"))["status"] == "ok"
    finally:
        await producer.stop()
        router.cancel()
        await asyncio.gather(router, return_exceptions=True)
