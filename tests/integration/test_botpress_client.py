"""The Botpress spoke against the Chat API stand-in and the real PostgreSQL: the
contact's user and conversation are created once and reused, the bot's replies
are heard on the listen stream (polled when it is refused, breaks or is off),
every error answer maps to what we do about it, and retries and the per-tenant
breaker behave through SpokeContext.call. No Kafka needed beyond the namespace
fixture."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid

import asyncpg
import httpx
import jwt
import pytest
import structlog
from aiohttp import web
from prometheus_client import REGISTRY

from infra.spoke import BreakerOpen, PermanentError, ReauthorizationRequired, RetryableError, SpokeContext, SpokeSpec
from schemas.codec import Catalog, Codec
from spokes.botpress import translate
from spokes.botpress.actions import PollPolicy, ask_bot
from spokes.botpress.client import SYSTEM, BotpressChat, StaleMapping
from spokes.botpress.mapping_store import MappingStore, opened_store
from tests.harness import ROOT, free_port
from tests.standins.botpress import DEFAULT_WEBHOOK_ID, running_botpress

FAST = PollPolicy(first_s=0.02, max_s=0.1, settle_s=0.05)


async def _not_wired(ctx, event_type, record):  # pragma: no cover - the lead wires the spoke to topics
    raise AssertionError("not wired")


SPEC = SpokeSpec(name="botpress", system=SYSTEM, topics=("message.events",), accepts=lambda t, r: False, handle=_not_wired)


@pytest.fixture
async def botpress():
    async with running_botpress() as running:
        yield running


@pytest.fixture
def settings(namespace, botpress):
    return namespace.with_(
        botpress_url=botpress.url, spoke_max_attempts=3, breaker_fail_max=3, breaker_reset_s=1, http_timeout_s=2
    )


@pytest.fixture
async def ctx(settings):
    ctx = SpokeContext(SPEC, settings, Codec(Catalog.load()), commands=None)
    yield ctx
    await ctx.http.aclose()


@pytest.fixture
async def polling_ctx(settings):
    """A spoke whose installation does not listen (POSEIDON_BOTPRESS_LISTEN=false)."""
    ctx = SpokeContext(SPEC, settings.with_(botpress_listen=False), Codec(Catalog.load()), commands=None)
    yield ctx
    await ctx.http.aclose()


@pytest.fixture
async def store(settings):
    async with opened_store(settings) as store:
        yield store


@pytest.fixture
def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def chat(botpress):
    async with httpx.AsyncClient(timeout=2) as http:
        yield BotpressChat(http, botpress.api_url())


async def ask(ctx, store, tenant, *, contact="psid-1", text="hello", wait_s=3.0, **kwargs):
    return await ask_bot(
        ctx, store, tenant_id=tenant, channel="facebook", contact_id=contact, text=text, wait_s=wait_s, poll=FAST, **kwargs
    )


def breaker_state(ctx: SpokeContext, tenant: str) -> str:
    """One tenant's breaker, from the context that holds it: the metrics never name a tenant."""
    return ctx.breaker(tenant).current_state


def breaker_metrics() -> tuple[float | None, float | None]:
    """(the worst of the per-tenant breakers' states, how many breakers are open) for Botpress."""
    return (
        REGISTRY.get_sample_value("poseidon_breaker_state", {"system": SYSTEM, "scope": "tenant"}),
        REGISTRY.get_sample_value("poseidon_breakers_open", {"system": SYSTEM}),
    )


# --- the flow -----------------------------------------------------------------------------


async def test_the_first_message_of_a_contact_creates_its_user_and_conversation_and_returns_the_bots_reply(
    ctx, store, tenant, botpress
):
    outcome, texts = await ask(ctx, store, tenant, text="Where is my order?")

    assert texts == ["echo: Where is my order?"]
    assert outcome.succeeded and outcome.operation == "ask_bot"
    assert outcome.data["mapping"] == "created" and outcome.data["replies"] == "1"
    assert outcome.detail == "bot answered with 1 message(s)" and "order" not in outcome.detail
    state = botpress.state
    assert [len(state.calls(op)) for op in ("createUser", "createConversation", "createMessage")] == [1, 1, 1]
    assert all(r.authenticated for r in state.requests if r.operation != "createUser")
    assert outcome.external_id == state.user_messages(outcome.data["conversation_id"])[0]["id"]


