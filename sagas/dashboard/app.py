"""The dashboard's aiohttp application: login (Identity hub over gRPC, or a
pasted token) into a server-side session whose random id is the only thing the
cookie carries, the operator check on every request, a CSRF token bound to the
session on every POST, logout that ends the session and revokes the Identity
session, the pages, the operator actions and the server-sent event stream of
saga changes.

Cookies are always `__Host-`, Secure, HttpOnly, SameSite=Strict, Path=/, no
Domain. Browsers keep Secure cookies only from https:// or a loopback address,
which is why server.py refuses to listen elsewhere over plain HTTP."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
import jwt
import structlog
from aiohttp import web

from base.settings import Settings
from infra import tls
from infra.security import PLATFORM_SCOPE, Principal, TokenVerifier, Unauthenticated
from projections.tenant import queries as tenant_queries
from sagas.dashboard import pages
from sagas.dashboard.actions import SagaActions
from sagas.dashboard.deadletters import DeadLetters
from sagas.dashboard.rules import (
    ACTIONS,
    CSRF_COOKIE,
    CSRF_FIELD,
    OPERATOR_TENANT,
    SESSION_COOKIE,
    BadFilter,
    SagaFilter,
    StatsWindow,
    check_reason,
    check_step,
    csrf_ok,
    csrf_token_for,
    is_operator,
    new_csrf_token,
    reset_choices,
    trace_link,
)
from sagas.dashboard.sessions import Session, SessionStore
from sagas.dashboard.store import SagaStore
from sagas.registry import DEFINITIONS

log = structlog.get_logger(__name__)

STATIC = Path(__file__).parent / "static"
POLL_S = 0.5
BATCH_LIMIT = 500
CHANNELS_LIMIT = 200
"""Channels needing reauthorization shown at most (newest first)."""
# Rows are stamped by the projector with the event's time, which may be earlier
# than the last poll when a transaction commits late: re-read this window and
# drop what the stream already sent (by saga id and version).
SSE_OVERLAP = timedelta(seconds=5)
PUBLIC = {"/login", "/healthz"}
SESSION_RECHECK_S = 5.0
"""How often an open event stream re-checks its session (a logout ends it)."""
IDENTITY_TIMEOUT_S = 10.0
CLIENT_ADDRESS_METADATA = "x-poseidon-client-address"
"""The browser's address on a Login call: the Identity hub counts login attempts per
client address, and believes this from trusted proxies such as the dashboard (else
every operator's attempts would count as the dashboard's own)."""
LOGGED_OUT = {
    "1": "Logged out.",
    "identity": "Logged out of the dashboard, but the Identity hub did not confirm revoking the login session "
    "(see the dashboard's log): it ends when its refresh token expires, or revoke it with the Identity hub.",
}
"""Fixed notices for /login?logged_out=…: a link can choose one, never write its text."""


@dataclass
class Deps:
    settings: Settings
    pool: asyncpg.Pool
    verifier: TokenVerifier
    actions: SagaActions
    dead_letters: DeadLetters | None = None
    identity_target: str = ""
    """host:port of the Identity hub's gRPC service (Login, and Revoke at logout)."""
    tenant_pool: asyncpg.Pool | None = None
    """The Tenant read store's pool when it lives in another database than the saga store (else `pool`)."""
    message_pool: asyncpg.Pool | None = None
    """The Message read store's pool, likewise (routing decisions on the saga page)."""
    session_pool: asyncpg.Pool | None = None
    """The dashboard's own store (schema `<prefix>dashboard`: sessions) when in another database (else `pool`)."""


DEPS = web.AppKey("deps", Deps)
SESSIONS = web.AppKey("sessions", SessionStore)
PRINCIPAL = web.RequestKey("principal", Principal)
SESSION = web.RequestKey("session", Session)


def _cookie(response: web.StreamResponse, name: str, value: str, *, max_age: int | None = None) -> None:
    # No script reads any of them (the CSRF token travels in the page's forms).
    response.set_cookie(name, value, httponly=True, secure=True, samesite="Strict", path="/", max_age=max_age)


def _forget(response: web.StreamResponse, name: str) -> None:
    # A browser ignores a `__Host-` Set-Cookie without Secure, the deletion included.
    response.del_cookie(name, path="/", secure=True, httponly=True, samesite="Strict")


def _csrf(request: web.Request) -> str:
    return csrf_token_for(request[SESSION].session_id)


def _csrf_refused() -> web.Response:
    return web.Response(status=403, text="CSRF check failed: reload the page and try again")


