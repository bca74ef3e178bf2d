"""The Facebook client and actions against the Graph API stand-in, through the shared
spoke runtime (SpokeContext.call): the happy path, every error mapping, retries that
honour the answer, breakers per tenant, and receipts coming back as signed webhooks.
No Kafka needed: the context is built without a command client."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from base.settings import Settings
from infra.spoke import (
    BreakerOpen,
    PermanentError,
    ReauthorizationRequired,
    RetryableError,
    SpokeContext,
    SpokeSpec,
)
from schemas.codec import Catalog, Codec
from spokes.facebook.actions import SYSTEM, send_attachment_reply, send_reply
from spokes.facebook.client import GRAPH_API_VERSION, FacebookClient
from spokes.facebook.translate import DELIVERY, ECHO, MESSAGE, READ_RECEIPT, StatusUpdate, parse_webhook, receipt_updates
from spokes.facebook.translate import signature_matches as signed
from tests.harness import free_port
from tests.standins import facebook as fb
from tests.standins.facebook import RunningFacebook, running_facebook

CODEC = Codec(Catalog.load())
PAGE = "112233445566778"
PSID = "6543210987654321"
TOKEN_A, TOKEN_B = "EAAG-page-token-of-tenant-a", "EAAG-page-token-of-tenant-b"


async def _never(ctx, event_type, record):  # pragma: no cover - the spoke is not wired to topics here
    raise AssertionError("not called")


def spoke_context(url: str, **overrides) -> SpokeContext:
    settings = Settings(
        spoke_max_attempts=3, breaker_fail_max=3, breaker_reset_s=1, http_timeout_s=2, facebook_graph_url=url
    ).with_(**overrides)
    spec = SpokeSpec(name="facebook", system=SYSTEM, topics=["message.events"], accepts=lambda t, r: False, handle=_never)
    return SpokeContext(spec, settings, CODEC, commands=None)


@pytest.fixture
async def facebook() -> AsyncIterator[RunningFacebook]:
    async with running_facebook() as running:
        running.state.require_appsecret_proof = True
        running.state.add_page(PAGE, TOKEN_A)
        running.state.add_page("998877665544332", TOKEN_B)
        yield running


@pytest.fixture
async def ctx(facebook) -> AsyncIterator[SpokeContext]:
    context = spoke_context(facebook.url)
    yield context
    await context.http.aclose()


@pytest.fixture
def client(ctx) -> FacebookClient:
    return FacebookClient.for_context(ctx, rate_limit_wait_s=0.2)


def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


def breaker_state(ctx: SpokeContext, tenant_id: str) -> str:
    """One tenant's breaker, from the context that holds it: the metrics never name a tenant."""
    return ctx.breaker(tenant_id).current_state


def breaker_metrics() -> tuple[float | None, float | None]:
    """(the worst of the per-tenant breakers' states, how many breakers are open) for the Graph API."""
    return (
        REGISTRY.get_sample_value("poseidon_breaker_state", {"system": SYSTEM, "scope": "tenant"}),
        REGISTRY.get_sample_value("poseidon_breakers_open", {"system": SYSTEM}),
    )


def now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- the happy path


async def test_a_text_is_sent_to_the_send_api_and_its_message_id_returned(facebook, client):
    message_id = await client.send_text(TOKEN_A, PSID, "Hello there")

    [sent] = facebook.state.sent_to(PSID)
    assert message_id == sent.message_id and message_id.startswith("m_")
    assert (sent.page_id, sent.messaging_type, sent.tag, sent.message) == (PAGE, "RESPONSE", "", {"text": "Hello there"})
    [request] = facebook.state.message_requests()
    assert request.path == f"/{GRAPH_API_VERSION}/me/messages"
    assert request.token == TOKEN_A  # from the Authorization header: never in the URL
    assert "access_token" not in request.body


