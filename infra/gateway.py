"""The API gateway: the REST API (infra/rest.py's routes over the hubs' gRPC methods),
its OpenAPI document, and Identity's OAuth2 face (JWKS, authorization-server
metadata, the token endpoint). Stateless apart from in-memory rate limits: run as
many instances as the load needs behind any HTTP load balancer.

Every request: a request id (and the caller's correlation id, or the request id) in
the reply headers, in every log line and carried to the hub (`x-correlation-id`:
the events it causes carry it); the bearer token checked against the public keys
(before any hub is asked) and passed through, so the hub applies the caller's own
roles; per-client and per-tenant rate limits; refusals as RFC 9457 problems."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import grpc
import structlog
from aiohttp import web, web_protocol
from grpc_health.v1 import health_pb2, health_pb2_grpc

from base.logging import bind_correlation
from base.settings import Settings
from infra import metrics, rest, tls, tracing
from infra.grpc_client import grpc_target
from infra.ops import OpsServer
from infra.ratelimit import TokenBuckets
from infra.rest import BadRequest, Problem, Route
from infra.security import AddressSet, TokenVerifier, Unauthenticated
from infra.service import serve_http_until_stopped

log = structlog.get_logger(__name__)

PROCESS = "gateway"
API_TITLE = "Poseidon Hub API"
OPENAPI_PATH = "/openapi.json"
CORRELATION_HEADER = "X-Correlation-Id"
CONSISTENCY_HEADER = "Poseidon-Consistency-Token"
_EXPOSED = (
    "ETag",
    "X-Request-Id",
    CORRELATION_HEADER,
    CONSISTENCY_HEADER,
    "Poseidon-Consistency",
    "Retry-After",
    "Idempotent-Replayed",
    "WWW-Authenticate",
    "Allow",
)
_ALLOWED_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "If-Match", CONSISTENCY_HEADER, CORRELATION_HEADER)
_CORRELATION = re.compile(r"^[\x21-\x7e]{1,200}$")
_POLL_S = 0.05


class Extension(Protocol):
    """HTTP endpoints of the gateway that are not one gRPC method each (Identity's OAuth2 face)."""

    def add_routes(self, app: web.Application) -> None: ...

    def openapi_paths(self) -> dict[str, dict]: ...


class HubCalls:
    """One channel per hub (TLS as configured) and a generic unary call per route."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._calls: dict[str, grpc.aio.UnaryUnaryMultiCallable] = {}

    def channel(self, hub: str) -> grpc.aio.Channel:
        if hub not in self._channels:
            interceptors = [tracing.ClientTracing()] if tracing.enabled() else None
            self._channels[hub] = tls.channel(self.settings, grpc_target(self.settings, hub), interceptors=interceptors)
        return self._channels[hub]

    def call(self, route: Route) -> grpc.aio.UnaryUnaryMultiCallable:
        if route.grpc_path not in self._calls:
            self._calls[route.grpc_path] = self.channel(route.hub).unary_unary(
                route.grpc_path,
                request_serializer=route.request_class().SerializeToString,
                response_deserializer=route.reply_class().FromString,
            )
        return self._calls[route.grpc_path]

    async def serving(self, hubs: Iterable[str]) -> bool:
        """Every hub's standard health service answers SERVING."""
        for hub in hubs:
            stub = health_pb2_grpc.HealthStub(self.channel(hub))
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                return False
        return True

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()


class Gateway:
    def __init__(
        self,
        settings: Settings,
        routes: Iterable[Route],
        verifier: TokenVerifier | None,
        extensions: Iterable[Callable[[Gateway], Extension]] = (),
        *,
        version: str = "1",
    ):
        self.settings, self.verifier = settings, verifier
        self.routes = tuple(routes)
        rest.check_routes(self.routes)
        self.hubs = HubCalls(settings)
        self.per_client = TokenBuckets(settings.gateway_rate_per_s_client)
        self.per_tenant = TokenBuckets(settings.gateway_rate_per_s_tenant)
        self.cors_origins = frozenset(settings.gateway_cors_origins)
        self.trusted_proxies = AddressSet(settings.gateway_trusted_proxies)
        self.extensions = [make(self) for make in extensions]
        own_paths = dict(_OWN_PATHS)
        for extension in self.extensions:
            own_paths.update(extension.openapi_paths())
        self.document = rest.openapi_document(
            self.routes,
            title=API_TITLE,
            version=version,
            description="REST over the hubs' gRPC methods. Errors are RFC 9457 problems naming the rule that refused.",
            extra_paths=own_paths,
        )

    @property
    def public_url(self) -> str:
        own = f"{tls.http_scheme(self.settings)}://{self.settings.gateway_host}:{self.settings.gateway_port}"
        return self.settings.gateway_public_url.rstrip("/") or own

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.settings.gateway_max_body_bytes, middlewares=[self._middleware])
        for route in self.routes:
            app.router.add_route(route.http_method, route.path, self._handler(route))
        app.router.add_get(OPENAPI_PATH, operation("getOpenApi", self._openapi))
        for extension in self.extensions:
            extension.add_routes(app)
        return app

    # -- every request ------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        if not tracing.enabled():
            return await self._serve(request, handler)
        operation = getattr(request.match_info.handler, "operation_id", "unmatched")
        # A trace of our own (a client's traceparent is only linked) continues through the gRPC call the request becomes.
        attributes = {"http.method": request.method}
        with tracing.public_span(f"gateway {operation}", request.headers, kind=tracing.SERVER, attributes=attributes):
            return await self._serve(request, handler)

    async def _serve(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        given = request.headers.get(CORRELATION_HEADER, "")
        correlation_id = given if _CORRELATION.match(given) else request_id
        request["request_id"], request["correlation_id"] = request_id, correlation_id
        bind_correlation(correlation_id, request_id=request_id)
        operation = getattr(request.match_info.handler, "operation_id", "unmatched")
        origin = request.headers.get("Origin")
        try:
            if request.method == "OPTIONS" and origin is not None:
                response = self._preflight(request, origin)
            else:
                response = await handler(request)
        except web.HTTPException as exc:  # aiohttp's own: no route (404), wrong method (405), too large (413)
            rule = {404: "NoSuchPath", 405: "MethodNotAllowed", 413: "BodyTooLarge"}.get(exc.status, "HttpError")
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
            response = self.problem_response(request, rest.problem(exc.status, rule, exc.reason, headers))
        except Exception:
            log.exception("gateway request failed", path=request.path)
            response = self.problem_response(request, Problem(500, "Internal error", "internal error", "Internal"))
        response.headers["X-Request-Id"] = request_id
        response.headers[CORRELATION_HEADER] = correlation_id
        if self.cors_origins:
            response.headers["Vary"] = "Origin"  # caches must not hand one origin's answer to another
        if origin is not None and origin.lower() in self.cors_origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = ", ".join(_EXPOSED)
        metrics.HTTP_API_REQUESTS.labels(operation, str(response.status)).inc()
        metrics.HTTP_API_LATENCY.labels(operation).observe(time.perf_counter() - started)
        if response.status >= 500:
            log.warning("gateway answered an error", path=request.path, status=response.status)
        return response

    def _preflight(self, request: web.Request, origin: str) -> web.StreamResponse:
        if origin.lower() not in self.cors_origins:
            return self.problem_response(
                request, Problem(403, "Origin not allowed", f"origin {origin} may not call this API", "CorsOrigin")
            )
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE",
                "Access-Control-Allow-Headers": ", ".join(_ALLOWED_HEADERS),
                "Access-Control-Max-Age": "600",
            },
        )

    def problem_response(self, request: web.Request, problem: Problem) -> web.Response:
        body = problem.body(request.path, request.get("request_id", ""))
        return web.json_response(body, status=problem.status, headers=problem.headers, content_type="application/problem+json")

    def limit(self, request: web.Request, client: str, *, tenant_scoped: bool = True) -> Problem | None:
        """Per-client, then per-tenant token buckets: a 429 with Retry-After when empty."""
        wait = self.per_client.acquire(client)
        scope = "client"
        tenant_id = request.match_info.get("tenant_id") if tenant_scoped else None
        if wait == 0 and tenant_id:
            wait, scope = self.per_tenant.acquire(tenant_id), "tenant"
        if wait == 0:
            return None
        seconds = self.per_client.retry_after(wait)
        return Problem(
            429,
            "Too many requests",
            f"{scope} rate limit reached; retry in {seconds} s",
            "RateLimited",
            {"Retry-After": str(seconds)},
        )

    def client_address(self, request: web.Request) -> str:
        """The caller's address: the peer's, or — when the peer is one of the trusted proxies
        (POSEIDON_GATEWAY_TRUSTED_PROXIES, a load balancer) — the last X-Forwarded-For entry
        that is not a trusted proxy. Anything a client wrote further left is not believed."""
        peer = request.remote or "unknown"
        if peer not in self.trusted_proxies:
            return peer
        hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", [])).split(",") if h.strip()]
        for hop in reversed(hops):
            if hop not in self.trusted_proxies:
                try:
                    return str(ipaddress.ip_address(hop))
                except ValueError:  # not an address: the proxy chain cannot be believed past it
                    return peer
        return peer

    def grpc_metadata(self, request: web.Request, *, bearer: bool = True) -> list[tuple[str, str]]:
        """What a hub is told with a call: the ids, the client's address (Identity's login
        limits and lockouts count per address, and believe it from the gateway, a trusted
        proxy) and, when `bearer`, the caller's bearer token — never any other credential."""
        metadata = [
            ("x-correlation-id", request["correlation_id"]),
            ("x-request-id", request["request_id"]),
            ("x-poseidon-client-address", self.client_address(request)),
        ]
        authorization = request.headers.get("Authorization", "")
        if bearer and authorization[:7].lower() == "bearer ":
            metadata.append(("authorization", authorization))
        return metadata

    # -- routes -----------------------------------------------------------------------------

    def _handler(self, route: Route):
        async def handle(request: web.Request) -> web.StreamResponse:
            client = self.client_address(request)
            if not route.public:
                try:
                    client = self.verifier.verify(_bearer(request)).id
                except Unauthenticated as exc:
                    # Refused callers count against their address too: forged tokens cost a verification each.
                    refused = self.limit(request, client, tenant_scoped=False)
                    problem = refused or rest.problem(401, "Unauthenticated", str(exc), _CHALLENGE)
                    return self.problem_response(request, problem)
            refused = self.limit(request, client)
            if refused is not None:
                return self.problem_response(request, refused)
            try:
                body = await _body(request, route)
                message = rest.build_request(route, request.match_info, _query(request), body, request.headers, client)
                wanted = _wanted_version(request, route)
            except BadRequest as exc:
                return self.problem_response(request, rest.problem(400, "InvalidArgument", str(exc)))
            except _MediaTypeError as exc:
                return self.problem_response(request, rest.problem(415, "UnsupportedMediaType", str(exc)))
            try:
                reply = await self._call(route, message, request, wanted, client)
            except grpc.aio.AioRpcError as exc:
                problem = rest.problem_of(exc.code(), exc.details() or "")
                if problem.status >= 500:
                    log.warning("hub call failed", hub=route.hub, method=route.grpc_path, code=exc.code().name)
                return self.problem_response(request, problem)
            return self._reply(route, request, reply)

        handle.operation_id = route.operation_id  # type: ignore[attr-defined]  (the metrics label)
        return handle

    async def _call(self, route: Route, message, request: web.Request, wanted: int | None, client: str):
        """The hub's answer; a read given a consistency token is asked again while the read
        store does not show that write yet: backing off (50, 100, 200… ms) within
        POSEIDON_GATEWAY_CONSISTENCY_WAIT_S, each retry charged to the client's rate limit,
        so a made-up token costs its sender, not the hub. A read still behind at the
        deadline is answered as it is, marked `Poseidon-Consistency: stale`."""
        call = self.hubs.call(route)
        deadline = time.monotonic() + self.settings.gateway_consistency_wait_s
        pause = _POLL_S
        while True:
            try:
                metadata = self.grpc_metadata(request, bearer=not route.public)
                reply = await call(message, metadata=metadata, timeout=self.settings.gateway_call_timeout_s)
            except grpc.aio.AioRpcError as exc:
                if wanted is None or exc.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() + pause >= deadline:
                    raise
            else:
                if wanted is None or (rest.reply_version(reply) or 0) >= wanted:
                    return reply
                if time.monotonic() + pause >= deadline or self.per_client.acquire(client) > 0:
                    request["stale"] = True
                    return reply
            await asyncio.sleep(pause)
            pause *= 2

    def _reply(self, route: Route, request: web.Request, reply) -> web.Response:
        headers: dict[str, str] = {}
        version = rest.reply_version(reply)
        if version is not None:
            headers["ETag"] = rest.etag(version)
            if route.affects:
                params = {
                    **request.match_info,
                    **{k: str(v) for k, v in rest.reply_json(reply).items() if isinstance(v, str | int)},
                }
                try:
                    headers[CONSISTENCY_HEADER] = rest.consistency_token(rest.fill_path(route.affects, params), version)
                except KeyError:
                    pass
        if getattr(reply, "duplicate", False):
            headers["Idempotent-Replayed"] = "true"
        if request.get("stale"):
            headers["Poseidon-Consistency"] = "stale"
        return web.json_response(rest.reply_json(reply), status=route.status, headers=headers)

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(self.document)

    async def close(self) -> None:
        await self.hubs.close()


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="poseidon"'}
_OWN_PATHS = {
    OPENAPI_PATH: {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document.",
            "tags": ["meta"],
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}},
        }
    }
}


