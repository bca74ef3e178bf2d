"""A stand-in for Confluent Schema Registry: the REST calls our client makes, with the
same paths, bodies, status codes and error codes, on 127.0.0.1 in a background thread.
Not a registry: it keeps everything in memory and checks no compatibility."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web
from fastavro.schema import parse_schema

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# What Confluent accepts as a request body type; anything else is a 415 there too.
ACCEPTED_CONTENT_TYPES = {CONTENT_TYPE, "application/vnd.schemaregistry+json", "application/json"}


@dataclass
class RegistryState:
    """Everything the stand-in knows; tests read it to see what the client did."""

    schemas: list[str] = field(default_factory=list)
    """Schema texts by id - 1: ids are global and count up from 1, as in Confluent."""
    subjects: dict[str, list[int]] = field(default_factory=dict)
    """Subject → schema id of each version, version 1 first."""
    requests: list[tuple[str, str]] = field(default_factory=list)
    """(method, path) of every request, in order of arrival."""
    failing: bool = False
    """While true every request answers 500, as a registry whose store is down does."""

    def id_of(self, text: str) -> int:
        # Confluent gives one schema one id across all subjects; it compares a
        # normalised rendering, so whitespace alone does not make a new schema.
        normal = _normalised(text)
        for index, known in enumerate(self.schemas):
            if _normalised(known) == normal:
                return index + 1
        self.schemas.append(text)
        return len(self.schemas)


def make_app(state: RegistryState) -> web.Application:
    """The aiohttp application, for embedding; `running_registry` is the usual way in."""
    app = web.Application(middlewares=[_record_and_fail(state)])
    routes = web.RouteTableDef()

    @routes.post("/subjects/{subject}/versions")
    async def register_schema(request: web.Request) -> web.Response:
        if request.content_type not in ACCEPTED_CONTENT_TYPES:
            return _error(415, 415, f"HTTP 415 Unsupported Media Type: {request.content_type}")
        try:
            body = json.loads(await request.text())
            text = body["schema"]
            if not isinstance(text, str):
                raise TypeError("'schema' must be a string")
            parse_schema(json.loads(text))
        except Exception as exc:  # Confluent answers every unparsable schema with 42201
            return _error(422, 42201, f"Invalid schema: {type(exc).__name__}: {exc}")
        subject = request.match_info["subject"]
        schema_id = state.id_of(text)
        versions = state.subjects.setdefault(subject, [])
        if schema_id not in versions:  # re-registering an existing version is a no-op
            versions.append(schema_id)
        return _json({"id": schema_id})

    @routes.get("/schemas/ids/{schema_id}")
    async def get_schema_by_id(request: web.Request) -> web.Response:
        try:
            schema_id = int(request.match_info["schema_id"])
        except ValueError:
            return _error(404, 40403, "Schema not found")
        if not 1 <= schema_id <= len(state.schemas):
            return _error(404, 40403, "Schema not found")
        return _json({"schema": state.schemas[schema_id - 1]})

    @routes.get("/subjects")
    async def list_subjects(request: web.Request) -> web.Response:
        return _json(sorted(state.subjects))

    @routes.get("/subjects/{subject}/versions")
    async def list_versions(request: web.Request) -> web.Response:
        versions = state.subjects.get(request.match_info["subject"])
        if versions is None:
            return _error(404, 40401, f"Subject '{request.match_info['subject']}' not found.")
        return _json(list(range(1, len(versions) + 1)))

    app.add_routes(routes)
    return app


@dataclass
class RunningRegistry:
    """A stand-in listening on `url`; `state` is live."""

    url: str
    state: RegistryState


@contextmanager
def running_registry() -> Iterator[RunningRegistry]:
    """Serves a fresh stand-in on a free port of 127.0.0.1 until the block ends.

    It runs on its own event loop in a thread, so a blocking client (our httpx
    one) can be called straight from a synchronous test without deadlocking.
    """
    state = RegistryState()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="schema-registry-standin", daemon=True)
    thread.start()
    runner = web.AppRunner(make_app(state))

    async def start() -> int:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner.addresses[0][1]

    try:
        port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
        yield RunningRegistry(url=f"http://127.0.0.1:{port}", state=state)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def _record_and_fail(state: RegistryState):
    @web.middleware
    async def middleware(request: web.Request, handler):
        state.requests.append((request.method, request.path))
        if state.failing:
            return _error(500, 50001, "Error in the backend data store")
        return await handler(request)

    return middleware


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type=CONTENT_TYPE)


def _error(status: int, error_code: int, message: str) -> web.Response:
    return _json({"error_code": error_code, "message": message}, status=status)


def _normalised(text: str) -> str:
    return json.dumps(json.loads(text), separators=(",", ":"))
