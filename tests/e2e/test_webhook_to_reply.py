"""The product's main path end to end on the real stack: a signed Facebook webhook
goes in; the Message Hub decides; the inbound-message saga reserves the charge on
the tenant's wallet, the Botpress stand-in answers, the reply reaches the Facebook
stand-in's Send API, the Odoo stand-in has the partner, the attachment lands in
the real S3 server, and the charge is captured; the Message read store shows the
conversation with its delivery status; every step is an event with the same
correlation id. With a spoke down mid-saga the reservation is released and the
saga ends compensated. Processors run as subprocesses; projectors, gRPC servers,
router, saga driver, ingress and spokes run on this test's event loop (2 cores)."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from infra.command_client import CommandClient
from infra.ingress import Ingress
from infra.projector import Projector
from infra.spoke import SpokeRunner
from poseidon import bootstrap, roles
from sagas.inbound_message.definition import saga_id_of
from spokes.minio.client import S3Store
from spokes.minio.translate import bucket_for_tenant
from tests.harness import connect_page_with_proof, eventually, fetch, free_port, provision_tenant, read_topic
from tests.standins.botpress import running_botpress
from tests.standins.facebook import attachment, message_event, running_facebook, signed_webhook, webhook_body
from tests.standins.odoo import running_odoo

pytestmark = pytest.mark.integration

APP_SECRET = "e2e-app-secret"
ACME, GLOBEX = "acme", "globex"
PAGE, GLOBEX_PAGE, UNKNOWN_PAGE = "104857600777", "104857600888", "999000111"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
HUBS = ("tenant", "app", "billing", "message", "wallet", "saga")
ACME_WALLET = str(uuid.uuid5(uuid.NAMESPACE_URL, "e2e/acme-wallet"))
FUNDS, CHARGE = 1_000, 3


@dataclass
class World:
    settings: object
    client: CommandClient
    fb: object
    bp: object
    odoo: object
    webhook_url: str
    runners: dict
    spoke_tasks: dict

    async def post(self, body: bytes, headers: dict) -> int:
        async with aiohttp.ClientSession() as session:
            async with session.post(self.webhook_url, data=body, headers=headers) as reply:
                return reply.status


@pytest.fixture
async def world(platform, request):
    """The main path. A test marked `@pytest.mark.saga_deadlines("step=seconds,…")`
    shortens those steps' deadlines (POSEIDON_INBOUND_SAGA_DEADLINES)."""
    base = platform.settings
    marker = request.node.get_closest_marker("saga_deadlines")
    deadlines = {k: float(v) for k, v in (item.split("=") for item in marker.args[0].split(","))} if marker else {}
    # The Message hub's processor starts each message's saga: it needs the charge and the deadlines.
    saga_start = {"POSEIDON_MESSAGE_CHARGE_MINOR": str(CHARGE)}
    if deadlines:
        saga_start["POSEIDON_INBOUND_SAGA_DEADLINES"] = ",".join(f"{k}={v}" for k, v in deadlines.items())
    for hub in HUBS:
        if hub == "message":
            platform.launch(f"{hub}-processor", "processor", hub, wait=False, env=saga_start)
        else:
            platform.start("processor", hub, wait=False)
    async with AsyncExitStack() as stack:
        fb = await stack.enter_async_context(running_facebook(app_secret=APP_SECRET))
        bp = await stack.enter_async_context(running_botpress())
        odoo = await stack.enter_async_context(running_odoo())
        ingress_port = free_port()
        settings = base.with_(
            facebook_graph_url=fb.url,
            facebook_app_secret=APP_SECRET,
            botpress_url=bp.url,
            odoo_url=odoo.url,
            ingress_port=ingress_port,
            ops_port=0,
            spoke_max_attempts=2,
            breaker_fail_max=2,
            breaker_reset_s=2.0,
            http_timeout_s=5.0,
            message_charge_minor=CHARGE,
            inbound_saga_deadlines_s=deadlines,
        )
        fb.state.add_page(PAGE, settings.facebook_page_token)
        webhook_url = f"http://127.0.0.1:{ingress_port}/webhooks/facebook"
        fb.state.webhook_url = webhook_url  # the stand-in pushes delivery receipts back to us
        codec = bootstrap.codec(settings)
        tasks = [asyncio.create_task(Projector(bootstrap.projection(h), settings, codec).run()) for h in HUBS]
        servers = [await roles.start_grpc(h, settings) for h in HUBS]
        ingress_runner = web.AppRunner(roles.ingress_app(Ingress(settings, codec)), access_log=None)
        await ingress_runner.setup()
        await web.TCPSite(ingress_runner, "127.0.0.1", ingress_port).start()
        router = roles.message_router(settings, codec)
        await router.start()
        tasks.append(asyncio.create_task(router.run()))
        driver = roles.saga_driver_for(settings, codec)
        await driver.start()
        tasks.append(asyncio.create_task(driver.run()))
        runners = {
            name: SpokeRunner(spec, settings, codec, list(bootstrap.hubs().values())) for name, spec in bootstrap.spokes().items()
        }
        spoke_tasks = {name: asyncio.create_task(r.run()) for name, r in runners.items()}
        tasks += list(spoke_tasks.values())
        for hub in HUBS:
            await asyncio.to_thread(platform.wait_healthy, f"{hub}-processor")
        await asyncio.wait_for(asyncio.gather(*(r.assigned.wait() for r in runners.values())), 60)
        client = await stack.enter_async_context(CommandClient(settings, codec, list(bootstrap.hubs().values())))
        await given_acme_connected_subscribed_and_entitled_and_globex_not_entitled(settings, client, fb)
        try:
            yield World(settings, client, fb, bp, odoo, webhook_url, runners, spoke_tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await router.stop()
            await driver.stop()
            await ingress_runner.cleanup()
            for server in servers:
                await server.stop(grace=0)


async def given_acme_connected_subscribed_and_entitled_and_globex_not_entitled(settings, client: CommandClient, fb) -> None:
    app_id = await provision_tenant(settings, client, ACME, PAGE, quota=1000, wallet_id=ACME_WALLET, funds=FUNDS)
    await provision_tenant(settings, client, GLOBEX, GLOBEX_PAGE, app_id=app_id, entitled=False)
    # Acme's admin proves control of its page (the product's connect flow): its replies go
    # out with acme's own page token from then on, not the shared development one.
    connected = await connect_page_with_proof(settings, fb, ACME, PAGE, f"{ACME}-owner")
    assert connected.projected and not connected.moved


async def events_of(settings, topic: str) -> list[tuple[str, dict]]:
    codec = bootstrap.codec(settings)
    return [
        (d.name.rsplit(".", 1)[1], d.record)
        for d in (codec.decode(r.value) for r in await read_topic(settings, settings.topic(topic), timeout=20))
    ]


async def message_row(settings, tenant: str, message_id: str):
    rows = await fetch(
        settings,
        settings.pg_schema("message"),
        "SELECT * FROM messages WHERE tenant_id = $1 AND message_id = $2",
        tenant,
        message_id,
    )
    return rows[0] if rows else None


async def test_a_signed_webhook_becomes_a_bot_reply_a_crm_customer_a_stored_attachment_and_a_delivered_status(world):
    settings, fb, odoo = world.settings, world.fb, world.odoo
    psid = "24000000000000001"
    url = fb.state.put_file("photo.png", PNG, "image/png")
    event = message_event(PAGE, psid, "Hello, call me on +33 6 12 34 56 78", attachments=[attachment("image", url)])
    mid = event["message"]["mid"]
    fb.state.user_wrote(psid)
    body, headers = signed_webhook(webhook_body(event), APP_SECRET)
    assert await world.post(body, headers) == 200

    sent = await eventually(lambda: _sent(fb, psid), timeout=90)
    assert sent[0].message["text"] == "echo: Hello, call me on +33 6 12 34 56 78"
    # Sent with acme's own page token (sealed in the Tenant read store), never the shared setting.
    assert sent[0].token == fb.state.page_token_of(PAGE) != settings.facebook_page_token
    partners = await eventually(lambda: _async(odoo.state.find(x_facebook_psid=psid)), timeout=60)
    assert len(partners) == 1 and partners[0]["phone"] == "+33612345678"

    # The inbound message, its routing decision, the bot's reply delivered (receipt pushed back by the stand-in).
    inbound = await eventually(lambda: message_row(settings, ACME, mid), timeout=60)
    assert (inbound["routing_rule"], inbound["routed_spoke"]) == ("Routed", "botpress")
    reply = await eventually(lambda: _delivered_reply(settings, inbound["conversation_id"]), timeout=90)
    assert reply["text"] == sent[0].message["text"]

    # The attachment is in the tenant's bucket of the real S3 server; its key travels in the outcome event.
    spoke_events = {name: await events_of(settings, f"spoke.{name}.events") for name in ("botpress", "facebook", "odoo", "minio")}
    stored = [r for n, r in spoke_events["minio"] if n == "SpokeOutcome" and r["succeeded"]]
    assert len(stored) == 1
    key = stored[0]["external_id"]
    async with S3Store(settings) as store:
        head = await store.head_object(bucket_for_tenant(ACME), key)
    assert head is not None and head["ContentLength"] == len(PNG)

    # The message ran as one inbound-message saga: every step done, the charge captured.
    saga = await eventually(lambda: saga_row(settings, ACME, mid, "completed"), timeout=60)
    steps = [r["step"] for r in await saga_events(settings, saga["saga_id"]) if r["event_type"] == "StepSucceeded"]
    assert steps == ["reserve_charge", "ask_bot", "deliver_reply", "record_customer", "store_attachments", "capture_charge"]
    wallet = await eventually(lambda: wallet_row(settings, balance=FUNDS - CHARGE), timeout=60)
    assert wallet["reserved"] == 0

    # Every step of this message carries the webhook item's correlation id.
    correlation = (await events_of(settings, "ingress.inbound"))[0][1]["envelope"]["correlation_id"]
    message_events = [
        (n, r) for n, r in await events_of(settings, "message.events") if r["envelope"]["correlation_id"] == correlation
    ]
    names = [n for n, _ in message_events]
    for expected in ("InboundMessageRecorded", "MessageRouted", "OutboundMessageRecorded", "DeliveryStatusUpdated"):
        assert expected in names, (expected, names)
    assert saga["correlation_id"] == correlation
    for name, events in spoke_events.items():
        outcomes = [r for n, r in events if n == "SpokeOutcome" and r["succeeded"]]
        assert outcomes and all(r["envelope"]["correlation_id"] == correlation for r in outcomes), name


async def test_ten_concurrent_redeliveries_of_one_webhook_yield_exactly_one_reply(world):
    fb = world.fb
    psid = "24000000000000002"
    fb.state.user_wrote(psid)
    body, headers = signed_webhook(webhook_body(message_event(PAGE, psid, "are you there?")), APP_SECRET)
    statuses = await asyncio.gather(*[world.post(body, headers) for _ in range(10)])
    assert statuses == [200] * 10
    await eventually(lambda: _sent(fb, psid), timeout=90)
    await asyncio.sleep(5)  # anything doubled would have been sent by now
    assert len(fb.state.sent_to(psid)) == 1
    routed = [r for n, r in await events_of(world.settings, "message.events") if n == "MessageRouted" and r["contact_id"] == psid]
    assert len(routed) == 1


async def test_bad_input_gets_its_clear_answer_or_rejection_event_and_nothing_is_doubled(world):
    settings, fb = world.settings, world.fb
    good, headers = signed_webhook(webhook_body(message_event(PAGE, "24000000000000003", "hi")), APP_SECRET)
    assert await world.post(good, {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}) == 403
    assert await world.post(good, {"Content-Type": "application/json"}) == 401
    big, big_headers = signed_webhook(
        {"object": "page", "entry": [], "pad": "x" * (settings.ingress_max_body_bytes + 10)}, APP_SECRET
    )
    assert await world.post(big, big_headers) == 413
    malformed, malformed_headers = signed_webhook({"object": "page", "entry": "not a list"}, APP_SECRET)
    assert await world.post(malformed, malformed_headers) == 400
    dead = await events_of(settings, "ingress.dlq")
    assert len(dead) == 1 and "entry" in dead[0][1]["reason"]

    unknown = message_event(UNKNOWN_PAGE, "24000000000000004", "who are you?")
    unentitled = message_event(GLOBEX_PAGE, "24000000000000005", "hello globex")
    for event in (unknown, unentitled):
        body, hdrs = signed_webhook(webhook_body(event), APP_SECRET)
        assert await world.post(body, hdrs) == 200

    async def rejections():
        found = {r["message_id"]: r["rule"] for n, r in await events_of(settings, "message.events") if n == "MessageRejected"}
        return found if len(found) >= 2 else None

    rules = await eventually(rejections, timeout=90)
    assert rules[unknown["message"]["mid"]] == "UnknownChannelAccount"
    assert rules[unentitled["message"]["mid"]].startswith("NotEntitled")
    assert fb.state.sent_to("24000000000000004") == [] and fb.state.sent_to("24000000000000005") == []


async def test_a_bot_that_is_down_trips_the_breaker_visibly_and_its_messages_are_answered_once_it_recovers(world):
    settings, fb, bp = world.settings, world.fb, world.bp
    psid = "24000000000000006"
    fb.state.user_wrote(psid)
    bp.state.fail("500", count=1000)
    body, headers = signed_webhook(webhook_body(message_event(PAGE, psid, "anyone home?")), APP_SECRET)
    assert await world.post(body, headers) == 200

    def acme_breaker() -> str:  # the runner's context holds the tenants' breakers
        return world.runners["botpress"].context.breaker(ACME).current_state

    def breaker_metrics() -> tuple[float | None, float | None]:  # never labelled by tenant
        return (
            REGISTRY.get_sample_value("poseidon_breaker_state", {"system": "botpress", "scope": "tenant"}),
            REGISTRY.get_sample_value("poseidon_breakers_open", {"system": "botpress"}),
        )

    await eventually(lambda: _async(acme_breaker() == "open"), timeout=90)
    assert breaker_metrics() == (2, 1)
    changes = [r for n, r in await events_of(settings, "spoke.botpress.events") if n == "BreakerStateChanged"]
    assert any(c["state"] == "open" and c["scope"] == ACME for c in changes)
    assert fb.state.sent_to(psid) == []

    bp.state.faults.clear()
    sent = await eventually(lambda: _sent(fb, psid), timeout=90)
    assert sent[0].message["text"] == "echo: anyone home?"
    assert acme_breaker() == "closed" and breaker_metrics() == (0, 0)


@pytest.mark.saga_deadlines("deliver_reply=3")
async def test_a_spoke_down_mid_saga_releases_the_reservation_and_the_saga_ends_compensated(world):
    settings, fb = world.settings, world.fb
    psid = "24000000000000007"
    fb.state.user_wrote(psid)
    world.spoke_tasks["facebook"].cancel()  # the Facebook spoke worker is down: nobody answers the SendReply step
    event = message_event(PAGE, psid, "is anybody there?")
    mid = event["message"]["mid"]
    body, headers = signed_webhook(webhook_body(event), APP_SECRET)
    assert await world.post(body, headers) == 200

    saga = await eventually(lambda: saga_row(settings, ACME, mid, "compensated"), timeout=120)
    timeline = [(r["event_type"], r["step"]) for r in await saga_events(settings, saga["saga_id"])]
    assert timeline.count(("StepFailed", "deliver_reply")) == 3  # retried by the saga's policy, each at its deadline
    assert ("StepSucceeded", "ask_bot") in timeline  # the bot did answer; its reply never went out
    assert timeline[-3:] == [("CompensationRequested", "reserve_charge"), ("Compensated", "reserve_charge"), ("SagaAborted", "")]
    failed = [r for r in await saga_events(settings, saga["saga_id"]) if r["event_type"] == "StepFailed"]
    assert all("deadline" in r["summary"] for r in failed)

    # The reservation was released: nothing charged, nothing held; the ledger says so.
    wallet = await eventually(lambda: wallet_row(settings, balance=FUNDS, reserved=0), timeout=60)
    ledger = await fetch(
        settings,
        settings.pg_schema("wallet"),
        "SELECT kind FROM ledger WHERE wallet_id = $1 AND reservation_id = $2 ORDER BY version",
        uuid.UUID(wallet["wallet_id"]),
        f"message/{mid}",
    )
    assert [r["kind"] for r in ledger] == ["reserve", "release"]
    assert fb.state.sent_to(psid) == []


@pytest.mark.saga_deadlines("record_customer=3")
async def test_an_outside_system_failing_past_a_steps_deadline_is_answered_as_a_failure_and_compensated(world):
    settings, fb, odoo = world.settings, world.fb, world.odoo
    psid = "24000000000000008"
    fb.state.user_wrote(psid)
    odoo.state.fail("500", None)  # Odoo keeps answering 500: the spoke retries until the step's deadline
    event = message_event(PAGE, psid, "please note my number +33 6 00 00 00 08")
    body, headers = signed_webhook(webhook_body(event), APP_SECRET)
    assert await world.post(body, headers) == 200

    saga = await eventually(lambda: saga_row(settings, ACME, event["message"]["mid"], "compensated"), timeout=120)
    failed = [r for r in await saga_events(settings, saga["saga_id"]) if r["event_type"] == "StepFailed"]
    assert [r["step"] for r in failed] == ["record_customer"] * 3
    # The spoke gives up before the deadline and says why (the saga's timer is the fallback on a stalled spoke).
    assert any("still failing at the deadline" in r["summary"] for r in failed), [r["summary"] for r in failed]
    await eventually(lambda: wallet_row(settings, balance=FUNDS, reserved=0), timeout=60)
    assert len(fb.state.sent_to(psid)) == 1  # the reply went out before: a delivered reply is not undone
    assert odoo.state.find(x_facebook_psid=psid) == []


async def saga_row(settings, tenant: str, message_id: str, state: str):
    saga_id = saga_id_of({"envelope": {"tenant_id": tenant}, "message_id": message_id})
    rows = await fetch(
        settings, settings.pg_schema("saga"), "SELECT * FROM sagas WHERE saga_id = $1 AND state = $2", uuid.UUID(saga_id), state
    )
    return rows[0] if rows else None


async def saga_events(settings, saga_id):
    return await fetch(
        settings, settings.pg_schema("saga"), "SELECT * FROM saga_events WHERE saga_id = $1 ORDER BY version", saga_id
    )


async def wallet_row(settings, balance: int, reserved: int | None = None):
    rows = await fetch(
        settings,
        settings.pg_schema("wallet"),
        "SELECT wallet_id::text, balance, reserved FROM wallets WHERE wallet_id = $1 AND balance = $2",
        uuid.UUID(ACME_WALLET),
        balance,
    )
    return rows[0] if rows and (reserved is None or rows[0]["reserved"] == reserved) else None


async def _sent(fb, psid: str):
    return fb.state.sent_to(psid) or None


async def _async(value):
    return value


async def _delivered_reply(settings, conversation_id: str):
    rows = await fetch(
        settings,
        settings.pg_schema("message"),
        "SELECT * FROM messages WHERE conversation_id = $1 AND direction = 'outbound' AND status IN ('delivered', 'read')",
        conversation_id,
    )
    return rows[0] if rows else None


async def test_a_facebook_spoke_killed_mid_send_never_sends_that_reply_again_under_at_most_once(world):
    """The intent is recorded before the call; the spoke dies while the Send API
    holds the request (which then goes through). The restarted spoke finds the
    message `sending` with no outcome: at most once (the default) it reports
    "outcome unknown" and sends nothing again; the saga fails the step with that
    reason and compensates, the person has exactly one reply."""
    settings, fb = world.settings, world.fb
    psid = "24000000000000009"
    fb.state.user_wrote(psid)
    fb.state.fail("slow", count=1, delay_s=4.0)
    event = message_event(PAGE, psid, "one answer only, please")
    body, headers = signed_webhook(webhook_body(event), APP_SECRET)
    assert await world.post(body, headers) == 200

    sending = await eventually(lambda: _outbound_in(settings, psid, "sending"), timeout=60)
    world.spoke_tasks["facebook"].cancel()  # dies while the Send API holds its request
    await asyncio.gather(world.spoke_tasks["facebook"], return_exceptions=True)
    await eventually(lambda: _sent(fb, psid), timeout=30)  # the stand-in did deliver it
    world.spoke_tasks["facebook"] = await _restarted_spoke(world, "facebook")

    saga = await eventually(lambda: saga_row(settings, ACME, event["message"]["mid"], "compensated"), timeout=180)
    failed = [r for r in await saga_events(settings, saga["saga_id"]) if r["event_type"] == "StepFailed"]
    assert failed and all(r["step"] == "deliver_reply" for r in failed)
    assert any("outcome is unknown" in r["summary"] for r in failed), [r["summary"] for r in failed]
    assert len(fb.state.sent_to(psid)) == 1  # never sent twice
    assert (await message_row(settings, ACME, sending["message_id"]))["status"] == "sending"


async def _outbound_in(settings, psid: str, status: str):
    rows = await fetch(
        settings,
        settings.pg_schema("message"),
        "SELECT m.* FROM messages m JOIN conversations c USING (tenant_id, conversation_id)"
        " WHERE c.contact_id = $1 AND m.direction = 'outbound' AND m.status = $2",
        psid,
        status,
    )
    return rows[0] if rows else None


async def _restarted_spoke(world, name: str) -> asyncio.Task:
    settings = world.settings
    runner = SpokeRunner(bootstrap.spokes()[name], settings, bootstrap.codec(settings), list(bootstrap.hubs().values()))
    world.runners[name] = runner
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(runner.assigned.wait(), 60)
    return task


async def test_a_reply_facebook_refused_to_take_is_sent_later_not_called_unknown(world):
    """Rate limited past the spoke's attempts, nothing went out: the intent is given
    back (`failed`, "not sent") and the spoke's next try sends it — once."""
    settings, fb = world.settings, world.fb
    psid = "24000000000000010"
    fb.state.user_wrote(psid)
    fb.state.fail("429", count=3, retry_after=0.2)  # more than spoke_max_attempts (2) in a row
    event = message_event(PAGE, psid, "are you there?")
    body, headers = signed_webhook(webhook_body(event), APP_SECRET)
    assert await world.post(body, headers) == 200

    await eventually(lambda: saga_row(settings, ACME, event["message"]["mid"], "completed"), timeout=120)
    assert len(fb.state.sent_to(psid)) == 1
    row = await _outbound_in(settings, psid, "sent") or await _outbound_in(settings, psid, "delivered")
    assert row is not None