@web.middleware
async def guard(request: web.Request, handler):
    if request.path in PUBLIC or request.path.startswith("/static/"):
        if request.method == "POST":  # /login: no session yet, so the login form's double-submit cookie
            form = await request.post()
            if not csrf_ok(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD)):
                return _csrf_refused()
        return await handler(request)
    try:
        session, principal = await current_session(request)
    except Unauthenticated as exc:
        if request.path == "/events/stream":
            return web.Response(status=401, text=str(exc))
        response = web.HTTPSeeOther("/login")
        if SESSION_COOKIE in request.cookies:
            _forget(response, SESSION_COOKIE)
        raise response from None
    except PermissionError as exc:
        return web.Response(status=403, text=str(exc))
    if request.method == "POST":
        form = await request.post()
        if not csrf_ok(csrf_token_for(session.session_id), form.get(CSRF_FIELD)):
            return _csrf_refused()
    request[SESSION], request[PRINCIPAL] = session, principal
    return await handler(request)


async def current_session(request: web.Request) -> tuple[Session, Principal]:
    """The request's session and its operator; Unauthenticated / PermissionError otherwise.
    The token is verified again every time (expiry, signing keys) and the operator
    role read live, so neither outlives what the session was opened with."""
    session = await request.app[SESSIONS].find(request.cookies.get(SESSION_COOKIE, ""))
    if session is None:
        raise Unauthenticated("not logged in")
    return session, await authenticate(request.app[DEPS], session.token)


async def authenticate(deps: Deps, token: str) -> Principal:
    """The token's principal if it is an operator; Unauthenticated / PermissionError otherwise."""
    if not token:
        raise Unauthenticated("not logged in")
    principal = deps.verifier.verify(token)
    role = None
    if PLATFORM_SCOPE not in principal.scopes:
        role = await tenant_queries.member_role(
            deps.tenant_pool or deps.pool, deps.settings.pg_schema("tenant"), OPERATOR_TENANT, principal.id
        )
    if not is_operator(principal.scopes, role, PLATFORM_SCOPE):
        raise PermissionError(f"{principal.id} is not an operator (platform scope, or admin of tenant {OPERATOR_TENANT!r})")
    return principal


# --- login -------------------------------------------------------------------


async def login_form(request: web.Request) -> web.Response:
    return _login_page(request, notice=LOGGED_OUT.get(request.query.get("logged_out", ""), ""))


async def login(request: web.Request) -> web.Response:
    deps, sessions = request.app[DEPS], request.app[SESSIONS]
    form = await request.post()
    token = str(form.get("token", "")).strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    identity_session = ""
    if not token and form.get("login"):
        try:
            pair = await identity_login(
                deps, str(form["login"]), str(form.get("password", "")), str(form.get("totp_code", "")), request.remote or ""
            )
        except grpc.aio.AioRpcError as exc:
            return _login_page(request, error=f"login refused: {exc.details()}", status=401)
        token, identity_session = pair.access_token, pair.session_id
    try:
        principal = await authenticate(deps, token)
        if not principal.token_id:
            raise Unauthenticated("the token has no id (jti), so logging out could not end it")
        if await sessions.is_refused(principal.token_id):
            raise Unauthenticated("this token was logged out of: log in again for a new one")
    except (Unauthenticated, PermissionError) as exc:
        if identity_session:  # a login session nobody may use: do not leave it open
            await _revoke_identity_session(deps, token, identity_session)
        return _login_page(request, error=str(exc), status=401 if isinstance(exc, Unauthenticated) else 403)
    expires_at = datetime.fromtimestamp(jwt.decode(token, options={"verify_signature": False})["exp"], UTC)
    if SESSION_COOKIE in request.cookies:  # a session already in this browser is replaced, not left behind
        await sessions.close(request.cookies[SESSION_COOKIE])
    session_id = await sessions.open(
        token, principal_id=principal.id, token_id=principal.token_id, identity_session=identity_session, expires_at=expires_at
    )
    log.info("operator logged in", operator=principal.id, identity_session=identity_session or None)
    response = web.HTTPSeeOther("/")
    _cookie(response, SESSION_COOKIE, session_id, max_age=max(1, int((expires_at - datetime.now(UTC)).total_seconds())))
    _forget(response, CSRF_COOKIE)  # the login form's token is spent
    raise response


