"""The one HTTP ingress of the platform: chat platforms' webhooks and Botpress
callbacks come in here, are authenticated, split into items and stored as
`poseidon.ingress.InboundReceived` on `ingress.inbound` before we answer 200.
Ingress never routes and never deduplicates: it stores every accepted item.

Why no dedupe store here: platforms re-deliver (Facebook retries until it gets a
200, and may deliver twice anyway), so the same platform message id can be stored
more than once. Exactly-once acting is enforced downstream, where state changes:
the Message hub's conversation aggregate rejects a `RecordInboundMessage` whose
message id is already recorded (`DuplicateMessage`), atomically inside the
processor's exactly-once transaction, and the router makes no routing decision
(and so no reply) for a duplicate. That holds across restarts and concurrent
deliveries because the aggregate is the single writer of its conversation;
a second store here would only be a weaker copy of it.

Answers: 200 {"accepted": n} only once every item is durable (acks=all,
idempotent producer); 503 when Kafka does not confirm within the produce timeout
(the platform retries; never 200 for something not stored); 400 {"error"} for
malformed bodies, which, when authenticated, also go whole to `ingress.dlq` with
the reason; 401/403 for a missing/bad signature (counted, never processed); 413
too large; 408 when the body does not arrive within POSEIDON_INGRESS_BODY_TIMEOUT_S;
415 wrong content type; 429 with Retry-After when a platform account exceeds its
rate.

Rate limiting is per platform account (Facebook page id, Botpress tenant), not
per tenant: ingress does not know tenants yet, and each page belongs to exactly
one tenant, so a page's bucket is a share of its tenant's budget.

Run it with `poseidon ingress`; `/healthz` is served on the same port (load
balancers ask it), `/metrics` and `/healthz` on the ops port (POSEIDON_OPS_PORT,
default 9080, loopback unless POSEIDON_OPS_HOST says otherwise) and never on the
public port: metric names and label values describe the platform's inside.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import structlog
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner, murmur2
from prometheus_client import Counter, Histogram

from base.settings import Settings
from infra import tracing
from infra.dlq import DeadLetters, Origin
from infra.ops import OpsServer
from infra.ratelimit import TokenBuckets
from infra.service import serve_http_until_stopped
from schemas.codec import Codec, EncodeError

log = structlog.get_logger(__name__)

INBOUND_SCHEMA = "poseidon.ingress.InboundReceived"
INBOUND_TOPIC = "ingress.inbound"
DLQ_TOPIC = "ingress.dlq"
CONTENT_TYPE = b"application/vnd.poseidon.avro"
PRODUCE_TIMEOUT_S = 5.0
"""How long a request waits for Kafka's acks before answering 503: short, so the
platform hears "retry" well before it gives up on us."""
PROCESS = "ingress"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

WEBHOOK_REQUESTS = Counter("poseidon_webhook_requests_total", "Ingress HTTP requests by route and status.", ["route", "status"])
SIGNATURE_FAILURES = Counter(
    "poseidon_webhook_signature_failures_total", "Webhook requests refused for their signature or secret.", ["route", "reason"]
)
ITEMS_ACCEPTED = Counter(
    "poseidon_ingress_items_total", "Inbound items stored on Kafka, by platform and kind.", ["platform", "kind"]
)
ITEMS_SKIPPED = Counter(
    "poseidon_ingress_items_skipped_total", "Well-formed items not stored (kinds not handled, standby).", ["platform", "kind"]
)
PRODUCE_LATENCY = Histogram(
    "poseidon_ingress_produce_seconds",
    "Time from the first send to the last ack for one request's records.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
"""RFC 4122 variant: the top two bits of the clock_seq_hi byte are 10."""


def new_id() -> str:
    """A random (version 4) UUID as text, as `str(uuid.uuid4())` gives it, for a
    third of its cost: ingress makes three per request (request, event and
    correlation ids)."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


class KeyPartitioner:
    """aiokafka's default partitioner (murmur2 of the key, as Kafka's Java client,
    so a conversation's key lands on the same partition whoever writes it) with
    each key's hash remembered: aiokafka's murmur2 is pure Python, about a third
    of its CPU per record, and a conversation's key comes back with each of its
    messages and receipts. At most `size` keys are kept (then all forgotten at once)."""

    def __init__(self, size: int = 16_384):
        self.size = size
        self._hashes: dict[bytes, int] = {}
        self._default = DefaultPartitioner()

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return self._default(key, all_partitions, available)
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self.size:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]


def max_record_bytes(settings: Settings) -> int:
    """The largest record ingress may write: a dead letter holds the whole body, and
    an item holds its text twice (`text` and `raw`), plus envelope and framing. The
    ingress topics' `max.message.bytes` must allow it (Kafka's default is 1 MB)."""
    return 2 * settings.ingress_max_body_bytes + 64 * 1024