async def test_an_attachment_is_sent_by_url_and_the_standin_serves_its_bytes(facebook, client):
    url = facebook.state.put_file("invoice.pdf", b"%PDF-1.7 fake", "application/pdf")

    message_id = await client.send_attachment(TOKEN_A, PSID, "file", url)

    [sent] = facebook.state.sent_to(PSID)
    assert sent.message_id == message_id
    assert sent.message == {"attachment": {"type": "file", "payload": {"url": url}}}
    async with httpx.AsyncClient() as http:
        served = await http.get(url)
        missing = await http.get(facebook.state.cdn_url("nothing.jpg"))
    assert (served.status_code, served.content, served.headers["content-type"]) == (200, b"%PDF-1.7 fake", "application/pdf")
    assert missing.status_code == 404


# ---------------------------------------------------------------- the 24-hour window


async def test_a_reply_within_24_hours_is_sent_as_a_response(facebook, ctx):
    outcome = await send_reply(
        ctx,
        tenant_id=tenant(),
        page_id=PAGE,
        psid=PSID,
        text="Hi!",
        last_inbound_at=now() - timedelta(hours=2),
        now=now(),
        page_token=TOKEN_A,
    )

    [sent] = facebook.state.sent_to(PSID)
    assert outcome.succeeded and outcome.operation == "send_message"
    assert outcome.external_id == sent.message_id
    assert outcome.data == {"page_id": PAGE, "messaging_type": "RESPONSE"}
    assert sent.messaging_type == "RESPONSE"


async def test_a_reply_after_24_hours_without_a_tag_is_refused_with_its_reason_and_no_call(facebook, ctx):
    outcome = await send_reply(
        ctx,
        tenant_id=tenant(),
        page_id=PAGE,
        psid=PSID,
        text="Still there?",
        last_inbound_at=now() - timedelta(hours=25),
        now=now(),
        page_token=TOKEN_A,
    )

    assert not outcome.succeeded
    assert outcome.error_code == "outside_messaging_window"
    assert "outside the 24 h window" in outcome.detail and "Still there" not in outcome.detail
    assert facebook.state.requests == []


async def test_a_human_agent_reply_after_24_hours_is_sent_as_a_tagged_message(facebook, ctx):
    facebook.state.user_wrote(PSID, int((now() - timedelta(hours=30)).timestamp() * 1000))

    outcome = await send_reply(
        ctx,
        tenant_id=tenant(),
        page_id=PAGE,
        psid=PSID,
        text="An agent here",
        last_inbound_at=now() - timedelta(hours=30),
        now=now(),
        tag="HUMAN_AGENT",
        page_token=TOKEN_A,
    )

    [sent] = facebook.state.sent_to(PSID)
    assert outcome.succeeded and outcome.data["tag"] == "HUMAN_AGENT"
    assert (sent.messaging_type, sent.tag) == ("MESSAGE_TAG", "HUMAN_AGENT")


async def test_a_too_long_reply_is_refused_without_a_call(facebook, ctx):
    outcome = await send_reply(
        ctx, tenant_id=tenant(), page_id=PAGE, psid=PSID, text="x" * 2001, last_inbound_at=now(), now=now(), page_token=TOKEN_A
    )

    assert (outcome.succeeded, outcome.error_code) == (False, "text_too_long")
    assert facebook.state.requests == []


async def test_an_attachment_reply_follows_the_same_window_rule(facebook, ctx):
    url = facebook.state.put_file("cat.jpg", b"\xff\xd8\xff", "image/jpeg")
    args = dict(ctx=ctx, tenant_id=tenant(), page_id=PAGE, psid=PSID, attachment_type="image", url=url, page_token=TOKEN_A)

    refused = await send_attachment_reply(**args, last_inbound_at=now() - timedelta(days=2), now=now())
    sent = await send_attachment_reply(**args, last_inbound_at=now() - timedelta(minutes=1), now=now())

    assert (refused.succeeded, refused.error_code) == (False, "outside_messaging_window")
    assert sent.succeeded and facebook.state.sent_to(PSID)[0].message["attachment"]["payload"]["url"] == url


async def test_facebook_itself_refuses_a_response_outside_the_window_and_that_is_permanent(facebook, client):
    facebook.state.user_wrote(PSID, int((now() - timedelta(hours=25)).timestamp() * 1000))

    with pytest.raises(PermanentError) as refused:
        await client.send_text(TOKEN_A, PSID, "late", "RESPONSE")

    assert refused.value.code == "outside_messaging_window"
    assert "error 10/2018278" in refused.value.reason


