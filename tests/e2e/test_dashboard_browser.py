"""The operator saga dashboard in a real headless Chromium (Debian's, driven by
Playwright with its executable path set: no browser download): log in with a
token, filter, open a saga, retry a step with a reason, and see the timeline
update live over server-sent events without a reload; find a saga by its
correlation id and read the per-type statistics; dead letters are listed
and re-driven; log out. The browser keeps the `__Host-` Secure cookies from
http://127.0.0.1 (a loopback origin is a secure context), and after logout the
old session cookie, replayed, gets the login page. Screenshots of the main pages
go to docs/screenshots/.

The read store is the saga projection's own migrations (`projections/saga`),
filled with rows here; the saga hub is stood in for by `ReadStoreSagaActions`,
which implements the dashboard's SagaActions interface by writing the timeline
rows the hub's projection would write."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from base.settings import Settings
from infra.dlq import dead_letter
from infra.migrations import migrate
from infra.security import PLATFORM_SCOPE, TokenVerifier
from poseidon import bootstrap
from projections.saga import PROJECTION as SAGA_PROJECTION
from sagas.dashboard.actions import ActionOutcome
from sagas.dashboard.app import Deps, build_app
from sagas.dashboard.deadletters import DeadLetters
from sagas.dashboard.rules import CSRF_COOKIE, CSRF_FIELD, SESSION_COOKIE, csrf_token_for
from sagas.dashboard.sessions import SessionStore
from tests.harness import eventually, free_port, mint_token, read_topic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("POSEIDON_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class ReadStoreSagaActions:
    """Stands in for the saga hub: records the operator's action at once, and a
    moment later the retried step's success (as the hub and its projection would)."""

    def __init__(self, pool: asyncpg.Pool, schema: str):
        self.pool, self.schema = pool, schema
        self.sent: list[tuple[str, str, str, str]] = []
        self.tasks: list[asyncio.Task] = []

    async def append(self, saga_id: str, event_type: str, step: str, summary: str, actor: str, state: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            version = await conn.fetchval(
                f'UPDATE "{self.schema}".sagas SET version = version + 1, updated_at = now(), state = $2, '
                "error = CASE WHEN $2 = 'failed' THEN error ELSE '' END WHERE saga_id = $1 RETURNING version",
                saga_id,
                state,
            )
            await conn.execute(
                f'INSERT INTO "{self.schema}".saga_events (saga_id, version, tenant_id, event_type, step, summary, occurred_at, '
                "actor, event_id) SELECT saga_id, $2, tenant_id, $3, $4, $5, now(), $6, $7 FROM "
                f'"{self.schema}".sagas WHERE saga_id = $1',
                saga_id,
                version,
                event_type,
                step,
                summary,
                actor,
                uuid.uuid4(),
            )

    async def act(self, action, *, saga_id, tenant_id, step, operator, reason, correlation_id) -> ActionOutcome:
        self.sent.append((action, saga_id, operator, reason))
        await self.append(saga_id, "OperatorActed", step, f"{action}: {reason}", operator, "running")

        async def later() -> None:
            await asyncio.sleep(2.0)
            await self.append(
                saga_id, "StepSucceeded", step, "reservation r-42 captured for customer ann@example.com", "", "completed"
            )

        if action == "retry":
            self.tasks.append(asyncio.create_task(later()))
        return ActionOutcome(True, "recorded")


async def seed(pool: asyncpg.Pool, schema: str) -> str:
    async with pool.acquire() as conn:
        await migrate(conn, schema, SAGA_PROJECTION.migrations)
    now = datetime.now(UTC)
    failed_id = str(uuid.uuid4())
    rows = [
        (
            failed_id,
            "acme",
            "inbound_message",
            "failed",
            "deliver_reply",
            "corr-1",
            now - timedelta(minutes=30),
            4,
            "Facebook Send API answered 400 (#100) for psid +49 170 5550123",
        ),
        (
            str(uuid.uuid4()),
            "acme",
            "inbound_message",
            "completed",
            "capture_reservation",
            "corr-2",
            now - timedelta(hours=2),
            12,
            "",
        ),
        (str(uuid.uuid4()), "globex", "tenant_onboarding", "running", "open_wallet", "corr-3", now - timedelta(minutes=1), 3, ""),
        (str(uuid.uuid4()), "acme", "inbound_message", "compensated", "reserve_funds", "corr-4", now - timedelta(days=1), 9, ""),
        (
            str(uuid.uuid4()),
            "globex",
            "inbound_message",
            "needs_attention",
            "release_funds",
            "corr-5",
            now - timedelta(hours=5),
            7,
            "ReleaseFunds rejected: UnknownReservation",
        ),
    ]
    for saga_id, tenant, kind, state, step, corr, started, version, error in rows:
        await pool.execute(
            f'INSERT INTO "{schema}".sagas (saga_id, tenant_id, saga_type, state, current_step, correlation_id, started_at, '
            "updated_at, version, error) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
            saga_id, tenant, kind, state, step, corr, started, started + timedelta(seconds=version), version, error,
        )  # fmt: skip
    timeline = [
        ("SagaStarted", "", "inbound message from contact ann@example.com text='hello, my number is +49 170 5550123'"),
        ("StepSucceeded", "reserve_funds", "reserved 5 EUR (r-42) on wallet 3f2a"),
        ("StepSucceeded", "ask_bot", "bot answered in 320 ms"),
        ("StepFailed", "deliver_reply", "Facebook Send API answered 400 (#100); attempt 3 of 3"),
    ]
    for version, (event_type, step, summary) in enumerate(timeline, start=1):
        await pool.execute(
            f'INSERT INTO "{schema}".saga_events (saga_id, version, tenant_id, event_type, step, summary, occurred_at, actor, '
            "event_id) VALUES ($1,$2,'acme',$3,$4,$5,$6,'saga-processor',$7)",
            failed_id, version, event_type, step, summary, now - timedelta(minutes=30) + timedelta(seconds=version * 5),
            uuid.uuid4(),
        )  # fmt: skip
    return failed_id


@pytest.fixture
async def dashboard(namespace: Settings):
    pool = await asyncpg.create_pool(namespace.pg_dsn, min_size=1, max_size=4)
    schema = namespace.pg_schema("saga")
    failed_id = await seed(pool, schema)
    actions = ReadStoreSagaActions(pool, schema)
    deps = Deps(
        settings=namespace,
        pool=pool,
        verifier=TokenVerifier.of(namespace),
        actions=actions,
        dead_letters=DeadLetters(namespace, bootstrap.codec(namespace)),
    )
    runner = web.AppRunner(build_app(deps), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", failed_id, actions, namespace, SessionStore(pool, namespace.pg_schema("dashboard"))
    finally:
        for task in actions.tasks:
            task.cancel()
        await runner.cleanup()
        await pool.close()


async def test_an_operator_logs_in_filters_opens_a_saga_retries_a_step_and_sees_the_timeline_update_live(dashboard):
    from playwright.async_api import async_playwright

    url, failed_id, actions, settings, _ = dashboard
    operator = "op-" + uuid.uuid4().hex[:6]
    token = mint_token(settings, operator, scopes=[PLATFORM_SCOPE])
    codec = bootstrap.codec(settings)
    value, headers = dead_letter(
        codec, topic=settings.topic("wallet.commands"), partition=0, offset=7, key=b"w-1",
        value=b"\x00garbage for jane@example.com", reason="undecodable command", error_type="DecodeError",
        processor="wallet-processor",
    )  # fmt: skip
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic("wallet.commands.dlq"), value, key=b"w-1", headers=headers)
    finally:
        await producer.stop()

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        try:
            await page.goto(url + "/")
            assert page.url.endswith("/login")
            await page.fill("textarea[name=token]", token)
            await page.click("#login-form button[type=submit]")
            await page.wait_for_url(url + "/")
            cookies = {c["name"]: c for c in await page.context.cookies()}
            assert set(cookies) == {SESSION_COOKIE}, cookies  # the login form's CSRF cookie is spent
            session = cookies[SESSION_COOKIE]
            assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/"
            assert session["value"] != token  # the cookie carries a session id, never the token
            assert await page.text_content('[data-count="failed"]') == "1"
            assert await page.locator("#saga-table tbody tr").count() == 5

            await page.select_option("#f-state", "failed")
            await page.fill("#f-tenant", "acme")
            await page.click("#filters button[type=submit]")
            await page.wait_for_url(lambda u: "state=failed" in u and "tenant=acme" in u)
            rows = page.locator("#saga-table tbody tr")
            assert await rows.count() == 1
            await page.screenshot(path=str(SCREENSHOTS / "dashboard-saga-list.png"), full_page=True)

            await page.click(f'a[href="/sagas/{failed_id}"]')
            await page.wait_for_url(f"**/sagas/{failed_id}")
            assert "+49 170 5550123" not in await page.content()  # PII masked in error and summaries
            assert "deliver_reply" in await page.text_content("#saga-step")
            await page.fill("#action-retry input[name=reason]", "Page token renewed")
            await page.click("#action-retry button[type=submit]")
            await page.wait_for_url("**/sagas/*?msg=*")
            assert actions.sent == [("retry", failed_id, operator, "Page token renewed")]
            assert "OperatorActed" in await page.text_content("#timeline")
            assert operator in await page.text_content("#timeline")

            # From here on, no navigation: the step's success must arrive over SSE.
            await page.evaluate("window.__noReload = true")
            await page.wait_for_selector('#timeline li.ev-StepSucceeded[data-version="6"]', timeout=15_000)
            assert await page.evaluate("window.__noReload") is True
            assert await page.text_content("#saga-state") == "completed"
            assert "ann@example.com" not in await page.text_content("#timeline")
            await page.screenshot(path=str(SCREENSHOTS / "dashboard-saga-page.png"), full_page=True)

            # Find the saga by its correlation id with the search box; read the per-type statistics.
            await page.goto(url + "/")
            await page.fill("#f-find", "corr-1")
            await page.click("#filters button[type=submit]")
            await page.wait_for_url(lambda u: "q=corr-1" in u)
            assert await page.locator("#saga-table tbody tr").count() == 1
            assert failed_id in await page.text_content("#saga-table")
            await page.click("nav a[href='/stats']")
            await page.wait_for_url(url + "/stats")
            inbound = page.locator("#stats-inbound_message")
            assert await inbound.locator('[data-stat="completed"]').text_content() == "2"
            assert await inbound.locator('[data-stat="needs_attention"]').text_content() == "1"
            assert await inbound.locator('tr[data-finished="completed"]').count() == 1
            assert "ReleaseFunds rejected: UnknownReservation" in await inbound.text_content()

            await page.goto(url + "/dead-letters")
            dlq_row = page.locator("#dlq-table tbody tr", has_text="DecodeError")
            await dlq_row.wait_for()
            assert "jane@example.com" not in await page.text_content("#dlq-table")
            await page.screenshot(path=str(SCREENSHOTS / "dashboard-dead-letters.png"), full_page=True)
            await dlq_row.locator("input[name=reason]").fill("codec fixed")
            await dlq_row.locator("button").click()
            await page.wait_for_url("**/dead-letters?msg=*")
            assert "re-driven to" in await page.text_content(".flash")

            await page.click("form[action='/logout'] button")
            await page.wait_for_url(url + "/login?logged_out=1")
            assert await page.text_content("#flash") == "Logged out."
            assert SESSION_COOKIE not in {c["name"] for c in await page.context.cookies()}
            await page.context.add_cookies([{**session, "expires": -1}])  # the old cookie, put back as a thief would
            await page.goto(url + "/")
            assert page.url == url + "/login"
        finally:
            await browser.close()

    redriven = await eventually(lambda: read_topic(settings, settings.topic("wallet.commands")))
    assert redriven[0].value == b"\x00garbage for jane@example.com"
    assert dict(redriven[0].headers)["redriven-by"] == operator.encode()


async def test_the_dashboard_refuses_non_operators_and_posts_without_the_csrf_token(dashboard):
    url, failed_id, actions, settings, sessions = dashboard
    verifier = TokenVerifier.of(settings)

    async def session_for(token: str) -> str:  # as login opens one
        principal = verifier.verify(token)
        expires = datetime.now(UTC) + timedelta(minutes=5)
        return await sessions.open(
            token, principal_id=principal.id, token_id=principal.token_id, identity_session="", expires_at=expires
        )

    agent_token = mint_token(settings, "agent-" + uuid.uuid4().hex[:6])
    agent, operator = await session_for(agent_token), await session_for(mint_token(settings, "op", scopes=[PLATFORM_SCOPE]))
    async with aiohttp.ClientSession() as http:
        async with http.post(
            url + "/login", data={CSRF_FIELD: "c" * 43, "token": agent_token}, cookies={CSRF_COOKIE: "c" * 43}
        ) as r:
            assert r.status == 403 and SESSION_COOKIE not in r.cookies
        async with http.get(url + "/", cookies={SESSION_COOKIE: agent}, allow_redirects=False) as r:
            assert r.status == 403
        async with http.get(url + "/", cookies={SESSION_COOKIE: "not-a-session"}, allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/login"
        form = {"action": "abort", "reason": "forged"}
        async with http.post(
            url + f"/sagas/{failed_id}/actions", data=form, cookies={SESSION_COOKIE: operator}, allow_redirects=False
        ) as r:
            assert r.status == 403
        form[CSRF_FIELD] = csrf_token_for(agent)  # another session's token
        async with http.post(
            url + f"/sagas/{failed_id}/actions", data=form, cookies={SESSION_COOKIE: operator}, allow_redirects=False
        ) as r:
            assert r.status == 403
        async with http.get(url + "/events/stream", cookies={SESSION_COOKIE: operator}) as r:
            assert r.headers["Content-Type"] == "text/event-stream"
            first = await asyncio.wait_for(r.content.readline(), 5)
            assert first.startswith(b": connected")
    assert actions.sent == []