class KafkaUnavailable(Exception):
    """Kafka did not confirm the records in time (or the producer is not connected)."""


class Ingress:
    """The shared machinery every webhook handler uses: one idempotent acks=all
    producer, the per-account rate limiter, dead letters, metrics and the JSON
    error answers. Platform handlers only authenticate, parse and map.

    The producer connects in the background and keeps trying: while Kafka is
    unreachable every request that would store something is answered 503.
    """

    def __init__(self, settings: Settings, codec: Codec, *, produce_timeout_s: float = PRODUCE_TIMEOUT_S):
        self.settings, self.codec = settings, codec
        self.produce_timeout_s = produce_timeout_s
        self.limiter = TokenBuckets(settings.ingress_rate_per_s, 2 * settings.ingress_rate_per_s)
        self.inbound_topic = settings.topic(INBOUND_TOPIC)
        self.dlq_topic = settings.topic(DLQ_TOPIC)
        # Sent through `produce` (its timeout and 503), not the publisher's producer.
        self.dead_letters = DeadLetters(None, codec, PROCESS, self.dlq_topic, event="webhook body dead-lettered")
        self._producer: AIOKafkaProducer | None = None
        self._connector: asyncio.Task | None = None

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        self._connector = asyncio.create_task(self._connect(), name="ingress-kafka-connect")

    async def stop(self) -> None:
        """Flush what was sent (in-flight requests are already finished by the
        HTTP server's graceful shutdown) and close."""
        if self._connector is not None and not self._connector.done():
            self._connector.cancel()
            try:
                await self._connector
            except asyncio.CancelledError:
                pass
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def wait_connected(self, timeout: float) -> bool:
        """Whether the producer connected within `timeout` seconds (tests, start-up checks)."""
        if self._connector is None:
            return self.connected
        try:
            await asyncio.wait_for(asyncio.shield(self._connector), timeout)
        except TimeoutError:
            pass
        return self.connected

    async def kafka_reachable(self) -> bool:
        """Health: the producer is connected and a broker answers metadata."""
        if self._producer is None:
            return False
        await self._producer.client.fetch_all_metadata()
        return True

    async def _connect(self) -> None:
        delay = 0.2
        while True:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.kafka_bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=1,
                max_request_size=max_record_bytes(self.settings),
                partitioner=KeyPartitioner(),
                client_id="poseidon-ingress",
            )
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                await producer.stop()
                log.warning("kafka not reachable, retrying", bootstrap=self.settings.kafka_bootstrap, error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._producer = producer
            log.info("ingress producer connected", bootstrap=self.settings.kafka_bootstrap)
            return

    # -- storing ---------------------------------------------------------------

    async def produce(self, records: Sequence[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]]) -> None:
        """Send (topic, key, value, headers) records and wait until Kafka acked all
        of them, or raise KafkaUnavailable. A timed-out record may still land
        later; the platform's retry then stores it twice, which is harmless
        (see the module docstring on deduplication)."""
        producer = self._producer
        if producer is None:
            raise KafkaUnavailable("not connected to Kafka")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.produce_timeout_s):
                acks = [await producer.send(topic, value, key=key, headers=headers) for topic, key, value, headers in records]
                # shield: a timeout must not cancel the producer's own delivery futures.
                await asyncio.shield(acks[0] if len(acks) == 1 else asyncio.gather(*acks))
        except TimeoutError:
            raise KafkaUnavailable(f"no acknowledgement from Kafka within {self.produce_timeout_s}s") from None
        except KafkaError as exc:
            raise KafkaUnavailable(f"{type(exc).__name__}: {exc}") from exc
        PRODUCE_LATENCY.observe(time.perf_counter() - started)

    async def accept(self, request: web.Request, records: Sequence[Mapping[str, Any]]) -> web.Response:
        """Rate-limit, store every InboundReceived record and answer: 200 only once
        all are durable, 429 over the account's rate, 503 when Kafka cannot confirm."""
        if not records:
            return accepted(0)
        if tracing.enabled():
            # A trace of our own starts here (a caller's traceparent is only linked): every record stored carries it.
            attributes = {"poseidon.route": route_of(request), "poseidon.items": len(records)}
            with tracing.public_span("ingress accept webhook", request.headers, kind=tracing.SERVER, attributes=attributes):
                return await self._accept(request, records)
        return await self._accept(request, records)

    async def _accept(self, request: web.Request, records: Sequence[Mapping[str, Any]]) -> web.Response:
        try:
            encoded = [
                (self.inbound_topic, r["envelope"]["aggregate_id"].encode(), self.codec.encode(INBOUND_SCHEMA, r), _headers(r))
                for r in records
            ]
        except EncodeError as exc:
            # Signed, parsed, and still not storable: keep it whole for a human.
            return await self.dead_letter(request, await request.read(), f"cannot encode item: {exc}", "EncodeError")
        wanted: dict[str, int] = {}
        for r in records:
            account = f"{r['platform']}/{r['account_id']}"
            wanted[account] = wanted.get(account, 0) + 1
        wait = self.limiter.acquire_all(wanted)
        if wait > 0:
            log.warning("rate limited", accounts=sorted(wanted), retry_after_s=round(wait, 3))
            return error(429, "rate limited, retry later", {"Retry-After": str(self.limiter.retry_after(wait))})
        try:
            await self.produce(encoded)
        except KafkaUnavailable as exc:
            log.warning("inbound items not stored", items=len(records), reason=str(exc))
            return error(503, "event store unavailable, retry later", {"Retry-After": "1"})
        for r in records:
            _child(ITEMS_ACCEPTED, r["platform"], r["kind"]).inc()
        log.info(
            "inbound items accepted",
            items=len(records),
            kinds=sorted({r["kind"] for r in records}),
            correlation_ids=[r["envelope"]["correlation_id"] for r in records],
        )
        return accepted(len(records))

    async def dead_letter(
        self, request: web.Request, body: bytes, reason: str, error_type: str, *, status: int = 400
    ) -> web.Response:
        """Keep an authenticated but unusable body whole on `ingress.dlq` with the
        reason, then answer `status` with the reason; 503 if Kafka cannot take it
        (so the platform retries rather than the body being lost)."""
        letter = self.dead_letters.letter(
            Origin(f"http:{request.method} {request.path}", -1, -1, None, body),
            reason,
            error_type,
            headers=(("request_id", request_id(request).encode()),),
        )
        try:
            await self.produce([(letter.topic, None, letter.value, letter.headers)])
        except KafkaUnavailable as exc:
            log.warning("dead letter not stored", reason=reason, error=str(exc))
            return error(503, "event store unavailable, retry later", {"Retry-After": "1"})
        self.dead_letters.parked(letter)
        return error(status, reason)

    # -- checks shared by the handlers ----------------------------------------

    async def json_of(self, request: web.Request, body: bytes) -> tuple[Any, web.Response | None]:
        """An authenticated body as JSON: `(decoded, None)`, or `(None, answer)`
        once it is dead-lettered (415 not JSON, 400 malformed)."""
        if request.content_type != "application/json":
            reason = f"content type must be application/json, not {request.content_type or 'missing'}"
            return None, await self.dead_letter(request, body, reason, "UnsupportedMediaType", status=415)
        try:
            return json.loads(body), None
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            return None, await self.dead_letter(request, body, f"malformed JSON: {exc}", "MalformedJSON")

    def skipped(self, platform: str, kinds: Iterable[str]) -> None:
        """Count well-formed items a handler chose not to store (answered 200 all the same)."""
        counted = collections.Counter(kinds)
        for kind, n in counted.items():
            _child(ITEMS_SKIPPED, platform, kind).inc(n)
        log.info("inbound items skipped", platform=platform, kinds=dict(counted))

    def signature_failed(self, request: web.Request, reason: str) -> None:
        _child(SIGNATURE_FAILURES, route_of(request), reason).inc()
        log.warning("webhook signature refused", route=route_of(request), reason=reason)

    async def read_body(self, request: web.Request) -> bytes:
        """The raw body (what signatures cover); 413 past the size limit, without
        reading it when Content-Length already says so; 408 when it does not arrive
        whole within the body timeout (a slow-loris body would hold its
        connection and its buffer for as long as the client likes)."""
        limit = self.settings.ingress_max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
        if request.content.is_eof():  # all of it came with the headers: nothing to wait for
            return await request.read()
        try:
            async with asyncio.timeout(self.settings.ingress_body_timeout_s):
                return await request.read()
        except TimeoutError:
            raise web.HTTPRequestTimeout() from None