# ---------------------------------------------------------------- error mappings


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        ({"mode": "invalid_token"}, ReauthorizationRequired, "reauthorization_required"),
        ({"mode": "invalid_token", "status": 401}, ReauthorizationRequired, "reauthorization_required"),
        ({"mode": "expired_token"}, ReauthorizationRequired, "reauthorization_required"),
        ({"mode": "rate_limit"}, RetryableError, "rate_limited"),
        ({"mode": "rate_limit", "code": 4}, RetryableError, "rate_limited"),
        ({"mode": "rate_limit", "code": 17}, RetryableError, "rate_limited"),
        ({"mode": "rate_limit", "code": 32}, RetryableError, "rate_limited"),
        ({"mode": "rate_limit", "code": 80006}, RetryableError, "rate_limited"),
        ({"mode": "429"}, RetryableError, "rate_limited"),
        ({"mode": "500"}, RetryableError, "graph_transient"),
        ({"mode": "transient"}, RetryableError, "graph_transient"),
        ({"mode": "permission"}, PermanentError, "permission_denied"),
        ({"mode": "permission", "code": 200}, PermanentError, "permission_denied"),
        ({"mode": "unavailable"}, PermanentError, "recipient_unavailable"),
        ({"mode": "invalid_parameter"}, PermanentError, "invalid_parameter"),
        ({"mode": "outside_window"}, PermanentError, "outside_messaging_window"),
    ],
)
async def test_each_graph_error_is_raised_as_the_matching_spoke_error(facebook, client, fault, error, code):
    facebook.state.fail(**fault, count=1)

    with pytest.raises(error) as raised:
        await client.send_text(TOKEN_A, PSID, "Private words 4711")

    assert raised.value.code == code
    assert TOKEN_A not in raised.value.reason and "4711" not in raised.value.reason
    if error is PermanentError:
        assert not isinstance(raised.value, ReauthorizationRequired)


async def test_an_unknown_psid_is_a_permanent_recipient_not_found(client):
    with pytest.raises(PermanentError) as raised:
        await client.send_text(TOKEN_A, "not-a-psid", "hi")
    assert raised.value.code == "recipient_not_found"


async def test_a_person_who_blocked_the_page_is_permanently_unavailable(facebook, client):
    facebook.state.unavailable.add(PSID)

    with pytest.raises(PermanentError) as raised:
        await client.send_text(TOKEN_A, PSID, "hi")
    assert raised.value.code == "recipient_unavailable"


async def test_a_channel_without_a_token_needs_reauthorisation_and_nothing_is_sent(facebook, client):
    with pytest.raises(ReauthorizationRequired):
        await client.send_text("", PSID, "hi")
    assert facebook.state.requests == []


async def test_a_wrong_app_secret_is_refused_by_the_standin_as_facebook_does(facebook):
    async with httpx.AsyncClient() as http:
        wrong = FacebookClient(http, Settings(facebook_graph_url=facebook.url, facebook_app_secret="not-the-secret"))
        with pytest.raises(PermanentError) as raised:
            await wrong.send_text(TOKEN_A, PSID, "hi")
    assert raised.value.code == "invalid_parameter" and "appsecret_proof" in raised.value.reason


# ---------------------------------------------------------------- retries through SpokeContext.call


async def test_a_500_is_retried_and_then_the_message_goes_once(facebook, ctx, client):
    facebook.state.fail("500", count=1)

    message_id = await ctx.call(tenant(), "send_message", lambda: client.send_text(TOKEN_A, PSID, "hi"))

    assert ctx.attempts == 2
    assert [r.status for r in facebook.state.message_requests()] == [500, 200]
    assert [m.message_id for m in facebook.state.sent_to(PSID)] == [message_id]


