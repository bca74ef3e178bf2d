"""The ops endpoint every long-running process serves: `GET /metrics`
(Prometheus, with `poseidon_build_info`), `GET /livez` (liveness: 200 whenever the
process's event loop answers — restart the process when it does not), and
`GET /readyz` (readiness: JSON, 200 when every dependency check passes, 503
otherwise — take the process out of rotation, do not restart it; a PostgreSQL
outage must not restart every pod). `GET /healthz` is `/readyz`, kept for the
tools that ask it. Loopback by default (POSEIDON_OPS_HOST)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from infra import metrics  # noqa: F401  (registers poseidon_build_info in every process that serves ops)

log = structlog.get_logger(__name__)

HealthCheck = Callable[[], Awaitable[bool] | bool]


_metrics_port: int | None = None
"""The ops port that serves this process's metrics: the first one started. A process
running several roles (`poseidon together`) has one ops endpoint per role (each with
its own health checks) but one metrics registry: served once, never counted twice
by a Prometheus scraping every role's port."""


class OpsServer:
    """Serves metrics and health for one role of a process; checks are named callables."""

    def __init__(self, host: str, port: int, process: str, checks: Mapping[str, HealthCheck] | None = None):
        self.host, self.port, self.process = host, port, process
        self.checks: dict[str, HealthCheck] = dict(checks or {})
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/livez", self._live)
        app.router.add_get("/readyz", self._health)
        app.router.add_get("/healthz", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        global _metrics_port
        if _metrics_port is None:
            _metrics_port = self.port
        log.info("ops endpoint listening", process=self.process, url=f"http://{self.host}:{self.port}/healthz")

    async def stop(self) -> None:
        global _metrics_port
        if _metrics_port == self.port:
            _metrics_port = None  # the next ops endpoint started in this process serves them
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, _: web.Request) -> web.Response:
        if _metrics_port not in (None, self.port):
            body = f"# this process's metrics are served on its ops port {_metrics_port}\n".encode()
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _live(self, _: web.Request) -> web.Response:
        # Answering at all is the proof: this handler runs on the loop every role runs on.
        return web.json_response({"process": self.process, "status": "alive"})

    async def _health(self, _: web.Request) -> web.Response:
        results = {}
        for name, check in self.checks.items():
            try:
                outcome = check()
                if asyncio.iscoroutine(outcome):
                    outcome = await asyncio.wait_for(outcome, timeout=2.0)
                results[name] = bool(outcome)
            except Exception as exc:  # a failing check is an unhealthy answer, not a crash
                log.warning("health check failed", check=name, error=str(exc))
                results[name] = False
        healthy = all(results.values())
        return web.json_response(
            {"process": self.process, "status": "ok" if healthy else "unhealthy", "checks": results},
            status=200 if healthy else 503,
        )
