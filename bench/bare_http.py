"""The HTTP baseline of the ingress and gateway benchmarks: the server stack both run
on (aiohttp Application, AppRunner without access log, TCPSite, ingress's body size
limit) with one handler that reads the body and answers 200 with a small JSON
object, on the webhook path and on any `/v1/…` path and method. No signature, no
token, no Kafka, no hub.

    python -m bench.bare_http --port P
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web

from base.settings import Settings


async def accept(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"accepted": 1})


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def serve(host: str, port: int) -> None:
    app = web.Application(client_max_size=Settings.from_env().ingress_max_body_bytes)
    app.router.add_post("/webhooks/facebook", accept)
    app.router.add_route("*", "/v1/{tail:.*}", accept)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