async def test_the_next_message_of_the_same_contact_reuses_the_stored_user_and_conversation(ctx, store, tenant, botpress):
    first, _ = await ask(ctx, store, tenant, text="first")
    second, texts = await ask(ctx, store, tenant, text="second")

    assert texts == ["echo: second"]
    assert second.data["mapping"] == "reused"
    assert second.data["conversation_id"] == first.data["conversation_id"]
    state = botpress.state
    assert [len(state.calls(op)) for op in ("createUser", "createConversation", "createMessage")] == [1, 1, 2]


async def test_the_mapping_outlives_the_store_that_made_it(ctx, store, tenant, settings, botpress):
    first, _ = await ask(ctx, store, tenant)
    reopened = await MappingStore.open(settings)
    try:
        again, texts = await ask(ctx, reopened, tenant, text="still there?")
    finally:
        await reopened.close()

    assert texts == ["echo: still there?"]
    assert again.data["conversation_id"] == first.data["conversation_id"]
    assert len(botpress.state.calls("createUser")) == 1


async def test_every_contact_of_every_tenant_gets_its_own_botpress_user(ctx, store, tenant, botpress):
    other_tenant = f"{tenant}-b"
    results = [
        await ask(ctx, store, tenant, contact="psid-1"),
        await ask(ctx, store, tenant, contact="psid-2"),
        await ask(ctx, store, other_tenant, contact="psid-1"),
    ]

    assert len({outcome.data["conversation_id"] for outcome, _ in results}) == 3
    back = await store.by_conversation(tenant, results[1][0].data["conversation_id"])
    assert (back.channel, back.contact_id) == ("facebook", "psid-2")
    assert await store.by_conversation(other_tenant, results[1][0].data["conversation_id"]) is None
    assert len(botpress.state.calls("createUser")) == 3
    mappings = [await store.get(tenant, "facebook", "psid-1"), await store.get(other_tenant, "facebook", "psid-1")]
    assert mappings[0].user_id != mappings[1].user_id


async def test_the_user_key_is_stored_sealed_and_opens_only_in_its_own_row(ctx, store, tenant, settings, botpress):
    await ask(ctx, store, tenant, contact="psid-1")
    await ask(ctx, store, tenant, contact="psid-2")
    mapping = await store.get(tenant, "facebook", "psid-1")
    issued = jwt.encode({"id": mapping.user_id}, botpress.state._secret(DEFAULT_WEBHOOK_ID), algorithm="HS256")

    assert mapping.user_key == issued
    assert issued not in repr(mapping)
    conn = await asyncpg.connect(settings.pg_dsn)
    try:
        rows = await conn.fetch(f'SELECT * FROM "{store.schema}".contact_mappings WHERE tenant_id = $1', tenant)
        assert all(issued not in str(value) for row in rows for value in row.values())
        assert all(row["user_key_sealed"].startswith("sealed.v1.") for row in rows)
        # A sealed key copied into another contact's row does not open there: that row is recreated.
        await conn.execute(
            f"""UPDATE "{store.schema}".contact_mappings SET user_key_sealed = $2
                WHERE tenant_id = $1 AND contact_id = 'psid-2'""",
            tenant,
            next(r["user_key_sealed"] for r in rows if r["contact_id"] == "psid-1"),
        )
    finally:
        await conn.close()
    assert (await store.get(tenant, "facebook", "psid-2")).user_key == ""
    outcome, texts = await ask(ctx, store, tenant, contact="psid-2", text="again")
    assert outcome.data["mapping"] == "recreated" and texts == ["echo: again"]


async def test_no_log_line_holds_the_user_key_or_the_message_text(ctx, store, tenant, botpress):
    with structlog.testing.capture_logs() as logs:
        await ask(ctx, store, tenant, text="my card is 4111")
        mapping = await store.get(tenant, "facebook", "psid-1")
        botpress.state.revoke_user(mapping.user_id)
        await ask(ctx, store, tenant, text="my card is 4111")

    assert logs, "the stale mapping is logged"
    assert mapping.user_key not in repr(logs) and "4111" not in repr(logs)