class _ProblemHandler(web_protocol.RequestHandler):
    """aiohttp's connection handler, answering what its HTTP parser refuses (a request
    line or header too long, a malformed request) as a problem like every other refusal
    instead of plain text. Relies on aiohttp's RequestHandler.handle_error (pinned 3.14)."""

    def handle_error(self, request, status: int = 500, exc: BaseException | None = None, message: str | None = None):
        if status >= 500 or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        log.info("request refused by the HTTP parser", status=status, reason=(message or "")[:120])
        rule = {400: "MalformedRequest", 413: "BodyTooLarge", 431: "HeadersTooLarge"}.get(status, "HttpError")
        detail = "the request line or a header is too long, or the request is not valid HTTP"
        body = {"type": f"/problems/{rule}", "title": "Invalid request", "status": status, "detail": detail, "rule": rule}
        response = web.json_response(body, status=status, content_type="application/problem+json")
        response.force_close()
        return response


class _ProblemServer(web.Server):
    def __call__(self) -> web_protocol.RequestHandler:
        return _ProblemHandler(self, loop=self._loop, **self._kwargs)


class ProblemRunner(web.AppRunner):
    """An AppRunner whose connections answer HTTP-level refusals as problems (`_ProblemHandler`)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _ProblemServer  # the same object, made by aiohttp, with our handler class
        return server


def operation(operation_id: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """`handler` under the operation id the gateway's metrics label its requests with."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return await handler(request)

    handle.operation_id = operation_id  # type: ignore[attr-defined]
    return handle


