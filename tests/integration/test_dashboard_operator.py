"""The operator dashboard on its real dependencies: an operator logs in with a
password through the Identity hub, is recognised as an operator by a live
membership of the operator team tenant `operators` (which only the platform creates) in the Tenant read store, retries a
waiting saga's step and compensates a filtered batch — each action a command to
the Saga hub, recorded as an event with the operator's identity and shown in the
saga read store — and logs out, which ends the dashboard session and revokes
the Identity hub's login session. Processors, projectors and the Identity gRPC server run as
subprocesses; the dashboard app runs on this test's loop, built as
`poseidon dashboard` builds it. The Saga hub sends each step itself (process
manager): the Tenant hub runs and answers CreateTenant, no Wallet hub runs, so
the sagas wait on OpenWallet until an operator acts."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from contextlib import AsyncExitStack
from urllib.parse import unquote

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from yarl import URL

from hubs.saga.commands import StartSaga
from hubs.tenant.aggregate import PLATFORM_ACTOR
from hubs.tenant.commands import CreateTenant
from infra.command_client import CommandClient, new_meta
from poseidon import bootstrap
from sagas.dashboard.app import build_app
from sagas.dashboard.rules import OPERATOR_TENANT, SESSION_COOKIE
from sagas.dashboard.server import deps_for
from schemas.protos import identity_pb2 as pb
from schemas.protos import identity_pb2_grpc
from tests.harness import channel, eventually, fetch, free_port

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"
ROLES = {"identity": ("processor", "projector", "grpc"), "tenant": ("processor", "projector"), "saga": ("processor", "projector")}


@pytest.fixture
async def dashboard(platform):
    for hub, roles in ROLES.items():
        for role in roles:
            platform.start(role, hub, wait=False)
    for hub, roles in ROLES.items():
        for role in roles:
            await asyncio.to_thread(platform.wait_healthy, f"{hub}-{role}", 90)
    settings = platform.settings
    codec = bootstrap.codec(settings)
    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(CommandClient(settings, codec, [bootstrap.hub("saga"), bootstrap.hub("tenant")]))
        pool = await asyncpg.create_pool(settings.pg_dsn, min_size=1, max_size=4)
        stack.push_async_callback(pool.close)
        runner = web.AppRunner(build_app(deps_for(settings, pool, client)), access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield settings, client, f"http://127.0.0.1:{port}"


async def register(settings, login: str) -> str:
    async with channel(settings, "identity", ()) as ch:
        reply = await identity_pb2_grpc.IdentityStub(ch).Register(pb.RegisterRequest(login=login, password=PASSWORD), timeout=90)
    return reply.principal_id


def browser(url: str) -> aiohttp.ClientSession:
    """A client that keeps cookies as a browser does on http://127.0.0.1: the
    dashboard's are Secure, and a loopback origin counts as secure."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=url))


async def form_csrf(session: aiohttp.ClientSession, page_url: str) -> str:
    """The CSRF token in a page's forms, read as a browser's form submission would."""
    async with session.get(page_url) as page:
        assert page.status == 200, page.status
        return re.search(r'name="csrf_token" value="([^"]+)"', await page.text())[1]


async def log_in(session: aiohttp.ClientSession, url: str, login: str, password: str = PASSWORD) -> aiohttp.ClientResponse:
    form = {"login": login, "password": password, "csrf_token": await form_csrf(session, f"{url}/login")}
    return await session.post(f"{url}/login", data=form, allow_redirects=False)


async def post_form(session: aiohttp.ClientSession, url: str, form: dict) -> str:
    form = {**form, "csrf_token": await form_csrf(session, f"{URL(url).origin()}/")}
    async with session.post(url, data=form, allow_redirects=False) as reply:
        assert reply.status == 303, await reply.text()
        return reply.headers["Location"]