async def test_a_revoked_user_key_drops_the_mapping_and_makes_a_new_user_once(ctx, store, tenant, botpress):
    first, _ = await ask(ctx, store, tenant)
    old = await store.get(tenant, "facebook", "psid-1")
    botpress.state.revoke_user(old.user_id)

    outcome, texts = await ask(ctx, store, tenant, text="are you there?")

    assert texts == ["echo: are you there?"]
    assert outcome.data["mapping"] == "recreated"
    new = await store.get(tenant, "facebook", "psid-1")
    assert new.user_id != old.user_id and new.conversation_id == outcome.data["conversation_id"] != first.data["conversation_id"]
    assert len(botpress.state.calls("createUser")) == 2


async def test_a_deleted_conversation_is_replaced_for_the_same_user(ctx, store, tenant, botpress):
    await ask(ctx, store, tenant)
    old = await store.get(tenant, "facebook", "psid-1")
    botpress.state.delete_conversation(old.conversation_id)

    outcome, texts = await ask(ctx, store, tenant, text="hello again")

    assert texts == ["echo: hello again"]
    new = await store.get(tenant, "facebook", "psid-1")
    assert (new.user_id, new.user_key) == (old.user_id, old.user_key)
    assert new.conversation_id != old.conversation_id
    assert [len(botpress.state.calls(op)) for op in ("createUser", "createConversation")] == [1, 2]


async def test_a_tenant_moved_to_another_bot_gets_users_of_the_new_bot(ctx, store, tenant, botpress):
    botpress.state.add_webhook("new-bot")
    await ask(ctx, store, tenant)

    outcome, texts = await ask(ctx, store, tenant, webhook_id="new-bot")

    assert texts == ["echo: hello"] and outcome.data["mapping"] == "recreated"
    assert (await store.get(tenant, "facebook", "psid-1")).webhook_id == "new-bot"
    assert [r.webhook_id for r in botpress.state.calls("createUser")] == [DEFAULT_WEBHOOK_ID, "new-bot"]


async def test_a_bot_that_rejects_the_mapping_it_just_made_needs_reauthorization(ctx, store, tenant, botpress):
    botpress.state.fail("401", count=10, operation="createMessage")

    with pytest.raises(ReauthorizationRequired) as raised:
        await ask(ctx, store, tenant)

    assert raised.value.code == "fresh_mapping_rejected"
    assert len(botpress.state.calls("createUser")) == 2  # the stored one, then one fresh try


async def test_an_unknown_webhook_id_or_refused_user_creation_needs_reauthorization(ctx, store, tenant, botpress):
    with pytest.raises(ReauthorizationRequired) as unknown:
        await ask(ctx, store, tenant, webhook_id="deleted-bot")
    botpress.state.manual_auth = True
    with pytest.raises(ReauthorizationRequired) as refused:
        await ask(ctx, store, f"{tenant}-b")

    assert (unknown.value.code, refused.value.code) == ("webhook_not_found", "user_creation_refused")
    assert await store.get(tenant, "facebook", "psid-1") is None


async def test_a_message_without_text_is_refused_before_calling_botpress(ctx, store, tenant, botpress):
    with pytest.raises(PermanentError) as raised:
        await ask(ctx, store, tenant, text="   ")

    assert raised.value.code == "empty_text" and botpress.state.requests == []


# --- replies ------------------------------------------------------------------------------


async def test_several_replies_are_collected_in_the_order_the_bot_sent_them(ctx, store, tenant, botpress):
    botpress.state.reply_delay_s = 0.2
    botpress.state.script["price?"] = [
        "It costs 10 EUR.",
        {"type": "choice", "text": "Buy it?", "options": [{"label": "Yes", "value": "y"}, {"label": "No", "value": "n"}]},
        {"type": "image", "imageUrl": "https://cdn.example/shirt.png"},
    ]

    outcome, texts = await ask(ctx, store, tenant, text="price?")

    assert texts == ["It costs 10 EUR.", "Buy it?\n- Yes\n- No", "https://cdn.example/shirt.png"]
    assert outcome.data["replies"] == "3"
    bot_messages = [m["id"] for m in botpress.state.messages[outcome.data["conversation_id"]][1:]]
    assert outcome.data["reply_ids"].split(",") == bot_messages


