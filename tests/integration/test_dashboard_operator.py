"""The operator dashboard on its real dependencies: an operator logs in with a
password through the Identity hub, is recognised as an operator by a live
membership of the operator team tenant `operators` (which only the platform creates) in the Tenant read store, retries a
waiting saga's step and compensates a filtered batch — each action a command to
the Saga hub, recorded as an event with the operator's identity and shown in the
saga read store. Processors, projectors and the Identity gRPC server run as
subprocesses; the dashboard app runs on this test's loop, built as
`poseidon dashboard` builds it. The Saga hub sends each step itself (process
manager): the Tenant hub runs and answers CreateTenant, no Wallet hub runs, so
the sagas wait on OpenWallet until an operator acts."""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import AsyncExitStack
from urllib.parse import unquote

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from hubs.saga.commands import StartSaga
from hubs.tenant.aggregate import PLATFORM_ACTOR
from hubs.tenant.commands import CreateTenant
from infra.command_client import CommandClient, new_meta
from poseidon import bootstrap
from sagas.dashboard.app import build_app
from sagas.dashboard.rules import OPERATOR_TENANT
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


async def log_in(session: aiohttp.ClientSession, url: str, login: str, password: str = PASSWORD) -> aiohttp.ClientResponse:
    async with session.get(f"{url}/login") as page:
        assert page.status == 200
    csrf = session.cookie_jar.filter_cookies(url).get("poseidon_csrf")
    form = {"login": login, "password": password, "csrf_token": csrf.value if csrf else ""}
    return await session.post(f"{url}/login", data=form, allow_redirects=False)


async def post_form(session: aiohttp.ClientSession, url: str, form: dict) -> str:
    form = {**form, "csrf_token": session.cookie_jar.filter_cookies(url)["poseidon_csrf"].value}
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
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session,
        await log_in(session, url, "bob@example.com") as refused,
    ):
        assert refused.status == 403 and f"{bob} is not an operator" in await refused.text()
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session,
        await log_in(session, url, "olga@platform.example", "wrong password!") as bad,
    ):
        assert bad.status == 401 and "login refused" in await bad.text()

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:

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
