"""The lifecycle every long-running consumer process shares (router, saga
driver, spokes, projectors): serve its ops endpoint, run one lifetime, restart
it with backoff when Kafka or PostgreSQL is away, stop cleanly on SIGTERM / SIGINT;
and the one every public HTTP server shares (ingress, API gateway)."""

from __future__ import annotations

import asyncio
import signal
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import structlog
from aiohttp import web
from tenacity import AsyncRetrying, retry_if_exception, stop_never, wait_exponential_jitter

from base.settings import Settings
from infra import tls
from infra.ops import OpsServer

log = structlog.get_logger(__name__)

_on_stop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Callable[[], Any]]] = weakref.WeakKeyDictionary()
"""Per event loop, what SIGTERM / SIGINT set off: one entry per role the loop runs."""


def on_stop_signal(callback: Callable[[], Any]) -> None:
    """Call `callback` on SIGTERM / SIGINT. Every role registers its own: a process
    running several roles (`poseidon together`) stops each of them, where a plain
    `loop.add_signal_handler` would keep only the last role's handler."""
    loop = asyncio.get_running_loop()
    callbacks = _on_stop.get(loop)
    if callbacks is None:
        callbacks = _on_stop[loop] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: [stop() for stop in list(callbacks)])
    callbacks.append(callback)


class Component(Protocol):
    handled: int

    async def start(self) -> None: ...

    async def run(self) -> None: ...

    async def stop(self) -> None: ...


def lifetime(component: Component) -> Callable[[], Awaitable[None]]:
    """One lifetime of a start/run/stop component: stopped whatever ends the run."""

    async def run() -> None:
        try:
            await component.start()
            await component.run()
        finally:
            await component.stop()

    return run


async def serve_until_stopped(
    name: str,
    run: Callable[[], Awaitable[Any]],
    ops: OpsServer,
    transient: tuple[type[BaseException], ...],
    report: Callable[[], Mapping[str, Any]] = dict,
) -> None:
    """Run `run` until a signal; a `transient` failure (broker or database away)
    restarts it after an exponential, jittered pause — nothing else does. `report`
    adds what the process did to its "stopped" log line."""
    task = asyncio.current_task()
    on_stop_signal(task.cancel)

    def restarts(error: BaseException) -> bool:
        # A CancelledError nobody aimed at this task (aiokafka cancels a pending
        # send or commit when its sender dies with the broker) is an outage too;
        # only the signal handler's cancel stops the process.
        if task.cancelling():
            return False  # stopping: whatever the cleanup raised, do not start again
        return isinstance(error, (*transient, asyncio.CancelledError))

    await ops.start()
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(restarts),
            wait=wait_exponential_jitter(initial=0.5, max=10),
            stop=stop_never,
            before_sleep=lambda rs: log.warning(f"{name} restarting", error=str(rs.outcome.exception())),
        ):
            with attempt:
                await run()
    except asyncio.CancelledError:
        log.info(f"{name} stopped", **report())
    finally:
        await ops.stop()


async def serve_http_until_stopped(
    name: str,
    app: web.Application,
    settings: Settings,
    host: str,
    port: int,
    ops: OpsServer,
    *,
    shutdown_timeout: float,
    path: str = "/",
    runner_class: type[web.AppRunner] = web.AppRunner,
) -> None:
    """Serve a public aiohttp application (HTTPS when POSEIDON_HTTP_TLS is on) and its
    ops endpoint until SIGTERM / SIGINT; then stop accepting, let in-flight requests
    finish within `shutdown_timeout`, and run the application's cleanup hooks."""
    runner = runner_class(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=tls.http_server_context(settings)).start()
    await ops.start()
    log.info(f"{name} listening", url=f"{tls.http_scheme(settings)}://{host}:{port}{path}")
    stop = asyncio.Event()
    on_stop_signal(stop.set)
    await stop.wait()
    log.info(f"{name} stopping")
    await ops.stop()
    await runner.cleanup()
    log.info(f"{name} stopped")
