"""A stand-in for a chat platform's attachment CDN (what Facebook's attachment payload
URLs point at): `GET /files/<name>?sig=…` answers the bytes with their content type, or
the failures a CDN gives (5xx, 404, 403 for an expired signature, 429), as told; and, for
the fetch's defences, what a hostile source does: redirects, a body dripped byte by byte,
a body sent compressed (a gzip bomb). Serves http, or https with a given certificate.
Records every request so tests can see what was fetched."""

from __future__ import annotations

import argparse
import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class SourceState:
    files: dict[str, tuple[bytes, str, str]] = field(default_factory=dict)
    """Name → (bytes as sent, content type; '' sends none, content encoding; '' sends none)."""
    redirects: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Name → (status, Location) answered instead of a file."""
    failures: list[int] = field(default_factory=list)
    """Statuses to answer, one per request, before serving normally again."""
    chunked: bool = False
    """Send bodies without Content-Length (as a CDN streaming a transcoded file does)."""
    drip_interval_s: float = 0.0
    """Above zero: send bodies one byte at a time, this long apart (a slow-drip source)."""
    requests: list[str] = field(default_factory=list)
    """Path of every request (never the query: it is the signature)."""
    hosts: list[str] = field(default_factory=list)
    """Host header of every request."""

    def add(self, name: str, body: bytes, content_type: str = "application/octet-stream", content_encoding: str = "") -> str:
        self.files[name] = (body, content_type, content_encoding)
        return name

    def redirect(self, name: str, location: str, status: int = 302) -> str:
        self.redirects[name] = (status, location)
        return name

    def fail(self, status: int, count: int = 1) -> None:
        self.failures.extend([status] * count)


def make_app(state: SourceState) -> web.Application:
    app = web.Application()

    async def serve_file(request: web.Request) -> web.StreamResponse:
        state.requests.append(request.path)
        state.hosts.append(request.headers.get("Host", ""))
        if state.failures:
            status = state.failures.pop(0)
            headers = {"Retry-After": "0"} if status in (429, 503) else {}
            return web.Response(status=status, text=_CDN_ERRORS.get(status, "Error"), headers=headers)
        name = request.match_info["name"]
        if name in state.redirects:
            status, location = state.redirects[name]
            return web.Response(status=status, headers={"Location": location})
        found = state.files.get(name)
        if found is None:
            return web.Response(status=404, text="Not Found")
        body, content_type, content_encoding = found
        headers = {"Content-Type": content_type} if content_type else {}
        if content_encoding:
            headers["Content-Encoding"] = content_encoding
        if not state.chunked and not state.drip_interval_s:
            return web.Response(body=body, headers=headers)
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        step = 1 if state.drip_interval_s else 64 * 1024
        for start in range(0, len(body), step):
            await response.write(body[start : start + step])
            if state.drip_interval_s:
                await asyncio.sleep(state.drip_interval_s)
        await response.write_eof()
        return response

    app.router.add_get("/files/{name}", serve_file)
    return app


_CDN_ERRORS = {403: "URL signature expired", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}


@dataclass
class RunningSource:
    url: str
    state: SourceState

    def file_url(self, name: str, signature: str = "abc123") -> str:
        return f"{self.url}/files/{name}?sig={signature}"


@asynccontextmanager
async def running_attachment_source(
    *, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None, url_host: str = ""
) -> AsyncIterator[RunningSource]:
    """Serves a fresh stand-in on a free port of `host`, on the caller's event loop; over
    https with `ssl_context`. `url_host`: the name its URLs use instead of the address
    (for a certificate's name, resolved to the address by the test)."""
    state = SourceState()
    runner = web.AppRunner(make_app(state), access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, host, 0, ssl_context=ssl_context).start()
    scheme = "https" if ssl_context is not None else "http"
    try:
        yield RunningSource(f"{scheme}://{url_host or host}:{runner.addresses[0][1]}", state)
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="Attachment CDN stand-in")
    parser.add_argument("--port", type=int, default=18085)
    args = parser.parse_args()
    state = SourceState()
    state.add("hello.txt", b"hello from the stand-in CDN\n", "text/plain")
    web.run_app(make_app(state), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