async def start_waiting_saga(settings, client: CommandClient) -> str:
    saga_id, tenant = str(uuid.uuid4()), f"t-{uuid.uuid4().hex[:8]}"
    body = {"tenant_id": tenant, "name": "Waiting Ltd", "owner_id": "ann", "currency": "EUR", "default_app_id": "app-1"}
    result = await client.send(
        StartSaga(new_meta(saga_id, tenant, actor="test"), "tenant_onboarding", json.dumps(body)), timeout=90
    )
    assert result.accepted, result.reason
    return saga_id


async def saga_events(settings, saga_id: str) -> list:
    return await fetch(
        settings, settings.pg_schema("saga"), "SELECT * FROM saga_events WHERE saga_id = $1 ORDER BY version", uuid.UUID(saga_id)
    )


async def states(settings, ids: list[str]) -> dict[str, str]:
    rows = await fetch(
        settings, settings.pg_schema("saga"), "SELECT saga_id::text, state FROM sagas WHERE saga_id = ANY($1::uuid[])", ids
    )
    return {r["saga_id"]: r["state"] for r in rows}


async def test_an_operator_logs_in_with_a_password_retries_a_step_and_compensates_a_filtered_batch(dashboard):
    settings, client, url = dashboard
    olga = await register(settings, "olga@platform.example")
    bob = await register(settings, "bob@example.com")
    squat = CreateTenant(new_meta(OPERATOR_TENANT, OPERATOR_TENANT, actor=bob), "Operators", bob)
    refused = await client.send(squat, timeout=90)
    assert not refused.accepted and "operator team" in refused.reason
    team = CreateTenant(new_meta(OPERATOR_TENANT, OPERATOR_TENANT, actor=PLATFORM_ACTOR), "Operators", olga)
    made = await client.send(team, timeout=90)
    assert made.accepted, made.reason
    sagas = [await start_waiting_saga(settings, client) for _ in range(2)]
    await eventually(lambda: _all(waiting_steps(settings, sagas), "open_wallet", 2), timeout=60)

    # Not an operator: Identity accepts the password, the dashboard refuses the principal.
    async with (
        browser(url) as session,
        await log_in(session, url, "bob@example.com") as refused,
    ):
        assert refused.status == 403 and f"{bob} is not an operator" in await refused.text()
    async with (
        browser(url) as session,
        await log_in(session, url, "olga@platform.example", "wrong password!") as bad,
    ):
        assert bad.status == 401 and "login refused" in await bad.text()

    async with browser(url) as session:

        async def logged_in():
            async with await log_in(session, url, "olga@platform.example") as reply:
                return reply.status == 303  # the membership is read live: allow the projector its moment

        await eventually(logged_in, timeout=60)
        async with session.get(f"{url}/?state=waiting&type=tenant_onboarding") as page:
            html = await page.text()
        assert page.status == 200 and all(s in html for s in sagas)

        # Retry one saga's waiting step: the Saga hub records who did it and why, and asks again.
        target = sagas[0]
        where = await post_form(session, f"{url}/sagas/{target}/actions", {"action": "retry", "reason": "tenant hub was down"})
        assert "retry accepted" in unquote(where), where

        async def retried():
            rows = await saga_events(settings, target)
            acted = [r for r in rows if r["event_type"] == "OperatorActed"]
            again = [r for r in rows if r["event_type"] == "StepRequested" and "attempt 2" in r["summary"]]
            return (acted, again) if acted and again else None

        acted, _ = await eventually(retried, timeout=60)
        assert acted[0]["actor"] == olga and "retry" in acted[0]["summary"] and "tenant hub was down" in acted[0]["summary"]
        async with session.get(f"{url}/sagas/{target}") as page:
            assert "tenant hub was down" in await page.text()

        # Compensate every waiting onboarding saga at once: the tenant each one created is
        # archived (its compensation, answered by the Tenant hub), and both end compensated.
        where = await post_form(
            session, f"{url}/sagas/batch?state=waiting&type=tenant_onboarding", {"action": "compensate", "reason": "bad batch"}
        )
        assert "msg=batch compensate: 2 of 2 accepted" in unquote(where), where
        await eventually(lambda: _all(states(settings, sagas), "compensated", 2), timeout=60)
        for saga_id in sagas:
            rows = await saga_events(settings, saga_id)
            kinds = [r["event_type"] for r in rows]
            assert kinds[-4:] == ["OperatorActed", "CompensationRequested", "Compensated", "SagaAborted"], kinds
            assert [r["step"] for r in rows if r["event_type"] == "Compensated"] == ["create_tenant"]


