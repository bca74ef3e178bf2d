"""A stand-in for a chat platform's attachment CDN (what Facebook's attachment payload
URLs point at): `GET /files/<name>?sig=…` answers the bytes with their content type, or
the failures a CDN gives (5xx, 404, 403 for an expired signature, 429), as told.
Records every request so tests can see what was fetched."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class SourceState:
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    """Name → (bytes, content type; '' sends none)."""
    failures: list[int] = field(default_factory=list)
    """Statuses to answer, one per request, before serving normally again."""
    chunked: bool = False
    """Send bodies without Content-Length (as a CDN streaming a transcoded file does)."""
    requests: list[str] = field(default_factory=list)
    """Path of every request (never the query: it is the signature)."""

    def add(self, name: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        self.files[name] = (body, content_type)
        return name

    def fail(self, status: int, count: int = 1) -> None:
        self.failures.extend([status] * count)


def make_app(state: SourceState) -> web.Application:
    app = web.Application()

    async def serve_file(request: web.Request) -> web.StreamResponse:
        state.requests.append(request.path)
        if state.failures:
            status = state.failures.pop(0)
            headers = {"Retry-After": "0"} if status in (429, 503) else {}
            return web.Response(status=status, text=_CDN_ERRORS.get(status, "Error"), headers=headers)
        found = state.files.get(request.match_info["name"])
        if found is None:
            return web.Response(status=404, text="Not Found")
        body, content_type = found
        headers = {"Content-Type": content_type} if content_type else {}
        if not state.chunked:
            return web.Response(body=body, headers=headers)
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), 64 * 1024):
            await response.write(body[start : start + 64 * 1024])
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
async def running_attachment_source() -> AsyncIterator[RunningSource]:
    """Serves a fresh stand-in on a free port of 127.0.0.1, on the caller's event loop."""
    state = SourceState()
    runner = web.AppRunner(make_app(state))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield RunningSource(f"http://127.0.0.1:{runner.addresses[0][1]}", state)
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