def _login_page(request: web.Request, *, error: str = "", notice: str = "", status: int = 200) -> web.Response:
    """The login form with its double-submit token (a cookie of ≥ 32 characters is kept, else a new one set)."""
    token = request.cookies.get(CSRF_COOKIE, "")
    fresh = len(token) < 32
    if fresh:
        token = new_csrf_token()
    response = _html(pages.login_page(error, csrf=token, notice=notice), status=status)
    if fresh:
        _cookie(response, CSRF_COOKIE, token)
    return response


async def identity_login(deps: Deps, login_name: str, password: str, totp_code: str, client_address: str = ""):
    """The Identity hub's TokenPair (access token, and `session_id`: the refresh family)."""
    from schemas.protos import identity_pb2, identity_pb2_grpc

    try:
        metadata = ((CLIENT_ADDRESS_METADATA, str(ipaddress.ip_address(client_address))),)
    except ValueError:
        metadata = ()
    async with tls.channel(deps.settings, deps.identity_target) as channel:
        stub = identity_pb2_grpc.IdentityStub(channel)
        return await stub.Login(
            identity_pb2.LoginRequest(login=login_name, password=password, totp_code=totp_code),
            metadata=metadata,
            timeout=IDENTITY_TIMEOUT_S,
        )


async def _revoke_identity_session(deps: Deps, token: str, identity_session: str) -> bool:
    """Revoke one login session (refresh family) at the Identity hub, as its principal.
    True when revoked or already unknown there; False (logged) when the hub did not answer so."""
    from schemas.protos import identity_pb2, identity_pb2_grpc

    try:
        async with tls.channel(deps.settings, deps.identity_target) as channel:
            await identity_pb2_grpc.IdentityStub(channel).Revoke(
                identity_pb2.RevokeRequest(session_id=identity_session),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=IDENTITY_TIMEOUT_S,
            )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return True
        error = f"{exc.code().name}: {exc.details()}"
        log.warning("identity session not revoked", identity_session=identity_session, error=error)
        return False
    return True


async def logout(request: web.Request) -> web.Response:
    """End the session everywhere: its row (every dashboard instance reads the same
    table), every other dashboard session of the same access token, the token at
    the next login, and the Identity hub's login session when it came from one."""
    deps, sessions = request.app[DEPS], request.app[SESSIONS]
    session = await sessions.close(request[SESSION].session_id) or request[SESSION]
    await sessions.refuse_token(session.token_id, session.expires_at)
    outcome = "1"
    if session.identity_session and not await _revoke_identity_session(deps, session.token, session.identity_session):
        outcome = "identity"
    log.info("operator logged out", operator=request[PRINCIPAL].id, identity_session=session.identity_session or None)
    response = web.HTTPSeeOther(f"/login?logged_out={outcome}")
    _forget(response, SESSION_COOKIE)
    raise response


# --- pages -------------------------------------------------------------------


# Defence in depth behind the templates' escaping: only this origin's files run.
CONTENT_SECURITY_POLICY = "default-src 'self'; base-uri 'none'; object-src 'none'; form-action 'self'; frame-ancestors 'none'"


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(
        text=text,
        content_type="text/html",
        status=status,
        headers={"Cache-Control": "no-store", "Content-Security-Policy": CONTENT_SECURITY_POLICY},
    )


def _refusal(request: web.Request, title: str, text: str, status: int) -> web.Response:
    return _html(pages.message_page(title, text, operator=request[PRINCIPAL].id, csrf=_csrf(request)), status=status)


async def saga_list(request: web.Request) -> web.Response:
    store = SagaStore(request.app[DEPS].pool, request.app[DEPS].settings, request.app[DEPS].message_pool)
    try:
        f = SagaFilter.from_query(request.query)
    except BadFilter as exc:
        return _refusal(request, "Bad filter", str(exc), 400)
    rows, total = await store.list(f)
    counts = await store.counts(f)
    return _html(
        pages.list_page(
            rows, total, counts, f, operator=request[PRINCIPAL].id, csrf=_csrf(request), message=request.query.get("msg", "")
        )
    )


