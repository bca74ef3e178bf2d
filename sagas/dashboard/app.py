"""The dashboard's aiohttp application: login (Identity hub over gRPC, or a
pasted token) into an HttpOnly SameSite=Strict cookie, the operator check on
every request, double-submit CSRF on every POST, the pages, the operator
actions and the server-sent event stream of saga changes."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
import structlog
from aiohttp import web

from base.settings import Settings
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
    BadFilter,
    SagaFilter,
    check_reason,
    csrf_ok,
    is_operator,
    new_csrf_token,
)
from sagas.dashboard.store import SagaStore

log = structlog.get_logger(__name__)

TOKEN_COOKIE = "poseidon_session"
STATIC = Path(__file__).parent / "static"
POLL_S = 0.5
BATCH_LIMIT = 500
# Rows are stamped by the projector with the event's time, which may be earlier
# than the last poll when a transaction commits late: re-read this window and
# drop what the stream already sent (by saga id and version).
SSE_OVERLAP = timedelta(seconds=5)
PUBLIC = {"/login", "/healthz"}


@dataclass
class Deps:
    settings: Settings
    pool: asyncpg.Pool
    verifier: TokenVerifier
    actions: SagaActions
    dead_letters: DeadLetters | None = None
    identity_target: str = ""
    """host:port of the Identity hub's gRPC service (Login)."""
    secure_cookies: bool = False
    """Set the Secure flag (behind HTTPS)."""
    tenant_pool: asyncpg.Pool | None = None
    """The Tenant read store's pool when it lives in another database than the saga store (else `pool`)."""
    message_pool: asyncpg.Pool | None = None
    """The Message read store's pool, likewise (routing decisions on the saga page)."""


DEPS = web.AppKey("deps", Deps)
PRINCIPAL = web.RequestKey("principal", Principal)
NEW_CSRF = web.RequestKey("new_csrf", str)


def _cookie(
    response: web.StreamResponse, name: str, value: str, deps: Deps, *, http_only: bool, max_age: int | None = None
) -> None:
    response.set_cookie(name, value, httponly=http_only, samesite="Strict", secure=deps.secure_cookies, path="/", max_age=max_age)


def _csrf(request: web.Request) -> str:
    return request.cookies.get(CSRF_COOKIE) or request.get(NEW_CSRF, "")


@web.middleware
async def guard(request: web.Request, handler):
    deps = request.app[DEPS]
    if not request.cookies.get(CSRF_COOKIE):
        request[NEW_CSRF] = new_csrf_token()
    if request.method == "POST":
        form = await request.post()
        if not csrf_ok(request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD)):
            return web.Response(status=403, text="CSRF check failed: reload the page and try again")
    if request.path in PUBLIC or request.path.startswith("/static/"):
        response = await handler(request)
    else:
        token = request.cookies.get(TOKEN_COOKIE, "")
        try:
            principal = await authenticate(deps, token)
        except Unauthenticated as exc:
            if request.path == "/events/stream":
                return web.Response(status=401, text=str(exc))
            raise web.HTTPSeeOther("/login") from None
        except PermissionError as exc:
            return web.Response(status=403, text=str(exc))
        request[PRINCIPAL] = principal
        response = await handler(request)
    if request.get(NEW_CSRF) and isinstance(response, web.Response):
        _cookie(response, CSRF_COOKIE, request[NEW_CSRF], deps, http_only=False)
    return response


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
    return web.Response(text=pages.login_page(csrf=_csrf(request)), content_type="text/html")


