"""The one gRPC bootstrap every hub's service runs on: asyncpg pool on the hub's
read-store schema, bearer-token verification and the caller's principal, the
role check, standard health service and server reflection (so grpcurl and
grpc_health_probe work), metrics per method, clean errors (never a stack trace
to the caller), ops endpoint, graceful shutdown."""

from __future__ import annotations

import asyncio
import gc
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import grpc
import structlog
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from base.settings import Settings
from infra import metrics, tls, tracing
from infra.command_client import CommandClient, CommandResult, CommandTimeout, set_current_correlation
from infra.migrations import migrate
from infra.ops import OpsServer
from infra.outage import STORE_AWAY
from infra.rest import Route
from infra.security import (
    Authorizer,
    Keyring,
    PermissionDenied,
    TokenVerifier,
    Unauthenticated,
    bearer_token,
    set_current_principal,
)
from infra.service import on_stop_signal
from infra.stores import Stores, keep_session

log = structlog.get_logger(__name__)


def to_timestamp(dt: datetime) -> Timestamp:
    """A protobuf Timestamp of an aware datetime (every service answers times this way)."""
    ts = Timestamp()
    ts.FromDatetime(dt)
    return ts


class InvalidArgument(ValueError):
    """A request field is missing or malformed; the message names the field."""


class NotFound(LookupError):
    """The requested entity does not exist for the caller's tenant."""


class FailedPrecondition(Exception):
    """The request is well-formed but the state does not allow it (a command was rejected)."""


def refusal(result: CommandResult, not_found: Mapping[str, str] | None = None) -> Exception:
    """The error a hub's refusal of a command becomes, for every service that sends one:
    InvalidCommand → INVALID_ARGUMENT, a role or tenant refusal → PERMISSION_DENIED, a
    missing aggregate (or a rule in `not_found`, with its words) → NOT_FOUND, any other
    rule → FAILED_PRECONDITION "<Rule>: reason" (the REST API names the rule from it)."""
    if not_found and result.rejection in not_found:
        return NotFound(not_found[result.rejection])
    if result.rejection == "InvalidCommand":
        return InvalidArgument(result.reason)
    if result.rejection in ("InsufficientRole", "TenantMismatch"):
        return PermissionDenied(result.reason)
    if result.rejection == "AggregateNotFound":
        return NotFound(result.reason)
    return FailedPrecondition(f"{result.rejection}: {result.reason}")


class ResourceExhausted(Exception):
    """Too many requests from this caller or source: the message says when to retry."""


class Unavailable(Exception):
    """An outside system the call needs did not answer usefully: try again later."""


@dataclass(frozen=True)
class ServiceDeps:
    """What a hub's servicer may use; built once per server by the bootstrap."""

    settings: Settings
    pool: asyncpg.Pool
    """Pool whose search_path is the hub's read-store schema."""
    authorizer: Authorizer
    keyring: Keyring | None
    """The private signing keys, for the one service that issues tokens (`issues_tokens`); None elsewhere."""
    commands: CommandClient | None
    """Started when the service declares `sends_commands`; None otherwise."""
    extensions: Mapping[str, Any] = field(default_factory=dict)
    """What the composition root hands this service from layers it may not import (the
    Tenant service's Facebook page control, implemented by the Facebook spoke), by name."""


@dataclass(frozen=True)
class QueryService:
    """What a hub declares for its gRPC service (`hubs/<hub>/service.py: SERVICE`)."""

    hub: str
    read_model: Any
    """The ProjectionSpec whose schema the queries read (migrated at start)."""
    service_names: Sequence[str]
    """Full proto service names, for health and reflection."""
    add_to_server: Callable[[grpc.aio.Server, ServiceDeps], None]
    public_methods: frozenset[str] = frozenset()
    """Full method names callable without a token (`/pkg.Service/Login`)."""
    sends_commands: bool = False
    """The service sends commands to hubs (Identity, Tenant): start a CommandClient."""
    issues_tokens: bool = False
    """The service signs access tokens (Identity): it alone is handed the private keyring.
    Every server verifies with the public keys only."""
    http_routes: Sequence[Route] = ()
    """The REST operations the API gateway answers with this service's methods."""
    http_fields: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """JSON Schema of its request fields by name (patterns, enums, lengths), for the OpenAPI document."""