async def saga_stats(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    try:
        window = StatsWindow.from_query(request.query)
    except BadFilter as exc:
        return _refusal(request, "Bad window", str(exc), 400)
    types = await SagaStore(deps.pool, deps.settings, deps.message_pool).stats(window)
    return _html(pages.stats_page(types, window, operator=request[PRINCIPAL].id, csrf=_csrf(request)))


async def saga_detail(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    store = SagaStore(deps.pool, deps.settings, deps.message_pool)
    saga = await store.saga(request.match_info["saga_id"])
    if saga is None:
        return _refusal(request, "No such saga", "No such saga.", 404)
    events = await store.timeline(saga["saga_id"])
    routing = await store.routing(saga["tenant_id"], saga["correlation_id"])
    definition = DEFINITIONS.get(saga["saga_type"])
    steps = reset_choices([s.name for s in definition.steps] if definition else [], saga["state"], saga["current_step"])
    return _html(
        pages.saga_page(
            saga,
            events,
            routing,
            operator=request[PRINCIPAL].id,
            csrf=_csrf(request),
            message=request.query.get("msg", ""),
            reset_steps=steps,
            trace_url=trace_link(deps.settings.trace_url_template, saga["trace_id"]),
        )
    )


async def saga_timeline(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    store = SagaStore(deps.pool, deps.settings, deps.message_pool)
    saga = await store.saga(request.match_info["saga_id"])
    if saga is None:
        return web.json_response({"error": "no such saga"}, status=404)
    events = await store.timeline(saga["saga_id"])
    return web.json_response(
        {
            "state": saga["state"],
            "step": saga["current_step"],
            "version": saga["version"],
            "updated": pages.when(saga["updated_at"]),
            "timeline": pages.timeline_fragment(events),
        },
        headers={"Cache-Control": "no-store"},
    )


async def saga_action(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    form = await request.post()
    saga = await SagaStore(deps.pool, deps.settings, deps.message_pool).saga(request.match_info["saga_id"])
    if saga is None:
        return _refusal(request, "No such saga", "No such saga.", 404)
    action = str(form.get("action", ""))
    try:
        if action not in ACTIONS:
            raise BadFilter(f"action must be one of {', '.join(ACTIONS)}")
        reason = check_reason(str(form.get("reason", "")))
        step = check_step(str(form.get("step", ""))) if action == "reset" else str(form.get("step", "") or saga["current_step"])
    except BadFilter as exc:
        raise web.HTTPSeeOther(f"/sagas/{saga['saga_id']}?msg={_q(str(exc))}") from None
    operator = request[PRINCIPAL].id
    outcome = await deps.actions.act(
        action,
        saga_id=saga["saga_id"],
        tenant_id=saga["tenant_id"],
        step=step,
        operator=operator,
        reason=reason,
        correlation_id=saga["correlation_id"],
    )
    log.info(
        "operator action",
        operator=operator,
        action=action,
        saga_id=saga["saga_id"],
        accepted=outcome.accepted,
        detail=outcome.detail,
    )
    msg = f"{action} {'accepted' if outcome.accepted else 'refused'}: {outcome.detail}"
    raise web.HTTPSeeOther(f"/sagas/{saga['saga_id']}?msg={_q(msg)}")


async def saga_batch(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    form = await request.post()
    try:
        f = SagaFilter.from_query(request.query)
        action = str(form.get("action", ""))
        if action not in ("retry", "compensate"):
            raise BadFilter("batch action must be retry or compensate")
        reason = check_reason(str(form.get("reason", "")))
    except BadFilter as exc:
        raise web.HTTPSeeOther(f"/?msg={_q(str(exc))}") from None
    operator = request[PRINCIPAL].id
    targets = await SagaStore(deps.pool, deps.settings, deps.message_pool).ids(f, BATCH_LIMIT)
    results = await asyncio.gather(
        *(
            deps.actions.act(
                action,
                saga_id=t["saga_id"],
                tenant_id=t["tenant_id"],
                step=t["current_step"],
                operator=operator,
                reason=reason,
                correlation_id="",
            )
            for t in targets
        ),
        return_exceptions=True,
    )
    accepted = sum(1 for r in results if not isinstance(r, BaseException) and r.accepted)
    log.info(
        "operator batch action", operator=operator, action=action, filter=f.query_string(), sagas=len(targets), accepted=accepted
    )
    raise web.HTTPSeeOther(f"/?{f.query_string()}&msg={_q(f'batch {action}: {accepted} of {len(targets)} accepted')}")


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


async def dead_letters(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    letters, problem = [], ""
    if deps.dead_letters is None:
        problem = "dead-letter reading is not configured"
    else:
        try:
            letters = await deps.dead_letters.list()
        except Exception as exc:  # Kafka down: show it, do not fail the page
            problem = f"cannot read dead letters: {type(exc).__name__}: {exc}"
    return _html(
        pages.dead_letters_page(
            letters, operator=request[PRINCIPAL].id, csrf=_csrf(request), message=request.query.get("msg", ""), problem=problem
        )
    )


async def channels(request: web.Request) -> web.Response:
    """Which tenants' channels need reauthorization: read from the Tenant read store (no token is ever selected)."""
    deps = request.app[DEPS]
    rows, problem = [], ""
    try:
        rows = await tenant_queries.channels_needing_reauthorization(
            deps.tenant_pool or deps.pool, deps.settings.pg_schema("tenant"), CHANNELS_LIMIT
        )
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError, asyncpg.UndefinedColumnError):
        problem = "the Tenant read store is not there yet"
    return _html(pages.channels_page(rows, operator=request[PRINCIPAL].id, csrf=_csrf(request), problem=problem))


async def redrive(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    form = await request.post()
    try:
        reason = check_reason(str(form.get("reason", "")))
        source = await deps.dead_letters.redrive(
            str(form["topic"]), int(form["partition"]), int(form["offset"]), operator=request[PRINCIPAL].id, reason=reason
        )
        msg = f"re-driven to {source}"
    except (BadFilter, ValueError, LookupError, KeyError) as exc:
        msg = f"re-drive refused: {exc}"
    raise web.HTTPSeeOther(f"/dead-letters?msg={_q(msg)}")


# --- live updates ------------------------------------------------------------


async def event_stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: `saga` (id, state, version, step) for every change
    seen in the read store, and `counts` after each batch of changes."""
    deps = request.app[DEPS]
    store = SagaStore(deps.pool, deps.settings, deps.message_pool)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    since: datetime = await store.now() - SSE_OVERLAP
    sent: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    recheck_at = loop.time() + SESSION_RECHECK_S
    await response.write(b": connected\n\nretry: 1000\n\n")
    try:
        while request.transport is not None and not request.transport.is_closing():
            if loop.time() >= recheck_at:
                recheck_at = loop.time() + SESSION_RECHECK_S
                try:
                    await current_session(request)
                except (Unauthenticated, PermissionError):
                    break  # logged out (or no longer an operator): the browser's reconnect gets 401
            rows = await store.changed_since(since)
            fresh = [r for r in rows if sent.get(r["saga_id"], -1) < r["version"]]
            for r in fresh:
                sent[r["saga_id"]] = r["version"]
                data = {"saga_id": r["saga_id"], "state": r["state"], "version": r["version"], "step": r["current_step"]}
                await response.write(f"event: saga\ndata: {json.dumps(data)}\n\n".encode())
            if fresh:
                await response.write(f"event: counts\ndata: {json.dumps(await store.counts())}\n\n".encode())
            if rows:
                since = max(since, rows[-1]["updated_at"] - SSE_OVERLAP)
            if len(sent) > 50_000:
                sent.clear()
            await asyncio.sleep(POLL_S)
    except ConnectionResetError:
        pass  # the browser went away
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        # The browser's EventSource reconnects by itself (retry: 1000).
        log.warning("saga stream ended", error=f"{type(exc).__name__}: {exc}")
    return response


async def healthz(request: web.Request) -> web.Response:
    try:
        await request.app[DEPS].pool.fetchval("SELECT 1")
        return web.json_response({"process": "dashboard", "status": "ok"})
    except Exception as exc:
        return web.json_response({"process": "dashboard", "status": "unhealthy", "error": str(exc)}, status=503)


async def index_redirect(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/")


async def open_sessions(app: web.Application) -> None:
    """The session store, its schema brought up to date (each instance may: the migration takes a lock)."""
    deps = app[DEPS]
    sessions = SessionStore(deps.session_pool or deps.pool, deps.settings.pg_schema("dashboard"))
    await sessions.migrate()
    app[SESSIONS] = sessions


def build_app(deps: Deps) -> web.Application:
    app = web.Application(middlewares=[guard])
    app[DEPS] = deps
    app.on_startup.append(open_sessions)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", saga_list)
    app.router.add_get("/sagas", index_redirect)
    app.router.add_get("/stats", saga_stats)
    app.router.add_post("/sagas/batch", saga_batch)
    app.router.add_get("/sagas/{saga_id}", saga_detail)
    app.router.add_get("/sagas/{saga_id}/timeline", saga_timeline)
    app.router.add_post("/sagas/{saga_id}/actions", saga_action)
    app.router.add_get("/dead-letters", dead_letters)
    app.router.add_get("/channels", channels)
    app.router.add_post("/dead-letters/redrive", redrive)
    app.router.add_get("/events/stream", event_stream)
    app.router.add_get("/healthz", healthz)
    app.router.add_static("/static/", STATIC)
    return app