async def test_replies_are_heard_on_the_listen_stream_without_polling(ctx, store, tenant, botpress):
    botpress.state.script["many"] = ["one", "two", "three"]

    outcome, texts = await ask(ctx, store, tenant, text="many")

    assert texts == ["one", "two", "three"] and outcome.data["heard_by"] == "listening"
    assert botpress.state.calls("listMessages") == []
    [listened] = botpress.state.calls("listenConversation")
    assert listened.authenticated and listened.path.endswith(f"/conversations/{outcome.data['conversation_id']}/listen")
    for _ in range(50):  # the stream is closed: the stand-in drops its listener
        if not botpress.state.listeners[outcome.data["conversation_id"]]:
            break
        await asyncio.sleep(0.02)
    assert botpress.state.listeners[outcome.data["conversation_id"]] == set()


async def test_a_refused_listen_stream_falls_back_to_polling(ctx, store, tenant, botpress):
    botpress.state.fail("500", operation="listenConversation")

    outcome, texts = await ask(ctx, store, tenant, text="still there?")

    assert texts == ["echo: still there?"] and outcome.data["heard_by"] == "polling"
    assert botpress.state.calls("listMessages")


async def test_replies_are_found_pages_back_in_a_long_conversation(polling_ctx, store, tenant, botpress):
    for n in range(4):
        await ask(polling_ctx, store, tenant, text=f"warm-up {n}")
    botpress.state.page_size = 2
    botpress.state.script["many"] = ["one", "two", "three"]

    outcome, texts = await ask(polling_ctx, store, tenant, text="many")

    assert texts == ["one", "two", "three"] and outcome.data["heard_by"] == "polling"
    assert any("nextToken" in r.query for r in botpress.state.calls("listMessages"))
    assert botpress.state.calls("listenConversation") == []


@pytest.mark.parametrize("listening", [True, False])
async def test_a_slow_bot_is_awaited_and_a_silent_one_gives_up_after_the_wait(
    ctx, polling_ctx, store, tenant, botpress, listening
):
    spoke = ctx if listening else polling_ctx
    botpress.state.reply_delay_s = 0.6
    _, slow = await ask(spoke, store, tenant, text="slow")
    botpress.state.bot_silent = True
    started = time.monotonic()
    outcome, silent = await ask(spoke, store, tenant, text="anyone?", wait_s=0.5)

    assert slow == ["echo: slow"]
    assert silent == [] and outcome.succeeded and outcome.detail == "bot sent no reply within 0.5s"
    assert 0.5 <= time.monotonic() - started < 2.0


async def test_the_same_message_id_is_asked_once(ctx, store, tenant, botpress):
    first, texts = await ask(ctx, store, tenant, text="refund?", message_id="m-1")
    again, texts_again = await ask(ctx, store, tenant, text="refund?", message_id="m-1")

    assert texts == texts_again == ["echo: refund?"]
    assert again.external_id == first.external_id and again.data["mapping"] == "already_sent"
    assert again.data["reply_ids"] == first.data["reply_ids"] != ""
    assert len(botpress.state.calls("createMessage")) == 1


async def test_a_send_whose_answer_was_lost_is_found_by_its_metadata_not_sent_twice(ctx, store, tenant, botpress):
    await ask(ctx, store, tenant, text="first")
    botpress.state.fail("lost_response", operation="createMessage")

    outcome, texts = await ask(ctx, store, tenant, text="lost?", message_id="m-2")

    assert texts == ["echo: lost?"]
    conversation = outcome.data["conversation_id"]
    assert [m["payload"]["text"] for m in botpress.state.user_messages(conversation)] == ["first", "lost?"]
    assert len(botpress.state.calls("createMessage")) == 2  # "first" and the one whose answer was lost


async def test_a_redelivered_message_whose_send_was_interrupted_is_not_sent_again(ctx, store, tenant, botpress, chat):
    await ask(ctx, store, tenant, text="first")
    mapping = await store.get(tenant, "facebook", "psid-1")
    # A worker noted the send, reached Botpress, and died before recording the answer.
    await store.begin_send(tenant, "m-3", mapping.conversation_id)
    await chat.create_message(mapping.user_key, mapping.conversation_id, "interrupted", message_id="m-3")
    await botpress.state.settled()  # the bot answered before the redelivery: no stream can hear it now

    outcome, texts = await ask(ctx, store, tenant, text="interrupted", message_id="m-3")

    assert texts == ["echo: interrupted"] and outcome.data["heard_by"] == "polling"
    assert [m["payload"]["text"] for m in botpress.state.user_messages(mapping.conversation_id)] == ["first", "interrupted"]
    assert (await store.sent(tenant, "m-3")).botpress_message_id == outcome.external_id