_CHILDREN: dict[tuple, Any] = {}


def _child(metric: Counter, *labels: object) -> Any:
    """`metric.labels(*labels)`, looked up once per label set: prometheus-client
    takes a lock and builds a tuple of strings on every `labels` call. Label
    values come from fixed sets (routes, statuses, platforms, kinds)."""
    key = (metric, *labels)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*(str(label) for label in labels))
    return child


def _headers(record: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    envelope = record["envelope"]
    return [
        ("content-type", CONTENT_TYPE),
        ("event_type", envelope["event_type"].encode()),
        ("correlation_id", envelope["correlation_id"].encode()),
        ("tenant_id", envelope["tenant_id"].encode()),
        *tracing.headers(),
    ]


def accepted(n: int) -> web.Response:
    """The 200 answer: JSON {"accepted": n}, as `web.json_response` writes it, without
    running the JSON encoder for one number."""
    return web.Response(text=f'{{"accepted": {n}}}', content_type="application/json")


def error(status: int, reason: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """Every refusal: JSON {"error": reason}."""
    return web.json_response({"error": reason}, status=status, headers=headers)


def request_id(request: web.Request) -> str:
    """The request's id: the caller's X-Request-Id if it is a sane one, else a new uuid4."""
    return request[REQUEST_ID]


def route_of(request: web.Request) -> str:
    """The route's template (`/webhooks/botpress/{tenant_id}`), never the raw path:
    metric labels must not grow with tenant ids or garbage URLs."""
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    return resource.canonical if resource is not None else "unmatched"


INGRESS = web.AppKey("ingress", Ingress)
REQUEST_ID = web.RequestKey("request_id", str)


@web.middleware
async def observe(request: web.Request, handler) -> web.StreamResponse:
    """Request id (the causation id of every record it produces), logging context,
    the requests metric, and JSON bodies for aiohttp's own refusals (413, 404, 405)."""
    given = request.headers.get("X-Request-Id")
    rid = given if given and _SANE_REQUEST_ID.match(given) else new_id()
    request[REQUEST_ID] = rid
    bound = structlog.contextvars.bind_contextvars(request_id=rid)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.reason.lower()
        if exc.status == 413:
            reason = f"body larger than {request.app[INGRESS].settings.ingress_max_body_bytes} bytes"
        elif exc.status == 408:
            reason = f"body not received within {request.app[INGRESS].settings.ingress_body_timeout_s:g}s"
        response = error(exc.status, reason, {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")})
    except Exception:  # a bug in a handler: logged with its trace, answered 500 so the platform retries
        log.exception("ingress handler failed", route=route_of(request))
        response = error(500, "internal error")
    finally:
        structlog.contextvars.reset_contextvars(**bound)
    response.headers["X-Request-Id"] = rid
    _child(WEBHOOK_REQUESTS, route_of(request), response.status).inc()
    return response


async def _health(request: web.Request) -> web.Response:
    ingress = request.app[INGRESS]
    try:
        kafka = await asyncio.wait_for(ingress.kafka_reachable(), timeout=2.0)
    except Exception as exc:  # an unreachable broker is an unhealthy answer, not a crash
        log.warning("health check failed", check="kafka", error=str(exc))
        kafka = False
    return web.json_response(
        {"process": PROCESS, "status": "ok" if kafka else "unhealthy", "checks": {"kafka": kafka}}, status=200 if kafka else 503
    )


def make_app(
    ingress: Ingress,
    routes: Iterable[web.RouteDef],
    secrets: Iterable[str] = (),
    setups: Iterable[Callable[[web.Application], None]] = (),
) -> web.Application:
    """The ingress application: the webhook routes it is given (every spoke's, from
    the composition root) and /healthz. Starting it connects the producer; cleaning
    it up flushes it. `secrets` names the settings the routes verify requests with:
    an empty one, or a built-in default outside development mode, is a SettingsError
    here, before anything listens. `setups` let a webhook give the application what
    its routes need for its lifetime (keys, cleanup contexts), before it is frozen.
    /metrics is not on this public port: it is on the ops port (POSEIDON_OPS_PORT),
    which stays on loopback or the cluster network."""
    ingress.settings.require_secrets(secrets, "ingress")
    app = web.Application(client_max_size=ingress.settings.ingress_max_body_bytes, middlewares=[observe])
    app[INGRESS] = ingress
    app.add_routes(list(routes))
    app.router.add_get("/healthz", _health)
    for setup in setups:
        setup(app)

    async def producer(_: web.Application):
        await ingress.start()
        yield
        await ingress.stop()

    app.cleanup_ctx.append(producer)
    return app


async def serve(
    settings: Settings,
    codec: Codec,
    routes: Iterable[web.RouteDef],
    secrets: Iterable[str] = (),
    *,
    setups: Iterable[Callable[[web.Application], None]] = (),
    produce_timeout_s: float = PRODUCE_TIMEOUT_S,
) -> None:
    """Serve until SIGTERM/SIGINT, then stop accepting, let in-flight requests
    finish (each bounded by the produce timeout) and flush the producer."""
    ingress = Ingress(settings, codec, produce_timeout_s=produce_timeout_s)
    ops = OpsServer(settings.ops_host, settings.ops_port_at("ingress", 0), PROCESS, {"kafka": ingress.kafka_reachable})
    app = make_app(ingress, routes, secrets, setups)
    await serve_http_until_stopped(
        "ingress",
        app,
        settings,
        settings.ingress_host,
        settings.ingress_port,
        ops,
        shutdown_timeout=produce_timeout_s + 1,
        path="/webhooks/facebook",
    )
