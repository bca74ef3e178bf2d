"""Serves the operator dashboard on settings.ops_host:settings.dashboard_port
until cancelled (`poseidon dashboard` builds what it runs on). Plain HTTP only
on a loopback address, unless POSEIDON_DEV_MODE=1 (see rules.check_served_securely)."""

from __future__ import annotations

import asyncio

import asyncpg
import structlog
from aiohttp import web

from base.settings import Settings
from infra import tls
from infra.command_client import CommandClient
from infra.security import TokenVerifier
from infra.service import on_stop_signal
from infra.stores import Stores
from sagas.dashboard.actions import CommandSagaActions
from sagas.dashboard.app import Deps, build_app
from sagas.dashboard.deadletters import DeadLetters
from sagas.dashboard.rules import check_served_securely, is_loopback

log = structlog.get_logger(__name__)


def deps_for(
    settings: Settings,
    pool: asyncpg.Pool,
    client: CommandClient,
    tenant_pool: asyncpg.Pool | None = None,
    message_pool: asyncpg.Pool | None = None,
    session_pool: asyncpg.Pool | None = None,
) -> Deps:
    """What the dashboard runs on: the read stores, its own session store, the keyring's
    verifier, saga-hub commands for actions, the dead-letter topics, and the Identity
    hub for password login and logout."""
    return Deps(
        settings=settings,
        pool=pool,
        verifier=TokenVerifier.of(settings),
        actions=CommandSagaActions(client),
        dead_letters=DeadLetters(settings, client.codec),
        identity_target=f"{settings.grpc_host}:{settings.grpc_port('identity')}",
        tenant_pool=tenant_pool,
        message_pool=message_pool,
        session_pool=session_pool,
    )


async def serve(settings: Settings, client: CommandClient, port: int | None = None) -> None:
    """`client` sends saga-hub commands (unstarted: it starts once the page is up)."""
    check_served_securely(settings.ops_host, settings.dev_mode or settings.http_tls)
    if not is_loopback(settings.ops_host) and not settings.http_tls:
        log.warning(
            "dashboard on a non-loopback address over plain HTTP (POSEIDON_DEV_MODE=1): "
            "browsers keep its Secure cookies only when it is reached over HTTPS or via localhost",
            host=settings.ops_host,
        )
    stores = Stores(settings, max_size=5)
    deps = deps_for(
        settings,
        await stores.pool("saga"),
        client,
        await stores.pool("tenant"),
        await stores.pool("message"),
        await stores.pool("dashboard"),
    )
    runner = web.AppRunner(build_app(deps), access_log=None)
    await runner.setup()
    port = port if port is not None else settings.dashboard_port
    await web.TCPSite(runner, settings.ops_host, port, ssl_context=tls.http_server_context(settings)).start()
    log.info("dashboard listening", url=f"{tls.http_scheme(settings)}://{settings.ops_host}:{port}/")
    # After the page is up: without the saga topics the client waits, and actions with it.
    await client.start()
    stop = asyncio.Event()
    on_stop_signal(stop.set)  # SIGTERM stops it, alone or among other roles (`poseidon together`)
    try:
        await stop.wait()
        log.info("dashboard stopping")
    finally:
        await runner.cleanup()
        await client.stop()
        await stores.close()