async def test_the_bots_replies_are_pushed_with_the_shared_secret_header(ctx, store, tenant, botpress, settings):
    received: list[tuple[str | None, dict]] = []

    async def receive(request: web.Request) -> web.Response:
        received.append((request.headers.get(translate.PUSH_SECRET_HEADER), await request.json()))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/botpress/push", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    botpress.state.push_url = f"http://127.0.0.1:{port}/botpress/push"
    botpress.state.push_secret = settings.botpress_webhook_secret
    try:
        await ask(ctx, store, tenant, text="push me")
        await botpress.state.settled()
    finally:
        await runner.cleanup()

    assert len(received) == 2  # our message's signal and the bot's
    assert all(translate.push_is_authentic(secret, settings.botpress_webhook_secret) for secret, _ in received)
    replies = [translate.parse_push(body) for _, body in received]
    assert [translate.reply_text(m.payload) for m in replies if m] == ["echo: push me"]
    assert not translate.push_is_authentic(received[0][0], "another-secret")


# --- every error answer, straight from the client ------------------------------------------


@pytest.mark.parametrize(
    ("mode", "operation", "raised", "code"),
    [
        ("500", "createUser", RetryableError, "server_error"),
        ("503", "createUser", RetryableError, "unavailable"),
        ("429", "createUser", RetryableError, "rate_limited"),
        ("403", "createUser", ReauthorizationRequired, "user_creation_refused"),
        ("401", "createConversation", StaleMapping, "user_key_rejected"),
        ("401", "listMessages", StaleMapping, "user_key_rejected"),
        ("403", "listMessages", StaleMapping, "conversation_forbidden"),
        ("lost_response", "createMessage", RetryableError, "unavailable"),
    ],
)
async def test_each_fault_of_the_chat_api_raises_what_it_means(botpress, chat, mode, operation, raised, code):
    user_id, key = await chat.create_user()
    conversation = await chat.create_conversation(key)
    botpress.state.fail(mode, operation=operation)
    calls = {
        "createUser": chat.create_user,
        "createConversation": lambda: chat.create_conversation(key),
        "listMessages": lambda: chat.list_messages(key, conversation),
        "createMessage": lambda: chat.create_message(key, conversation, "hi"),
    }

    with pytest.raises(raised) as caught:
        await calls[operation]()

    assert type(caught.value) is raised and caught.value.code == code
    if mode == "429":
        assert caught.value.retry_after == 1.0


async def test_the_protocol_answers_of_the_stand_in_map_as_botpress_ones_would(botpress, chat):
    user_id, key = await chat.create_user()
    conversation = await chat.create_conversation(key)
    _, other_key = await chat.create_user()

    assert await chat.get_user(key) == user_id
    with pytest.raises(StaleMapping) as forged:
        await chat.get_user(jwt.encode({"id": user_id}, "not-the-secret-of-this-stand-in-at-all", algorithm="HS256"))
    with pytest.raises(StaleMapping) as not_mine:
        await chat.create_message(other_key, conversation, "hi")
    with pytest.raises(StaleMapping) as gone:
        await chat.list_messages(key, "conv_does_not_exist")
    with pytest.raises(PermanentError) as invalid:
        await chat.create_message(key, conversation, "")

    assert (forged.value.scope, forged.value.code) == ("user", "user_key_rejected")
    assert (not_mine.value.scope, not_mine.value.code) == ("conversation", "conversation_forbidden")
    assert (gone.value.scope, gone.value.code) == ("conversation", "conversation_not_found")
    assert type(invalid.value) is PermanentError and invalid.value.code == "invalid_payload"
    assert "err_" in invalid.value.reason


async def test_a_timeout_and_an_unreachable_botpress_are_retryable(botpress, chat):
    botpress.state.fail("slow", operation="createUser", delay_s=3)
    with pytest.raises(RetryableError) as slow:
        await chat.create_user()
    async with httpx.AsyncClient(timeout=2) as http:
        with pytest.raises(RetryableError) as down:
            await BotpressChat(http, f"http://127.0.0.1:{free_port()}/{DEFAULT_WEBHOOK_ID}").create_user()

    assert (slow.value.code, down.value.code) == ("timeout", "unreachable")