async def test_a_rate_limit_is_retried_after_the_wait_facebook_asked_for(facebook, ctx, client):
    facebook.state.fail("rate_limit", count=1, retry_after=1)

    await ctx.call(tenant(), "send_message", lambda: client.send_text(TOKEN_A, PSID, "hi"))

    first, second = facebook.state.message_requests()
    assert (first.status, first.error_code, second.status) == (400, 613, 200)
    assert second.at - first.at >= 1.0
    assert ctx.attempts == 2


async def test_a_429_without_a_hint_is_retried_after_the_default_wait(facebook, ctx, client):
    facebook.state.fail("429", count=2)

    await ctx.call(tenant(), "send_message", lambda: client.send_text(TOKEN_A, PSID, "hi"))

    first, second, third = facebook.state.message_requests()
    assert (first.status, second.status, third.status) == (429, 429, 200)
    assert second.at - first.at >= 0.2 and third.at - second.at >= 0.2


async def test_a_permanent_invalid_parameter_is_not_retried(facebook, ctx, client):
    facebook.state.fail("invalid_parameter")

    with pytest.raises(PermanentError) as raised:
        await ctx.call(tenant(), "send_message", lambda: client.send_text(TOKEN_A, PSID, "hi"))

    assert raised.value.code == "invalid_parameter"
    assert ctx.attempts == 1
    assert len(facebook.state.message_requests()) == 1


async def test_an_invalid_token_is_not_retried(facebook, ctx, client):
    facebook.state.fail("invalid_token", token=TOKEN_A)

    with pytest.raises(ReauthorizationRequired):
        await ctx.call(tenant(), "send_message", lambda: client.send_text(TOKEN_A, PSID, "hi"))

    assert len(facebook.state.message_requests()) == 1


async def test_retries_stop_after_the_configured_attempts(facebook, ctx, client):
    facebook.state.fail("transient", count=2)
    facebook.state.fail("500")
    scope = tenant()

    with pytest.raises(RetryableError):
        await ctx.call(scope, "send_message", lambda: client.send_text(TOKEN_A, PSID, "hi"))

    assert len(facebook.state.message_requests()) == 3
    assert facebook.state.sent_to(PSID) == []


async def test_a_slow_send_api_times_out_is_retried_and_may_still_have_delivered(facebook):
    context = spoke_context(facebook.url, http_timeout_s=0.3)
    client = FacebookClient.for_context(context)
    facebook.state.fail("slow", count=1, delay_s=1.0)
    try:
        message_id = await context.call(tenant(), "send_message", lambda: client.send_text(TOKEN_A, PSID, "hi"))
    finally:
        await context.http.aclose()

    assert context.attempts == 2
    await asyncio.sleep(1.0)
    # Like Facebook, the stand-in finishes the request whose answer we gave up on: the
    # Send API has no idempotency key, so a timed-out send retried is at-least-once.
    assert len(facebook.state.sent_to(PSID)) == 2
    assert message_id in [m.message_id for m in facebook.state.sent_to(PSID)]


# ---------------------------------------------------------------- breakers


async def test_an_invalid_token_opens_only_that_tenants_breaker(facebook, ctx):
    tenant_a, tenant_b = tenant(), tenant()
    facebook.state.fail("invalid_token", token=TOKEN_A)

    def reply(tenant_id: str, token: str):
        return send_reply(
            ctx, tenant_id=tenant_id, page_id=PAGE, psid=PSID, text="hi", last_inbound_at=now(), now=now(), page_token=token
        )

    for _ in range(2):
        with pytest.raises(ReauthorizationRequired):
            await reply(tenant_a, TOKEN_A)
    with pytest.raises(BreakerOpen):
        await reply(tenant_a, TOKEN_A)
    with pytest.raises(BreakerOpen):  # open: not even tried
        await reply(tenant_a, TOKEN_A)
    outcome_b = await reply(tenant_b, TOKEN_B)

    assert breaker_state(ctx, tenant_a) == "open"
    assert breaker_state(ctx, tenant_b) == "closed"
    assert breaker_metrics() == (2, 1)
    assert outcome_b.succeeded
    assert len(facebook.state.message_requests(TOKEN_A)) == 3
    assert [m.token for m in facebook.state.sent_to(PSID)] == [TOKEN_B]

    # The tenant re-authorised: after the reset timeout one trial call closes the breaker.
    facebook.state.clear_faults(TOKEN_A)
    await asyncio.sleep(1.1)
    outcome_a = await reply(tenant_a, TOKEN_A)

    assert outcome_a.succeeded
    assert breaker_state(ctx, tenant_a) == "closed"
    assert breaker_metrics() == (0, 0)
    # Each change ends (…, scope, previous state, new state); what comes before is the runtime's business.
    assert [change[-2:] for change in ctx.breaker_changes if change[-3] == tenant_a] == [
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
    ]


