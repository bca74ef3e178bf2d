"""The ops endpoint every long-running process serves: `GET /metrics`
(Prometheus) and `GET /healthz` (JSON, 200 when every check passes, 503 otherwise).
Loopback by default (POSEIDON_OPS_HOST)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = structlog.get_logger(__name__)

HealthCheck = Callable[[], Awaitable[bool] | bool]


class OpsServer:
    """Serves metrics and health for one process; checks are named callables."""

    def __init__(self, host: str, port: int, process: str, checks: Mapping[str, HealthCheck] | None = None):
        self.host, self.port, self.process = host, port, process
        self.checks: dict[str, HealthCheck] = dict(checks or {})
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        log.info("ops endpoint listening", process=self.process, url=f"http://{self.host}:{self.port}/healthz")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

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