async def login(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    form = await request.post()
    token = str(form.get("token", "")).strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    if not token and form.get("login"):
        try:
            token = await identity_login(deps, str(form["login"]), str(form.get("password", "")), str(form.get("totp_code", "")))
        except grpc.aio.AioRpcError as exc:
            return _login_error(request, f"login refused: {exc.details()}")
    try:
        principal = await authenticate(deps, token)
    except Unauthenticated as exc:
        return _login_error(request, str(exc))
    except PermissionError as exc:
        return _login_error(request, str(exc), status=403)
    log.info("operator logged in", operator=principal.id)
    response = web.HTTPSeeOther("/")
    _cookie(response, TOKEN_COOKIE, token, deps, http_only=True, max_age=deps.settings.access_token_ttl_s)
    raise response


def _login_error(request: web.Request, error: str, status: int = 401) -> web.Response:
    return web.Response(text=pages.login_page(error, csrf=_csrf(request)), content_type="text/html", status=status)


async def identity_login(deps: Deps, login_name: str, password: str, totp_code: str) -> str:
    from schemas.protos import identity_pb2, identity_pb2_grpc

    async with grpc.aio.insecure_channel(deps.identity_target) as channel:
        stub = identity_pb2_grpc.IdentityStub(channel)
        reply = await stub.Login(identity_pb2.LoginRequest(login=login_name, password=password, totp_code=totp_code), timeout=10)
    return reply.access_token


async def logout(request: web.Request) -> web.Response:
    response = web.HTTPSeeOther("/login")
    response.del_cookie(TOKEN_COOKIE, path="/")
    raise response


# --- pages -------------------------------------------------------------------


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, content_type="text/html", status=status, headers={"Cache-Control": "no-store"})


async def saga_list(request: web.Request) -> web.Response:
    store = SagaStore(request.app[DEPS].pool, request.app[DEPS].settings, request.app[DEPS].message_pool)
    try:
        f = SagaFilter.from_query(request.query)
    except BadFilter as exc:
        return _html(f"<p>{pages.e(exc)}</p><a href='/'>back</a>", status=400)
    rows, total = await store.list(f)
    counts = await store.counts(f)
    return _html(
        pages.list_page(
            rows, total, counts, f, operator=request[PRINCIPAL].id, csrf=_csrf(request), message=request.query.get("msg", "")
        )
    )


async def saga_detail(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    store = SagaStore(deps.pool, deps.settings, deps.message_pool)
    saga = await store.saga(request.match_info["saga_id"])
    if saga is None:
        return _html("<p>No such saga.</p><a href='/'>back</a>", status=404)
    events = await store.timeline(saga["saga_id"])
    routing = await store.routing(saga["tenant_id"], saga["correlation_id"])
    return _html(
        pages.saga_page(
            saga, events, routing, operator=request[PRINCIPAL].id, csrf=_csrf(request), message=request.query.get("msg", "")
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
        return _html("<p>No such saga.</p>", status=404)
    action = str(form.get("action", ""))
    try:
        if action not in ACTIONS:
            raise BadFilter(f"action must be one of {', '.join(ACTIONS)}")
        reason = check_reason(str(form.get("reason", "")))
    except BadFilter as exc:
        raise web.HTTPSeeOther(f"/sagas/{saga['saga_id']}?msg={_q(str(exc))}") from None
    operator = request[PRINCIPAL].id
    outcome = await deps.actions.act(
        action,
        saga_id=saga["saga_id"],
        tenant_id=saga["tenant_id"],
        step=str(form.get("step", "") or saga["current_step"]),
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
    await response.write(b": connected\n\nretry: 1000\n\n")
    try:
        while request.transport is not None and not request.transport.is_closing():
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


def build_app(deps: Deps) -> web.Application:
    app = web.Application(middlewares=[guard])
    app[DEPS] = deps
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", saga_list)
    app.router.add_get("/sagas", index_redirect)
    app.router.add_post("/sagas/batch", saga_batch)
    app.router.add_get("/sagas/{saga_id}", saga_detail)
    app.router.add_get("/sagas/{saga_id}/timeline", saga_timeline)
    app.router.add_post("/sagas/{saga_id}/actions", saga_action)
    app.router.add_get("/dead-letters", dead_letters)
    app.router.add_post("/dead-letters/redrive", redrive)
    app.router.add_get("/events/stream", event_stream)
    app.router.add_get("/healthz", healthz)
    app.router.add_static("/static/", STATIC)
    return app