class _MediaTypeError(ValueError):
    pass


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization")
    if header is None:
        raise Unauthenticated("missing bearer token (header 'Authorization: Bearer <token>')")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def _query(request: web.Request) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in request.query.items():
        out.setdefault(key, []).append(value)
    return out


async def _body(request: web.Request, route: Route) -> Any:
    if not route.takes_body:
        return None
    raw = await request.read()
    if not raw.strip():
        return None
    if request.content_type != "application/json":
        raise _MediaTypeError("the body must be application/json")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {str(exc)[:200]}") from None


def _wanted_version(request: web.Request, route: Route) -> int | None:
    token = request.headers.get(CONSISTENCY_HEADER)
    if token is None or route.http_method != "GET" or not rest.reply_has_version(route):
        return None
    path, version = rest.parse_consistency_token(token)
    return version if path == request.path else None


async def serve(settings: Settings, routes: Iterable[Route], extensions: Iterable[Callable[[Gateway], Extension]] = ()) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests finish first."""
    gateway = Gateway(settings, routes, TokenVerifier.of(settings), extensions)

    async def identity_serving() -> bool:
        # Ready once sign-in can work; any other hub away answers its own requests with 503.
        return await gateway.hubs.serving(["identity"])

    async def close(_: web.Application) -> None:
        await gateway.close()

    app = gateway.app()
    app.on_cleanup.append(close)
    ops = OpsServer(settings.ops_host, settings.ops_port_at("gateway", 0), PROCESS, {"identity": identity_serving})
    await serve_http_until_stopped(
        "gateway",
        app,
        settings,
        settings.gateway_host,
        settings.gateway_port,
        ops,
        shutdown_timeout=settings.gateway_call_timeout_s,
        path=OPENAPI_PATH,
        runner_class=ProblemRunner,
    )
