"""The gateway's HTTP layer on a real loopback socket: what aiohttp's own parser refuses
(a request line too long, a malformed request) is answered as a problem, like every
other refusal of the API."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from infra.gateway import ProblemRunner
from tests.harness import free_port


async def _raw(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


async def test_requests_the_http_parser_refuses_get_a_problem_not_plain_text():
    async def ok(_: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/v1/x", ok)
    runner = ProblemRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        status, headers, body = await _raw(port, b"GET /v1/x?text=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 400 and headers["content-type"].startswith("application/problem+json")
        problem = json.loads(body)
        assert problem["status"] == 400 and problem["rule"] == "MalformedRequest" and "aaaa" not in problem["detail"]
        status, headers, _ = await _raw(port, b"NOT HTTP AT ALL\r\n\r\n")
        assert status == 400 and headers["content-type"].startswith("application/problem+json")
        status, headers, body = await _raw(port, b"GET /v1/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert status == 200 and json.loads(body) == {}
    finally:
        await runner.cleanup()
