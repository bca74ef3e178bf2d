"""Probes of every route of the operator dashboard (enumerated from its router,
so a new route is probed too): without a session, with a forged token, a raw
token or an unknown id in the session cookie, as a non-operator, and POSTs
without the CSRF token or with another session's; then the session itself: its
cookies' attributes, a logged-out cookie replayed, a logged-out token pasted
again, an open event stream after logout. The dashboard is platform-wide, not
per tenant: only operators (platform scope, or admin/owner of the operator team
tenant `operators`) see anything, so a tenant's own admin gets 403 everywhere."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from infra.command_client import CommandClient
from infra.migrations import migrate
from infra.security import PLATFORM_SCOPE, TokenVerifier
from poseidon import bootstrap
from projections.saga import PROJECTION as SAGA_PROJECTION
from sagas.dashboard import app as dashboard_app
from sagas.dashboard.actions import CommandSagaActions
from sagas.dashboard.app import DEPS, PUBLIC, SESSIONS, Deps, build_app
from sagas.dashboard.rules import CSRF_COOKIE, CSRF_FIELD, SESSION_COOKIE, csrf_token_for, new_session_id
from tests.attacks.grpc_targets import forged_tokens
from tests.harness import mint_token

pytestmark = pytest.mark.integration

AREA = "dashboard"
CSRF = "c" * 43


@pytest.fixture
async def dashboard(namespace):
    pool = await asyncpg.create_pool(namespace.pg_dsn, min_size=1, max_size=2)
    async with pool.acquire() as conn:  # the saga read store, empty: pages and the event stream read it
        await migrate(conn, namespace.pg_schema("saga"), SAGA_PROJECTION.migrations)
    deps = Deps(
        settings=namespace,
        pool=pool,
        verifier=TokenVerifier.of(namespace),
        # Never started: no probe may get as far as acting on a saga.
        actions=CommandSagaActions(CommandClient(namespace, bootstrap.codec(namespace), [bootstrap.hub("saga")])),
    )
    app = build_app(deps)
    async with TestClient(TestServer(app)) as client:
        yield namespace, app, client
    await pool.close()


async def open_session(app, token: str) -> str:
    """A session for `token` as login opens one (here also for a principal who is no
    operator: one whose operator role ended after logging in); returns the cookie value."""
    principal = app[DEPS].verifier.verify(token)
    return await app[SESSIONS].open(
        token,
        principal_id=principal.id,
        token_id=principal.token_id,
        identity_session="",
        expires_at=datetime.now(UTC) + timedelta(minutes=5),
    )


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


async def answer(client, method: str, path: str, cookies: dict[str, str], csrf: str = CSRF):
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies(cookies)
    data = {CSRF_FIELD: csrf} if method == "POST" else None
    async with client.request(method, path, data=data, allow_redirects=False) as response:
        return response.status, response.headers.get("Location", ""), await response.text()


async def log_in(client, token: str):
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({CSRF_COOKIE: CSRF})
    return await client.post("/login", data={CSRF_FIELD: CSRF, "token": token}, allow_redirects=False)


async def test_every_dashboard_route_refuses_callers_who_are_not_operators(dashboard, attacks):
    settings, app, client = dashboard
    routes = guarded_routes(app)
    assert len(routes) >= 9, routes
    tenant_admin = await open_session(app, mint_token(settings, f"admin-of-acme-{uuid.uuid4()}"))
    alg_none = forged_tokens(settings)["alg none"][0][0][1].removeprefix("Bearer ")
    operator_token = mint_token(settings, "op", "service", [PLATFORM_SCOPE])
    operator, other_operator = await open_session(app, operator_token), await open_session(app, operator_token)
    for method, path in routes:
        no_session = (401, "") if path == "/events/stream" else (303, "/login")
        attacks.tried(AREA, "no session", "303 to /login (401 for the event stream)")
        status, location, _ = await answer(client, method, path, {CSRF_COOKIE: CSRF})
        assert (status, location) == no_session, (method, path)

        for what, cookie in (
            ("forged token (alg none, platform scope) in the session cookie", alg_none),
            ("a genuine operator token in the session cookie (a session id is expected)", operator_token),
            ("a session id that was never issued", new_session_id()),
        ):
            attacks.tried(AREA, what, "treated as no session")
            status, location, _ = await answer(client, method, path, {SESSION_COOKIE: cookie})
            assert (status, location) == no_session, (what, method, path)

        attacks.tried(AREA, "the old cookie name `poseidon_session` (no __Host- prefix) with a valid session id", "ignored")
        status, location, _ = await answer(client, method, path, {"poseidon_session": operator})
        assert (status, location) == no_session, (method, path)

        attacks.tried(AREA, "session of a tenant admin (not an operator)", "403 with the reason")
        status, _, text = await answer(client, method, path, {SESSION_COOKIE: tenant_admin}, csrf_token_for(tenant_admin))
        assert status == 403 and "is not an operator" in text, (method, path, status, text)

        if method == "POST":
            attacks.tried(AREA, "POST without the CSRF token (operator session)", "403 CSRF check failed")
            status, _, text = await answer(client, method, path, {SESSION_COOKIE: operator}, "x" * 43)
            assert status == 403 and "CSRF" in text, path

            attacks.tried(AREA, "POST with a double-submit pair planted in cookie and form", "403 CSRF check failed")
            status, _, text = await answer(client, method, path, {SESSION_COOKIE: operator, CSRF_COOKIE: CSRF}, CSRF)
            assert status == 403 and "CSRF" in text, path

            attacks.tried(AREA, "POST with another session's CSRF token (same operator, same token)", "403 CSRF check failed")
            status, _, text = await answer(client, method, path, {SESSION_COOKIE: operator}, csrf_token_for(other_operator))
            assert status == 403 and "CSRF" in text, path


async def test_a_csrf_token_valid_for_one_session_is_refused_with_another_sessions_cookie(dashboard, attacks):
    settings, app, client = dashboard
    a = await open_session(app, mint_token(settings, "op-a", "service", [PLATFORM_SCOPE]))
    b = await open_session(app, mint_token(settings, "op-b", "service", [PLATFORM_SCOPE]))
    attacks.tried(AREA, "logout POST carrying session A's CSRF token with session B's cookie", "403, B stays logged in")
    status, _, text = await answer(client, "POST", "/logout", {SESSION_COOKIE: b}, csrf_token_for(a))
    assert status == 403 and "CSRF" in text
    assert await app[SESSIONS].find(b) is not None
    # Control: B's own token passes.
    status, location, _ = await answer(client, "POST", "/logout", {SESSION_COOKIE: b}, csrf_token_for(b))
    assert (status, location) == (303, "/login?logged_out=1")


async def test_login_with_a_forged_or_non_operator_token_sets_no_session(dashboard, attacks):
    settings, _, client = dashboard
    forged = {name: md[0][1].removeprefix("Bearer ") for name, (md, _) in forged_tokens(settings).items() if md}
    forged["tenant admin"] = mint_token(settings, "admin-of-acme")
    for name, token in forged.items():
        attacks.tried(AREA, f"login by pasting a forged token: {name}", "401/403 with the reason, no session cookie")
        async with await log_in(client, token) as response:
            assert response.status in (401, 403), (name, response.status)
            assert SESSION_COOKIE not in response.cookies, name
    attacks.tried(AREA, "login POST without the login form's CSRF cookie", "403")
    client.session.cookie_jar.clear()
    operator = mint_token(settings, "op", "service", [PLATFORM_SCOPE])
    async with client.post("/login", data={CSRF_FIELD: CSRF, "token": operator}, allow_redirects=False) as response:
        assert response.status == 403 and SESSION_COOKIE not in response.cookies
    # Control: an operator's token logs in.
    async with await log_in(client, operator) as response:
        assert response.status == 303 and SESSION_COOKIE in response.cookies


async def test_every_cookie_is_host_prefixed_secure_http_only_and_same_site_strict(dashboard, attacks):
    settings, _, client = dashboard
    attacks.tried(AREA, "attributes of every cookie the dashboard sets (login form, session, logout)", "__Host-, Secure...")
    client.session.cookie_jar.clear()
    async with client.get("/login") as page:
        set_cookies = page.headers.getall("Set-Cookie")
    async with await log_in(client, mint_token(settings, "op", "service", [PLATFORM_SCOPE])) as response:
        set_cookies += response.headers.getall("Set-Cookie")
        session = response.cookies[SESSION_COOKIE].value
    for _ in ("logout", "the same again: no session any more, the stale cookie is cleared on the way to /login"):
        client.session.cookie_jar.clear()
        async with client.post(
            "/logout", data={CSRF_FIELD: csrf_token_for(session)}, cookies={SESSION_COOKIE: session}, allow_redirects=False
        ) as response:
            assert response.status == 303
            set_cookies += response.headers.getall("Set-Cookie")
    names = {c.split("=", 1)[0] for c in set_cookies}
    assert names == {SESSION_COOKIE, CSRF_COOKIE}, set_cookies
    for cookie in set_cookies:
        attributes = {a.strip().split("=", 1)[0].lower(): a.strip() for a in cookie.split(";")[1:]}
        assert cookie.startswith("__Host-"), cookie
        assert {"secure", "httponly", "samesite", "path"} <= attributes.keys(), cookie
        assert attributes["samesite"].lower() == "samesite=strict" and attributes["path"] == "Path=/", cookie
        assert "domain" not in attributes, cookie


async def test_after_logout_the_old_cookie_and_the_old_token_are_refused(dashboard, attacks):
    settings, app, client = dashboard
    token = mint_token(settings, "op", "service", [PLATFORM_SCOPE])
    async with await log_in(client, token) as response:
        session = response.cookies[SESSION_COOKIE].value
    same_token_elsewhere = await open_session(app, token)  # the same token, logged in from another browser
    status, _, html = await answer(client, "GET", "/", {SESSION_COOKIE: session})
    assert status == 200 and csrf_token_for(session) in html

    status, location, _ = await answer(client, "POST", "/logout", {SESSION_COOKIE: session}, csrf_token_for(session))
    assert (status, location) == (303, "/login?logged_out=1")
    async with client.get("/login?logged_out=1") as page:
        assert "Logged out." in await page.text()

    replays = {"the logged-out cookie replayed": session, "another session of the same token": same_token_elsewhere}
    for what, cookie in replays.items():
        attacks.tried(AREA, what, "303 to /login, 401 for the event stream")
        status, location, _ = await answer(client, "GET", "/", {SESSION_COOKIE: cookie})
        assert (status, location) == (303, "/login"), what
        status, _, _ = await answer(client, "GET", "/events/stream", {SESSION_COOKIE: cookie})
        assert status == 401, what

    attacks.tried(AREA, "the logged-out access token pasted into the login form again", "401, no session")
    async with await log_in(client, token) as response:
        assert response.status == 401 and SESSION_COOKIE not in response.cookies
        assert "logged out" in await response.text()


async def test_an_open_event_stream_ends_when_its_session_is_logged_out(dashboard, attacks, monkeypatch):
    settings, app, client = dashboard
    monkeypatch.setattr(dashboard_app, "SESSION_RECHECK_S", 0.3)
    session = await open_session(app, mint_token(settings, "op", "service", [PLATFORM_SCOPE]))
    attacks.tried(AREA, "an event stream kept open after logout", "the server ends it at its next session check")
    client.session.cookie_jar.clear()
    async with client.get("/events/stream", cookies={SESSION_COOKIE: session}) as stream:
        assert stream.status == 200
        assert (await asyncio.wait_for(stream.content.readline(), 5)).startswith(b": connected")
        await asyncio.sleep(1.5)  # several session checks pass while the session lives
        assert not stream.content.at_eof()
        await app[SESSIONS].close(session)
        rest = await asyncio.wait_for(stream.content.read(), 5)  # returns once the server ends the stream
        assert b"event: saga" not in rest