async def test_repeated_500s_open_the_breaker_and_recovery_closes_it(facebook, ctx, client):
    scope = tenant()
    facebook.state.fail("500")

    with pytest.raises(BreakerOpen):
        await ctx.call(scope, "send_message", lambda: client.send_text(TOKEN_A, PSID, "hi"))
    assert breaker_state(ctx, scope) == "open"
    assert len(facebook.state.message_requests()) == 3

    facebook.state.clear_faults()
    await asyncio.sleep(1.1)
    await ctx.call(scope, "send_message", lambda: client.send_text(TOKEN_A, PSID, "hi"))

    assert breaker_state(ctx, scope) == "closed"
    assert len(facebook.state.sent_to(PSID)) == 1


async def test_bad_requests_do_not_trip_the_breaker(facebook, ctx, client):
    scope = tenant()
    facebook.state.fail("invalid_parameter")

    for _ in range(5):
        with pytest.raises(PermanentError):
            await ctx.call(scope, "send_message", lambda: client.send_text(TOKEN_A, PSID, "hi"))

    assert breaker_state(ctx, scope) == "closed"
    assert len(facebook.state.message_requests()) == 5


# ---------------------------------------------------------------- the stand-in speaks Graph


async def test_the_standin_takes_the_token_from_the_query_string_too_and_answers_graph_errors(facebook):
    facebook.state.require_appsecret_proof = False
    base = f"{facebook.url}/v23.0/me/messages"
    body = {"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": {"text": "hi"}}
    async with httpx.AsyncClient() as http:
        by_query = await http.post(base, params={"access_token": TOKEN_A}, json=body)
        as_form = await http.post(
            base,
            data={
                "access_token": TOKEN_A,
                "recipient": json.dumps({"id": PSID}),
                "messaging_type": "UPDATE",
                "message": json.dumps({"text": "hi"}),
            },
        )
        no_token = await http.post(base, json=body)
        untagged = await http.post(base, params={"access_token": TOKEN_A}, json={**body, "messaging_type": "MESSAGE_TAG"})
        retired = await http.post(
            base, params={"access_token": TOKEN_A}, json={**body, "messaging_type": "MESSAGE_TAG", "tag": "SHIPPING_UPDATE"}
        )
        other_page = await http.post(
            f"{facebook.url}/v23.0/998877665544332/messages", params={"access_token": TOKEN_A}, json=body
        )
        typing = await http.post(
            base, params={"access_token": TOKEN_A}, json={"recipient": {"id": PSID}, "sender_action": "typing_on"}
        )
        facebook.state.fail("invalid_token", token=TOKEN_B, count=1)
        expired = await http.post(base, headers={"Authorization": f"Bearer {TOKEN_B}"}, json=body)

    assert by_query.status_code == 200 and by_query.json()["recipient_id"] == PSID
    assert by_query.json()["message_id"].startswith("m_")
    assert as_form.status_code == 200
    assert (no_token.status_code, no_token.json()["error"]["code"]) == (400, 2500)
    assert untagged.json()["error"]["code"] == 100 and "Tag is required" in untagged.json()["error"]["message"]
    assert retired.json()["error"]["code"] == 100
    assert other_page.json()["error"]["error_subcode"] == 33
    assert typing.json() == {"recipient_id": PSID}
    error = expired.json()["error"]
    assert (expired.status_code, error["code"], error["type"]) == (400, 190, "OAuthException")
    assert error["fbtrace_id"] and "invalid_token" in expired.headers["WWW-Authenticate"]
    assert [m.messaging_type for m in facebook.state.sent_to(PSID)] == ["RESPONSE", "UPDATE"]