async def test_logging_out_revokes_the_identity_login_session_and_the_old_cookie_no_longer_works(dashboard):
    settings, client, url = dashboard
    olga = await register(settings, "olga@platform.example")
    team = CreateTenant(new_meta(OPERATOR_TENANT, OPERATOR_TENANT, actor=PLATFORM_ACTOR), "Operators", olga)
    made = await client.send(team, timeout=90)
    assert made.accepted, made.reason

    async with browser(url) as session:

        async def logged_in():
            async with await log_in(session, url, "olga@platform.example") as reply:
                return reply.status == 303

        await eventually(logged_in, timeout=60)
        cookie = session.cookie_jar.filter_cookies(url)[SESSION_COOKIE].value
        rows = await fetch(settings, settings.pg_schema("dashboard"), "SELECT identity_session FROM sessions")
        assert len(rows) == 1 and rows[0]["identity_session"], rows  # the Identity hub's refresh family
        family = uuid.UUID(rows[0]["identity_session"])
        assert await eventually(lambda: families(settings, olga, family), timeout=30) == {family: ("active", "")}

        where = await post_form(session, f"{url}/logout", {})
        assert where == "/login?logged_out=1", where
        assert SESSION_COOKIE not in session.cookie_jar.filter_cookies(url)

    # The stolen cookie replayed: back to the login page, however often.
    async with aiohttp.ClientSession() as thief:
        for path in ("/", f"/sagas/{uuid.uuid4()}"):
            async with thief.get(url + path, cookies={SESSION_COOKIE: cookie}, allow_redirects=False) as reply:
                assert (reply.status, reply.headers["Location"]) == (303, "/login"), path

    # The Identity hub revoked the login session: its refresh token is refused from now on
    # (Refresh reads this status and refuses anything but 'active'). Earlier attempts that
    # logged in at Identity before the membership was visible were refused by the dashboard,
    # and their login sessions revoked then: none stays open.
    async def all_revoked():
        found = await families(settings, olga)
        return found if found and all(status == "revoked" for status, _ in found.values()) else None

    found = await eventually(all_revoked, timeout=30)
    assert found[family] == ("revoked", "logout"), found


async def families(settings, principal_id: str, only: uuid.UUID | None = None) -> dict[uuid.UUID, tuple[str, str]]:
    """The principal's Identity login sessions (refresh families): id → (status, revoked_reason)."""
    rows = await fetch(
        settings,
        settings.pg_schema("identity"),
        "SELECT family_id, status, revoked_reason FROM refresh_families WHERE principal_id = $1",
        uuid.UUID(principal_id),
    )
    return {r["family_id"]: (r["status"], r["revoked_reason"]) for r in rows if only in (None, r["family_id"])}


async def waiting_steps(settings, ids: list[str]) -> dict[str, str]:
    """The step each saga waits on ("" if it is not waiting)."""
    rows = await fetch(
        settings,
        settings.pg_schema("saga"),
        "SELECT saga_id::text, state, current_step FROM sagas WHERE saga_id = ANY($1::uuid[])",
        ids,
    )
    return {r["saga_id"]: r["current_step"] if r["state"] == "waiting" else "" for r in rows}


async def _all(states_coro, state: str, n: int) -> bool:
    found = await states_coro
    return len(found) == n and all(v == state for v in found.values())