_UNGUARDED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


_REFUSAL_STATUS = (
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
)
"""A refusal the caller is told about as it is: its status and its own message."""
_REFUSALS = tuple(refusal for refusal, _ in _REFUSAL_STATUS)


_CORRELATION = re.compile(r"^[\x21-\x7e]{1,200}$")


def _correlation_of(metadata) -> str | None:
    """The caller's `x-correlation-id` (the API gateway's request), when it is a sane token."""
    for key, value in metadata or ():
        if key == "x-correlation-id":
            text = value.decode() if isinstance(value, bytes) else value
            return text if _CORRELATION.match(text) else None
    return None


class GuardInterceptor(grpc.aio.ServerInterceptor):
    """Every unary call: verifies the bearer token (except public methods and the
    standard health/reflection services) and makes the caller current, maps our
    exceptions to status codes, and records per-method metrics. An unexpected
    exception becomes INTERNAL with a generic message (the stack trace is logged
    here, never sent)."""

    def __init__(self, verifier: TokenVerifier, public_methods: frozenset[str] = frozenset()):
        self.verifier, self.public_methods = verifier, public_methods

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        guarded_method = method not in self.public_methods and not method.startswith(_UNGUARDED_PREFIXES)
        if handler is None:
            return handler
        if handler.unary_unary is None:
            if guarded_method:
                raise RuntimeError(f"{method}: only unary methods can be guarded")
            return handler
        inner = handler.unary_unary
        metadata = handler_call_details.invocation_metadata

        async def guarded(request, context: grpc.aio.ServicerContext):
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                set_current_correlation(_correlation_of(metadata))
                set_current_principal(self.verifier.verify(bearer_token(metadata)) if guarded_method else None)
                return await inner(request, context)
            except _REFUSALS as exc:
                code = next(status for refusal, status in _REFUSAL_STATUS if isinstance(exc, refusal))
                await context.abort(code, str(exc))
            except CommandTimeout as exc:
                code = grpc.StatusCode.UNAVAILABLE
                log.warning("hub did not answer in time", method=method, error=str(exc))
                await context.abort(code, "the hub did not answer in time; retry (with the same command id, if any)")
            except (OSError, *STORE_AWAY) as exc:
                code = grpc.StatusCode.UNAVAILABLE
                log.warning("read store unavailable", method=method, error=str(exc))
                await context.abort(code, "read store unavailable, retry later")
            except asyncio.CancelledError:
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception as exc:
                if isinstance(exc, grpc.aio.AbortError) or type(exc).__name__ == "AbortError":
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                code = grpc.StatusCode.INTERNAL
                log.exception("call failed", method=method)
                await context.abort(code, "internal error")
            finally:
                set_current_principal(None)
                set_current_correlation(None)
                metrics.GRPC_REQUESTS.labels(method, code.name).inc()
                metrics.GRPC_LATENCY.labels(method).observe(time.perf_counter() - started)

        async def traced(request, context: grpc.aio.ServicerContext):
            # The caller's trace (traceparent in the metadata) continues through the call and what it sends.
            with tracing.span(f"grpc {method}", metadata, kind=tracing.SERVER, attributes={"rpc.method": method}):
                return await guarded(request, context)

        return grpc.unary_unary_rpc_method_handler(
            traced if tracing.enabled() else guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@dataclass
class RunningServer:
    server: grpc.aio.Server
    deps: ServiceDeps
    health: health.aio.HealthServicer
    address: str

    stores: Stores
    """Pools of the other read stores the server consults (the role lookup's)."""

    async def stop(self, grace: float = 5) -> None:
        await self.server.stop(grace=grace)
        if self.deps.commands is not None:
            await self.deps.commands.stop()
        await self.deps.pool.close()
        await self.stores.close()


RoleLookup = Callable[[str, str], Awaitable[str | None]]
"""async (tenant_id, principal_id) -> role or None: what the Authorizer asks."""


async def start_server(
    service: QueryService,
    settings: Settings,
    *,
    role_lookup: Callable[[Stores], RoleLookup],
    commands: CommandClient | None = None,
    port: int | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> RunningServer:
    """Start the gRPC server (used by `serve`, and in-process by benchmarks and
    tests). The composition root hands in how a caller's role is looked up (given
    the server's pool) and, for a service that sends commands, the command client
    (started here, stopped with the server). The role lookup reaches its read
    store through `Stores` (it may live in another database)."""
    if service.sends_commands and commands is None:
        raise ValueError(f"the {service.hub} query service sends commands: it needs a command client")
    schema = settings.pg_schema(service.read_model.name)
    dsn = settings.dsn_for(service.read_model.name)
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn, schema, service.read_model.migrations)
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(
        dsn,
        min_size=2,
        max_size=10,
        reset=keep_session,
        server_settings={"search_path": schema, "application_name": f"{service.hub}-grpc"},
    )
    keyring = Keyring.of(settings) if service.issues_tokens else None
    stores = Stores(settings, max_size=10)  # role lookups: one per guarded call, as many as the hub pool
    if commands is not None:
        await commands.start()
    deps = ServiceDeps(
        settings=settings,
        pool=pool,
        authorizer=Authorizer(role_lookup(stores)),
        keyring=keyring,
        commands=commands,
        extensions=dict(extensions or {}),
    )
    server = grpc.aio.server(
        interceptors=[GuardInterceptor(TokenVerifier.of(settings), service.public_methods)],
        # Two servers on one port must fail loudly, not share it and answer each other's calls.
        options=[("grpc.so_reuseport", 0)],
    )
    service.add_to_server(server, deps)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *service.service_names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*service.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    address = f"{settings.grpc_host}:{port if port is not None else settings.grpc_port(service.hub)}"
    credentials = tls.server_credentials(settings)
    bound = server.add_secure_port(address, credentials) if credentials is not None else server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    # Start-up objects never die: keep them out of the collector's generations so
    # its pauses (15–25 ms measured under load) stay short and rare.
    gc.collect()
    gc.freeze()
    log.info("gRPC listening", hub=service.hub, address=address, schema=schema)
    return RunningServer(server, deps, health_servicer, address, stores)


async def serve(
    service: QueryService,
    settings: Settings,
    *,
    role_lookup: Callable[[Stores], RoleLookup],
    commands: CommandClient | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> None:
    running = await start_server(service, settings, role_lookup=role_lookup, commands=commands, extensions=extensions)

    async def read_store_ok() -> bool:
        async with running.deps.pool.acquire() as conn:
            return await conn.fetchval("SELECT 1") == 1

    ops = OpsServer(
        settings.ops_host, settings.ops_port_for("grpc", service.hub), f"{service.hub}-grpc", {"read_store": read_store_ok}
    )
    await ops.start()
    stop = asyncio.Event()
    on_stop_signal(stop.set)
    watcher = asyncio.create_task(_watch_health(read_store_ok, running.health, service.service_names, stop))
    await stop.wait()
    log.info("gRPC stopping", hub=service.hub)
    watcher.cancel()
    await running.stop()
    await ops.stop()


async def _watch_health(
    check: Callable[[], Awaitable[bool]], servicer: health.aio.HealthServicer, names: Sequence[str], stop: asyncio.Event
) -> None:
    """Standard health answers NOT_SERVING while the read store is unreachable."""
    serving = True
    while not stop.is_set():
        await asyncio.sleep(2)
        try:
            ok = await asyncio.wait_for(check(), timeout=2)
        except Exception:  # any failure of the check is the answer: not serving
            ok = False
        if ok != serving:
            serving = ok
            status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
            for name in ("", *names):
                await servicer.set(name, status)
            log.warning("health changed", serving=ok)
