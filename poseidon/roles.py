"""The composition root of every long-running role: each function builds the
codec, specs, clients and settings-derived wiring its role runs on and hands
them down as arguments. `poseidon <role>` (cli.py) calls these; tests and
benchmarks use the same builders, so nothing below `poseidon/` looks anything up."""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg
from aiohttp import web

from base.settings import Settings
from hubs.message.router import PROCESS as ROUTER_PROCESS
from hubs.message.router import MessageRouter
from hubs.tenant.erp import ODOO_CHECK
from hubs.tenant.proof import FACEBOOK_PAGE_CONTROL
from infra.command_client import CommandClient
from infra.grpc_server import QueryService, RunningServer, start_server
from infra.grpc_server import serve as serve_grpc
from infra.ingress import Ingress, make_app
from infra.ops import OpsServer
from infra.outage import PLATFORM_OUTAGE
from infra.service import lifetime, serve_until_stopped
from infra.spoke import SpokeRunner
from poseidon import bootstrap
from projections.tenant.queries import role_lookup
from sagas.driver import PROCESS as DRIVER_PROCESS
from sagas.driver import SagaDriver
from sagas.registry import DEFINITIONS
from schemas.codec import Codec
from spokes.facebook.connect import FacebookPageControl
from spokes.odoo.connect import OdooConnectionCheck

# -- gRPC query services ----------------------------------------------------------


def grpc_wiring(service: QueryService, settings: Settings, codec: Codec | None = None) -> dict:
    """What a query service's server is handed: the Tenant read model's role lookup
    for its Authorizer, a command client when the service sends commands, and the
    Tenant service's proof of page control (the Facebook spoke's Graph calls, which
    the read side may not import) and its Odoo connection check (the Odoo spoke's)."""
    commands = None
    if service.sends_commands:
        commands = CommandClient(settings, codec or bootstrap.codec(settings), bootstrap.hubs().values())
    tenant_schema = settings.pg_schema("tenant")
    extensions = {}
    if service.hub == "tenant":  # the connect flows' outside calls, which the read side may not import
        extensions = {FACEBOOK_PAGE_CONTROL: FacebookPageControl(settings), ODOO_CHECK: OdooConnectionCheck(settings)}
    return {"role_lookup": lambda stores: role_lookup(stores, tenant_schema), "commands": commands, "extensions": extensions}


async def start_grpc(hub_name: str, settings: Settings, port: int | None = None) -> RunningServer:
    """A hub's gRPC query server, started in this process (tests, benchmarks)."""
    service = bootstrap.query_service(hub_name)
    return await start_server(service, settings, port=port, **grpc_wiring(service, settings))


async def grpc(hub_name: str, settings: Settings) -> None:
    service = bootstrap.query_service(hub_name)
    await serve_grpc(service, settings, **grpc_wiring(service, settings))


# -- ingress ------------------------------------------------------------------------


def ingress_app(ingress: Ingress, extra_routes: Iterable[web.RouteDef] = ()) -> web.Application:
    """The ingress application with every spoke's webhook routes and what they need (their setups)."""
    routes = [*bootstrap.webhook_routes(), *extra_routes]
    return make_app(ingress, routes, bootstrap.webhook_secrets(), bootstrap.webhook_setups())


async def ingress(settings: Settings) -> None:
    from infra.ingress import serve

    await serve(
        settings,
        bootstrap.codec(settings),
        bootstrap.webhook_routes(),
        bootstrap.webhook_secrets(),
        setups=bootstrap.webhook_setups(),
    )


# -- the Message Hub's router, the saga driver, spokes -----------------------------------


def message_router(settings: Settings, codec: Codec) -> MessageRouter:
    return MessageRouter(settings, codec, bootstrap.hub("message"))


async def router(settings: Settings) -> None:
    """Run the router until SIGTERM / SIGINT."""
    routing = message_router(settings, bootstrap.codec(settings))
    ops = OpsServer(
        settings.ops_host, settings.ops_port_for("router", "message"), ROUTER_PROCESS, {"consuming": lambda: routing.healthy}
    )
    await serve_until_stopped("router", lifetime(routing), ops, PLATFORM_OUTAGE, lambda: {"handled": routing.handled})


def saga_driver_for(settings: Settings, codec: Codec) -> SagaDriver:
    return SagaDriver(settings, codec, bootstrap.hubs(), list(bootstrap.spokes()), list(DEFINITIONS.values()))


async def saga_driver(settings: Settings) -> None:
    """Run the saga driver until SIGTERM / SIGINT."""
    driver = saga_driver_for(settings, bootstrap.codec(settings))
    ops = OpsServer(
        settings.ops_host, settings.ops_port_for("router", "saga"), DRIVER_PROCESS, {"consuming": lambda: driver.healthy}
    )
    await serve_until_stopped(
        "saga driver", lifetime(driver), ops, (*PLATFORM_OUTAGE, asyncpg.PostgresError), lambda: {"handled": driver.handled}
    )


def spoke_runner(name: str, settings: Settings, codec: Codec) -> SpokeRunner:
    return SpokeRunner(bootstrap.spoke(name), settings, codec, list(bootstrap.hubs().values()))


async def spoke(name: str, settings: Settings) -> None:
    await spoke_runner(name, settings, bootstrap.codec(settings)).serve()