# --- retries and breakers through SpokeContext.call ---------------------------------------


async def test_server_errors_are_retried_until_botpress_answers(ctx, store, tenant, botpress):
    botpress.state.fail("500", count=2, operation="createUser")

    _, texts = await ask(ctx, store, tenant)

    assert texts == ["echo: hello"]
    assert len(botpress.state.calls("createUser")) == 3
    assert breaker_state(ctx, tenant) == "closed"


async def test_a_rate_limit_is_retried_no_sooner_than_botpress_asks(ctx, store, tenant, botpress):
    await ask(ctx, store, tenant, text="first")
    botpress.state.fail("429", operation="createMessage")
    started = time.monotonic()

    _, texts = await ask(ctx, store, tenant, text="second")

    assert texts == ["echo: second"]
    assert time.monotonic() - started >= 1.0
    assert len(botpress.state.calls("createMessage")) == 3


async def test_bad_requests_are_not_retried_and_do_not_trip_the_breaker(ctx, tenant, botpress, chat):
    _, key = await chat.create_user()
    conversation = await chat.create_conversation(key)

    for _ in range(5):
        with pytest.raises(PermanentError):
            await ctx.call(tenant, "create_message", lambda: chat.create_message(key, conversation, ""))
        assert ctx.attempts == 1

    assert len(botpress.state.calls("createMessage")) == 5
    assert breaker_state(ctx, tenant) == "closed"


async def test_repeated_failures_open_the_tenants_breaker_and_recovery_closes_it(ctx, store, tenant, botpress):
    botpress.state.fail("500", count=100)

    with pytest.raises(BreakerOpen):
        await ask(ctx, store, tenant)
    assert len(botpress.state.calls("createUser")) == 3
    assert breaker_state(ctx, tenant) == "open" and breaker_metrics() == (2, 1)
    with pytest.raises(BreakerOpen):
        await ask(ctx, store, tenant)
    assert len(botpress.state.calls("createUser")) == 3  # refused without calling

    botpress.state.faults.clear()
    await asyncio.sleep(1.1)
    _, texts = await ask(ctx, store, tenant)

    assert texts == ["echo: hello"]
    assert breaker_state(ctx, tenant) == "closed" and breaker_metrics() == (0, 0)
    # (…, scope, previous, state): the runner turns each into a BreakerStateChanged event.
    assert [tuple(change[-2:]) for change in ctx.breaker_changes if change[-3] == tenant] == [
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
    ]


async def test_one_tenants_rejected_integration_opens_only_that_tenants_breaker(ctx, store, tenant, botpress):
    healthy = f"{tenant}-healthy"

    for _ in range(2):
        with pytest.raises(ReauthorizationRequired):
            await ask(ctx, store, tenant, webhook_id="uninstalled-bot")
    with pytest.raises(BreakerOpen):
        await ask(ctx, store, tenant, webhook_id="uninstalled-bot")
    _, texts = await ask(ctx, store, healthy)

    assert texts == ["echo: hello"]
    assert (breaker_state(ctx, tenant), breaker_state(ctx, healthy)) == ("open", "closed")
    assert breaker_metrics() == (2, 1)


# --- the stand-in on its own ----------------------------------------------------------------


def test_the_stand_in_runs_standalone_and_takes_control_requests():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.standins.botpress", "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert "stand-in on" in proc.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        created = httpx.post(f"{base}/{DEFAULT_WEBHOOK_ID}/users", json={})
        httpx.post(f"{base}/_control/fail", json={"mode": "429", "count": 1, "operation": "getUser"})
        limited = httpx.get(f"{base}/{DEFAULT_WEBHOOK_ID}/users/me", headers={"x-user-key": created.json()["key"]})
        unknown = httpx.post(f"{base}/nope/users", json={})
        recorded = httpx.get(f"{base}/_control/requests").json()
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    assert created.status_code == 201 and set(created.json()) == {"user", "key"}
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert {k: limited.json()[k] for k in ("code", "type")} == {"code": 429, "type": "RateLimited"}
    assert limited.json()["id"].startswith("err_")
    assert unknown.status_code == 404 and unknown.json()["type"] == "ResourceNotFound"
    assert [r["operation"] for r in recorded] == ["createUser", "getUser", "createUser"]
    assert json.dumps(recorded)  # recorded requests are plain data