async def test_the_standin_can_be_steered_over_http_when_it_runs_as_its_own_process(facebook, client):
    async with httpx.AsyncClient(base_url=facebook.url) as http:
        assert (await http.post("/_control/fail", json={"mode": "500", "count": 1})).status_code == 200
        assert (await http.post("/_control/fail", json={"mode": "nonsense"})).status_code == 400
        with pytest.raises(RetryableError):
            await client.send_text(TOKEN_A, PSID, "hi")
        await client.send_text(TOKEN_A, PSID, "hi")
        sent = (await http.get("/_control/sent", params={"psid": PSID})).json()
        await http.post("/_control/reset")
        requests = (await http.get("/_control/requests")).json()

    assert [m["message"] for m in sent] == [{"text": "hi"}]
    assert "token" not in sent[0]
    assert requests == []


# ---------------------------------------------------------------- webhooks back to us


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[tuple[str, asyncio.Queue]]:
    received: asyncio.Queue = asyncio.Queue()

    async def receive(request: web.Request) -> web.Response:
        await received.put((await request.read(), dict(request.headers)))
        return web.Response(text="EVENT_RECEIVED")

    app = web.Application()
    app.router.add_post("/webhooks/facebook", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/webhooks/facebook", received
    await runner.cleanup()


async def test_a_send_comes_back_as_a_signed_echo_and_delivery_receipt_then_a_read(facebook, client, webhook_receiver):
    url, received = webhook_receiver
    facebook.state.webhook_url, facebook.state.echoes = url, True

    message_id = await client.send_text(TOKEN_A, PSID, "Your order shipped")
    await facebook.settle()
    assert await facebook.push_read(PAGE, PSID) == 200

    bodies = [received.get_nowait() for _ in range(received.qsize())]
    assert all(signed(facebook.state.app_secret, raw, headers["X-Hub-Signature-256"]) for raw, headers in bodies)
    echo, delivery, read = (parse_webhook(json.loads(raw))[0] for raw, _ in bodies)
    assert (echo.kind, echo.mid, echo.psid, echo.text) == (ECHO, message_id, PSID, "Your order shipped")
    assert (delivery.kind, delivery.mids, delivery.page_id) == (DELIVERY, (message_id,), PAGE)
    assert read.kind == READ_RECEIPT
    sent_at = {message_id: facebook.state.sent_to(PSID)[0].at_ms}
    assert receipt_updates(delivery, sent_at) == [StatusUpdate(message_id, "delivered")]
    assert receipt_updates(read, sent_at) == [StatusUpdate(message_id, "read")]


async def test_a_pushed_message_with_an_attachment_reaches_us_signed_and_its_url_serves_the_bytes(facebook, webhook_receiver):
    url, received = webhook_receiver
    facebook.state.webhook_url = url
    photo = facebook.state.put_file("photo.jpg", b"\xff\xd8\xffjpeg", "image/jpeg")

    status = await facebook.push(fb.message_event(PAGE, PSID, "look ü", attachments=[fb.attachment("image", photo)]))

    raw, headers = received.get_nowait()
    assert status == 200
    assert signed(facebook.state.app_secret, raw, headers["X-Hub-Signature-256"])
    assert b"\\/cdn\\/photo.jpg" in raw and b"\\u00fc" in raw  # Facebook's escaping, which the signature covers
    [item] = parse_webhook(json.loads(raw))
    assert (item.kind, item.text, item.psid, item.page_id) == (MESSAGE, "look ü", PSID, PAGE)
    async with httpx.AsyncClient() as http:
        assert (await http.get(item.attachments[0].url)).content == b"\xff\xd8\xffjpeg"
    assert PSID in facebook.state.last_inbound_ms  # the person wrote: their window is open


async def test_a_push_to_an_unreachable_webhook_is_recorded_as_status_0(facebook):
    facebook.state.webhook_url = f"http://127.0.0.1:{free_port()}/nowhere"

    assert await facebook.push(fb.read_event(PAGE, PSID, 1)) == 0
    assert facebook.state.webhook_deliveries[0][0] == 0