# -- the API gateway ------------------------------------------------------------------------


def gateway_extensions() -> list:
    """The gateway's endpoints that are not one gRPC method each: Identity's OAuth2 face."""
    from projections.identity.oauth import OAuth

    return [OAuth]


def api_gateway(settings: Settings):
    """The REST API gateway over every hub's gRPC methods (tests, benchmarks, `make docs`)."""
    from infra.gateway import Gateway
    from infra.metrics import package_version
    from infra.security import TokenVerifier

    return Gateway(settings, bootstrap.http_routes(), TokenVerifier.of(settings), gateway_extensions(), version=package_version())


def api_document(settings: Settings) -> dict:
    """The REST API's OpenAPI document (docs/openapi/api.json; the gateway serves the same at /openapi.json)."""
    from infra.gateway import Gateway
    from infra.metrics import package_version

    return Gateway(settings, bootstrap.http_routes(), None, gateway_extensions(), version=package_version()).document


async def gateway(settings: Settings) -> None:
    from infra.gateway import serve

    await serve(settings, bootstrap.http_routes(), gateway_extensions())


# -- the operator dashboard ------------------------------------------------------------


def saga_commands(settings: Settings, codec: Codec) -> CommandClient:
    """A command client for the saga hub (the dashboard's actions)."""
    return CommandClient(settings, codec, [bootstrap.hub("saga")])


async def dashboard(settings: Settings, port: int | None = None) -> None:
    from sagas.dashboard.server import serve

    await serve(settings, saga_commands(settings, bootstrap.codec(settings)), port)


# -- several roles in one process ---------------------------------------------------------


def processor(hub_name: str, settings: Settings):
    """A hub's aggregate processor (its `serve()` runs it until stopped)."""
    from infra.hub import answer_topics
    from infra.processor import AggregateProcessor

    answers = answer_topics(bootstrap.hubs().values(), settings.topic)
    return AggregateProcessor(bootstrap.processor_hub(hub_name, settings), settings, bootstrap.codec(settings), answers)


def projector(name: str, settings: Settings):
    """A read model's projector (its `serve()` runs it until stopped)."""
    from infra.projector import Projector

    return Projector(bootstrap.projection(name), settings, bootstrap.codec(settings))


ROLES_WITH_A_NAME = ("processor", "projector", "grpc", "spoke")
"""Roles `poseidon together` names as `role:name` (a hub, a read model, a spoke)."""
SINGLE_ROLES = ("ingress", "router", "saga-driver", "gateway", "dashboard")


def every_role() -> list[str]:
    """The roles `make run` starts, as `poseidon together` names them."""
    specs = [f"{role}:{hub}" for hub in bootstrap.hubs() for role in ("processor", "projector", "grpc")]
    return [*specs, *SINGLE_ROLES, *(f"spoke:{name}" for name in bootstrap.spokes())]


def role_coroutine(spec: str, settings: Settings):
    """The coroutine that runs one role `spec` (`processor:wallet`, `router`, `spoke:facebook`…)
    until it is stopped; raises ValueError naming what is wrong with the spec."""
    role, _, name = spec.partition(":")
    if role in SINGLE_ROLES and not name:
        single = {"ingress": ingress, "router": router, "saga-driver": saga_driver, "gateway": gateway, "dashboard": dashboard}
        return single[role](settings)
    if role not in ROLES_WITH_A_NAME or not name:
        raise ValueError(
            f"{spec!r} is not a role: one of {', '.join(SINGLE_ROLES)}, or {', '.join(ROLES_WITH_A_NAME)} with :<name>"
        )
    known = bootstrap.spokes() if role == "spoke" else bootstrap.hubs()
    if name not in known:
        raise ValueError(f"{spec!r}: no {'spoke' if role == 'spoke' else 'hub'} {name!r} (known: {', '.join(known)})")
    if role == "processor":
        return processor(name, settings).serve()
    if role == "projector":
        return projector(name, settings).serve()
    return grpc(name, settings) if role == "grpc" else spoke(name, settings)


async def together(specs: Iterable[str], settings: Settings) -> None:
    """Run several roles in this one process, each as it runs alone: its own ops port
    (with POSEIDON_OPS_PORT=P, P + its position among `specs`) and health checks, its
    own restarts when Kafka or PostgreSQL is away. One interpreter and one set of
    libraries instead of one per role: the small footprint of one machine. SIGTERM
    stops every role; a role that fails for good stops them all (the supervisor
    restarts the process). Production runs one role per pod."""
    import asyncio

    specs = list(dict.fromkeys(specs))
    if not specs:
        raise ValueError("name at least one role (or --all)")
    # Every spec is checked before anything starts. POSEIDON_OPS_PORT=P: the n-th role's ops port is P + n
    # (unset: each role's own default port; 0: any free port each).
    coroutines = [role_coroutine(spec, _ops_port_shifted(settings, n)) for n, spec in enumerate(specs)]
    async with asyncio.TaskGroup() as roles:
        for spec, coroutine in zip(specs, coroutines, strict=True):
            roles.create_task(coroutine, name=spec)


def _ops_port_shifted(settings: Settings, n: int) -> Settings:
    if not settings.ops_port:
        return settings
    return settings.with_(ops_port=settings.ops_port + n)
