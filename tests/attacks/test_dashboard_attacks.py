"""Probes of every route of the operator dashboard (enumerated from its router,
so a new route is probed too): without a session, with a forged or non-operator
token, and POSTs without the CSRF token. The dashboard is platform-wide, not
per tenant: only operators (platform scope, or admin/owner of the reserved
tenant `platform`) see anything, so a tenant's own admin gets 403 everywhere."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from infra.command_client import CommandClient
from infra.security import PLATFORM_SCOPE, Keyring, TokenVerifier
from poseidon import bootstrap
from sagas.dashboard.actions import CommandSagaActions
from sagas.dashboard.app import PUBLIC, TOKEN_COOKIE, Deps, build_app
from sagas.dashboard.rules import CSRF_COOKIE, CSRF_FIELD
from tests.attacks.grpc_targets import forged_tokens
from tests.harness import mint_token

pytestmark = pytest.mark.integration

AREA = "dashboard"
CSRF = "c" * 43


@pytest.fixture
async def dashboard(namespace):
    pool = await asyncpg.create_pool(namespace.pg_dsn, min_size=1, max_size=2)
    deps = Deps(
        settings=namespace,
        pool=pool,
        verifier=TokenVerifier(Keyring(namespace.keys_dir), namespace),
        # Never started: no probe may get as far as acting on a saga.
        actions=CommandSagaActions(CommandClient(namespace, bootstrap.codec(namespace), [bootstrap.hub("saga")])),
    )
    app = build_app(deps)
    async with TestClient(TestServer(app)) as client:
        yield namespace, app, client
    await pool.close()


def guarded_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every route behind the operator check, path parameters filled."""
    routes = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter", "")
        if not path or path in PUBLIC or "prefix" in info or route.method == "HEAD":
            continue
        routes.append((route.method, path.replace("{saga_id}", str(uuid.uuid4()))))
    return sorted(set(routes))


async def answer(client, method: str, path: str, cookies: dict[str, str]):
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies(cookies)
    data = {CSRF_FIELD: cookies.get(CSRF_COOKIE, "")} if method == "POST" else None
    async with client.request(method, path, data=data, allow_redirects=False) as response:
        return response.status, response.headers.get("Location", ""), await response.text()


async def test_every_dashboard_route_refuses_callers_who_are_not_operators(dashboard, attacks):
    settings, app, client = dashboard
    routes = guarded_routes(app)
    assert len(routes) >= 9, routes
    tenant_admin = mint_token(settings, f"admin-of-acme-{uuid.uuid4()}")
    alg_none = forged_tokens(settings)["alg none"][0][0][1].removeprefix("Bearer ")
    for method, path in routes:
        attacks.tried(AREA, "no session", "303 to /login (401 for the event stream)")
        status, location, _ = await answer(client, method, path, {CSRF_COOKIE: CSRF})
        assert (status, location) == ((401, "") if path == "/events/stream" else (303, "/login")), (method, path)

        attacks.tried(AREA, "forged token (alg none, platform scope) in the session cookie", "treated as no session")
        status, location, _ = await answer(client, method, path, {CSRF_COOKIE: CSRF, TOKEN_COOKIE: alg_none})
        assert status in (303, 401) and status != 200, (method, path)

        attacks.tried(AREA, "genuine token of a tenant admin (not an operator)", "403 with the reason")
        status, _, text = await answer(client, method, path, {CSRF_COOKIE: CSRF, TOKEN_COOKIE: tenant_admin})
        assert status == 403 and "is not an operator" in text, (method, path, status, text)

        if method == "POST":
            attacks.tried(AREA, "POST without the CSRF token (operator session)", "403 CSRF check failed")
            operator = mint_token(settings, "op", "service", [PLATFORM_SCOPE])
            client.session.cookie_jar.clear()
            client.session.cookie_jar.update_cookies({TOKEN_COOKIE: operator, CSRF_COOKIE: CSRF})
            async with client.post(path, data={CSRF_FIELD: "x" * 43}, allow_redirects=False) as response:
                assert response.status == 403 and "CSRF" in await response.text(), path


async def test_login_with_a_forged_or_non_operator_token_sets_no_session(dashboard, attacks):
    settings, _, client = dashboard
    forged = {name: md[0][1].removeprefix("Bearer ") for name, (md, _) in forged_tokens(settings).items() if md}
    forged["tenant admin"] = mint_token(settings, "admin-of-acme")
    for name, token in forged.items():
        attacks.tried(AREA, f"login by pasting a forged token: {name}", "401/403 with the reason, no session cookie")
        client.session.cookie_jar.clear()
        client.session.cookie_jar.update_cookies({CSRF_COOKIE: CSRF})
        async with client.post("/login", data={CSRF_FIELD: CSRF, "token": token}, allow_redirects=False) as response:
            assert response.status in (401, 403), (name, response.status)
            assert TOKEN_COOKIE not in response.cookies, name
    # Control: an operator's token logs in.
    client.session.cookie_jar.update_cookies({CSRF_COOKIE: CSRF})
    operator = mint_token(settings, "op", "service", [PLATFORM_SCOPE])
    async with client.post("/login", data={CSRF_FIELD: CSRF, "token": operator}, allow_redirects=False) as response:
        assert response.status == 303 and TOKEN_COOKIE in response.cookies
