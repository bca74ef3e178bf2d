"""The one spoke runtime every adapter runs on: consumes the topics a spoke
reacts to, calls the spoke's handler with a shared retry policy (tenacity:
exponential backoff with jitter, retryable failures only) and a circuit breaker
per outside system and tenant (pybreaker), reports every outcome and breaker
change as an event on `spoke.<name>.events`, parks poison records on
`spoke.<name>.dlq`, and exposes breaker state as metrics with bounded labels (a
tenant is named in logs and events, never in a label). A spoke decides no
routing: it acts on what the Message Hub decided.

Two ways in: events a spoke reacts to (`SpokeSpec.topics` + `accepts`), and saga
steps (`SpokeSpec.requests`): the Saga hub's processor puts a `SpokeRequested` on
`spoke.<name>.requests` (with a reply address: `saga.commands`), the runner calls
the named action, and answers with a SpokeOutcome that names the request and
carries the step's result, sent to the reply address and to `spoke.<name>.events`. A request is
tried (retry policy, breaker, waiting for recovery) only until its deadline: then
the runner answers failure, because the saga no longer waits and acts on its own
retry policy (hubs/saga/definition.py)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pybreaker
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Gauge
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from base.logging import bind_correlation
from base.settings import Settings
from infra import tracing
from infra.command_client import CommandClient
from infra.consumers import group_consumer, pin_positions
from infra.dlq import DeadLetters
from infra.hub import OUTCOME_SCHEMA, REQUEST_SCHEMA, answer_topics, reply_address
from infra.hub import envelope as event_envelope
from infra.keyed import KeyedConsumer
from infra.ops import OpsServer
from infra.outage import PLATFORM_OUTAGE
from infra.service import serve_until_stopped
from schemas.codec import Codec, DecodeError
from schemas.contracts import OUTCOME_UNKNOWN, spoke_actor

log = structlog.get_logger(__name__)
T = TypeVar("T")

BREAKER_SCHEMA = "poseidon.spoke.BreakerStateChanged"
BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}
SHARED_SCOPE = "*"
"""The scope of a breaker for all tenants (platform-wide credentials, or a call without a tenant)."""
REPLIED = "replied"
"""Header on an outcome also sent to the requester's reply address."""

CONCURRENCY = 32
"""Records of different keys (conversations, sagas) handled at once by one spoke process."""
_ATTEMPTS: ContextVar[int] = ContextVar("spoke_attempts", default=0)
"""Tries of the current record's last outside call; per task, as records run concurrently."""

BREAKER_STATE = Gauge(
    "poseidon_breaker_state",
    "Circuit breaker state, 0 closed, 1 half-open, 2 open: of the breaker for all tenants (scope shared),"
    " or the worst of the per-tenant breakers (scope tenant).",
    ["system", "scope"],
)
BREAKERS_OPEN = Gauge("poseidon_breakers_open", "Circuit breakers open now, per-tenant ones included.", ["system"])
SPOKE_CALLS = Counter("poseidon_spoke_calls_total", "Outside-system calls by outcome.", ["spoke", "system", "outcome"])


class SpokeError(Exception):
    """Base of the failures a spoke client reports; `reason` never holds personal data."""

    code = "error"

    def __init__(self, reason: str, *, code: str | None = None):
        super().__init__(reason)
        self.reason = reason
        if code:
            self.code = code


class RetryableError(SpokeError):
    """Worth trying again: timeouts, 5xx, rate limits (`retry_after` seconds, if the system said)."""

    code = "retryable"

    def __init__(self, reason: str, *, code: str | None = None, retry_after: float | None = None):
        super().__init__(reason, code=code)
        self.retry_after = retry_after


class PermanentError(SpokeError):
    """Will fail the same way again (bad request, outside the messaging window…): no retry."""

    code = "permanent"


class ReauthorizationRequired(PermanentError):
    """The tenant's credentials for the system are invalid: the channel needs re-authorisation.
    Counts against that tenant's breaker only."""

    code = "reauthorization_required"


@dataclass(frozen=True)
class Outcome:
    """What a handler did, reported as a `poseidon.spoke.SpokeOutcome` event."""

    operation: str
    succeeded: bool = True
    detail: str = ""
    external_id: str = ""
    data: Mapping[str, str] = field(default_factory=dict)
    error_code: str = ""
    result: Mapping[str, Any] = field(default_factory=dict)
    """For a saga request: the step's result, which later steps read (JSON-able)."""


@dataclass(frozen=True)
class SpokeCall:
    """One saga request as an action handler sees it."""

    tenant_id: str
    correlation_id: str
    event_id: str
    """The SpokeRequested event's id: causation of what the handler tells hubs."""
    saga_id: str
    step: str
    attempt: int
    request_id: str
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class SpokeSpec:
    """What a spoke declares (`spokes/<name>/spoke.py: SPOKE`)."""

    name: str
    """`facebook`, `botpress`, `odoo`, `minio`: topic names and consumer group."""
    system: str
    """The outside system, for breakers and metrics (`facebook-graph`)."""
    topics: Sequence[str] = ()
    """Logical topics it reacts to (`message.events`); none for a spoke that only does saga steps."""
    accepts: Callable[[str, dict], bool] = lambda event_type, record: False
    """(event type, decoded record) → act on it? Pure and cheap: called for every record."""
    handle: Callable[[SpokeContext, str, dict], Awaitable[Outcome]] | None = None
    """The I/O step of a reaction. Raise RetryableError / PermanentError / ReauthorizationRequired."""
    per_tenant_breaker: bool = True
    """One breaker per tenant (credentials per tenant) or one for the whole system."""
    resources: Callable[[SpokeContext], AbstractAsyncContextManager[Any]] | None = None
    """Opens what the handler needs for the spoke's lifetime (a client, a database
    pool); the runner enters it at start, exits at stop, and puts it on `ctx.resources`."""
    requests: Mapping[str, Callable[[SpokeContext, SpokeCall], Awaitable[Outcome]]] = field(default_factory=dict)
    """Saga actions by name (`AskBot`): what a `SpokeRequested` may ask of this spoke."""
    ops_index: int = field(default=0, kw_only=True)
    """Added to the spokes' ops-port base 9400 (facebook's 1 gives 9401); unique among the spokes."""

    @property
    def all_topics(self) -> tuple[str, ...]:
        return (*self.topics, *((f"spoke.{self.name}.requests",) if self.requests else ()))


class BreakerOpen(RetryableError):
    code = "breaker_open"


class _BreakerEvents(pybreaker.CircuitBreakerListener):
    def __init__(self, runtime: SpokeContext, system: str, scope: str):
        self.runtime, self.system, self.scope = runtime, system, scope

    def state_change(self, cb, old_state, new_state) -> None:
        old = old_state.name if old_state is not None else "closed"
        log.warning("circuit breaker changed", system=self.system, scope=self.scope, previous=old, state=new_state.name)
        self.runtime._breaker_changed(self.system, self.scope, old, new_state.name)


class SpokeContext:
    """What a handler may use: settings, one pooled httpx client with timeouts,
    the command client (to tell hubs what happened), and `call()` — the shared
    retry + breaker policy around one outside call.

    It holds the breakers (`breaker(tenant_id, system)` is one tenant's) and keeps
    the breaker metrics of the systems it calls: `poseidon_breaker_state{system,
    scope}` with scope `shared` or `tenant` (the worst of the per-tenant breakers)
    and `poseidon_breakers_open{system}`, recomputed from all its breakers on every
    change. A process runs one spoke, so one context per system sets those series."""

    def __init__(self, spec: SpokeSpec, settings: Settings, codec: Codec, commands: CommandClient | None):
        self.spec, self.settings, self.codec, self.commands = spec, settings, codec, commands
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(settings.http_timeout_s, connect=min(settings.http_timeout_s, 5.0)))
        self._breakers: dict[str, pybreaker.CircuitBreaker] = {}
        self._breaker_states: dict[str, pybreaker.CircuitMemoryStorage] = {}
        """Each breaker's state storage, by breaker name: we hand it in, so its
        `opened_at` is ours to read (pybreaker's own check is synchronous)."""
        self._breaker_levels: dict[str, dict[str, int]] = {}
        """System → breaker scope → the state (BREAKER_STATES) its breaker last
        announced: what the metrics are computed from. pybreaker tells its listeners
        of a change before it stores it, so its own state is still the old one then."""
        self.breaker_changes: list[tuple[str, str, str, str]] = []
        self.resources: Any = None

    @property
    def attempts(self) -> int:
        """How many tries the last `call()` of the current record took."""
        return _ATTEMPTS.get()

    @attempts.setter
    def attempts(self, value: int) -> None:
        _ATTEMPTS.set(value)

    def breaker(self, tenant_id: str, system: str | None = None) -> pybreaker.CircuitBreaker:
        """The breaker that `call(tenant_id, …, system)` goes through, made on first use."""
        system = system or self.spec.system
        scope = tenant_id if self.spec.per_tenant_breaker and tenant_id else SHARED_SCOPE
        breaker = self._breakers.get(f"{system}|{scope}")
        if breaker is None:
            state = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
            breaker = pybreaker.CircuitBreaker(
                fail_max=self.settings.breaker_fail_max,
                reset_timeout=self.settings.breaker_reset_s,
                # A bad request says nothing about the system's health; bad credentials do (per tenant).
                exclude=[lambda e: isinstance(e, PermanentError) and not isinstance(e, ReauthorizationRequired)],
                listeners=[_BreakerEvents(self, system, scope)],
                state_storage=state,
                name=f"{system}:{scope}",
            )
            self._breaker_states[breaker.name] = state
            self._breakers[f"{system}|{scope}"] = breaker
            self._breaker_levels.setdefault(system, {})[scope] = BREAKER_STATES["closed"]
            self._publish_breaker_metrics(system)
        return breaker

    def forget_breakers(self) -> None:
        """Drops every breaker (the spoke stopped): none of them is counted any more,
        and a metric series that described only them is removed."""
        systems = list(self._breaker_levels)
        self._breakers.clear()
        self._breaker_states.clear()
        self._breaker_levels.clear()
        for system in systems:
            self._publish_breaker_metrics(system)

    def _breaker_changed(self, system: str, scope: str, previous: str, state: str) -> None:
        self._breaker_levels.setdefault(system, {})[scope] = BREAKER_STATES.get(state, 0)
        self._publish_breaker_metrics(system)
        self.breaker_changes.append((system, scope, previous, state))

    def _publish_breaker_metrics(self, system: str) -> None:
        # Labels take bounded values only: a SaaS with thousands of tenants must not
        # keep a series per tenant ever seen. Which tenant it is, logs and events say.
        levels = self._breaker_levels.get(system, {})
        by_scope = {
            "shared": [level for scope, level in levels.items() if scope == SHARED_SCOPE],
            "tenant": [level for scope, level in levels.items() if scope != SHARED_SCOPE],
        }
        for label, found in by_scope.items():
            if found:
                BREAKER_STATE.labels(system, label).set(max(found))
            else:
                BREAKER_STATE.remove(system, label)
        if levels:
            BREAKERS_OPEN.labels(system).set(sum(level == BREAKER_STATES["open"] for level in levels.values()))
        else:
            BREAKERS_OPEN.remove(system)

    async def call(
        self,
        tenant_id: str,
        operation: str,
        fn: Callable[[], Awaitable[T]],
        system: str | None = None,
        *,
        at_most_once: bool = False,
    ) -> T:
        """Run `fn` (one outside call) under the breaker of (system, tenant), retrying
        RetryableError with exponential backoff + jitter (at least `retry_after`).
        `system` names another outside system than the spoke's own (the MinIO
        spoke fetches from the chat platform's CDN before it writes to S3).
        `at_most_once`: a failure whose outcome is unknown (OUTCOME_UNKNOWN: the
        request left, no answer came) is raised at once, never retried."""
        system = system or self.spec.system
        if tracing.enabled():
            # The outside call as a span of the record's trace (each try, breaker refusals included).
            attributes = {"peer.service": system, "poseidon.operation": operation, "poseidon.spoke": self.spec.name}
            with tracing.span(f"{self.spec.name} call {system} {operation}", kind=tracing.CLIENT, attributes=attributes):
                return await self._call(tenant_id, operation, fn, system, at_most_once)
        return await self._call(tenant_id, operation, fn, system, at_most_once)

    async def _call(self, tenant_id: str, operation: str, fn: Callable[[], Awaitable[T]], system: str, at_most_once: bool) -> T:
        breaker = self.breaker(tenant_id, system)
        self.attempts = 0

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            backoff = wait_exponential_jitter(initial=0.2, max=5.0)(state)
            hint = getattr(exc, "retry_after", None) or 0.0
            return max(backoff, min(hint, 60.0))

        async for attempt in AsyncRetrying(
            # An open breaker is not retried here: the runner waits for it to half-open.
            retry=retry_if_exception(
                lambda e: (
                    isinstance(e, RetryableError)
                    and not isinstance(e, BreakerOpen)
                    and not (at_most_once and e.code == OUTCOME_UNKNOWN)
                )
            ),
            stop=stop_after_attempt(self.settings.spoke_max_attempts),
            wait=wait,
            reraise=True,
        ):
            with attempt:
                self.attempts += 1
                return await self._through_breaker(breaker, system, operation, fn)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _through_breaker(
        self, breaker: pybreaker.CircuitBreaker, system: str, operation: str, fn: Callable[[], Awaitable[T]]
    ) -> T:
        # pybreaker is synchronous: refuse while open (its own rule), make the async
        # call, then let the breaker account for the outcome by replaying it. Reasons and
        # metrics name the system called (`system`), not the spoke's own: the MinIO
        # spoke's CDN failures must not read as S3 failures.
        if breaker.current_state == pybreaker.STATE_OPEN:
            opened_at = self._breaker_states[breaker.name].opened_at
            if opened_at and datetime.now(UTC) < opened_at + timedelta(seconds=breaker.reset_timeout):
                raise BreakerOpen(f"{system} breaker open for {breaker.name.split(':', 1)[1]}; not calling")
        try:
            result = await fn()
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            # Refused or never connected: the request never left. Anything later
            # (a read timeout, a connection dropped mid-answer): it may have been done.
            never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
            failure: BaseException = RetryableError(
                f"{operation}: {type(exc).__name__} talking to {system}",
                code="unreachable" if never_sent else OUTCOME_UNKNOWN,
            )
        except SpokeError as exc:
            failure = exc
        else:
            breaker.call(lambda: result)
            SPOKE_CALLS.labels(self.spec.name, system, "ok").inc()
            return result
        SPOKE_CALLS.labels(self.spec.name, system, getattr(failure, "code", "error")).inc()
        try:
            breaker.call(_raise, failure)
        except pybreaker.CircuitBreakerError:
            raise BreakerOpen(f"{system} breaker opened after repeated failures ({failure})") from failure
        raise failure  # pragma: no cover - breaker.call re-raises


def _raise(exc: BaseException) -> None:
    raise exc


def _outage(exc: BaseException) -> RetryableError:
    return RetryableError(f"platform dependency unavailable: {type(exc).__name__}: {str(exc)[:200]}", code="platform_unavailable")


def _json_object(text: str) -> dict | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class SpokeRunner:
    """Runs one spoke: a consumer group on its topics. Records of one key (a
    conversation, a saga) are handled one at a time, in order; records of
    different keys at once (up to CONCURRENCY), so a slow outside call of one
    conversation does not hold up the others. A partition's offset is committed up
    to the last record before which every record is fully handled.

    * accepted record → `handle` → outcome event; PermanentError → a failed outcome
      event (not retried); an undecodable record or a handler bug → dead letter.
    * RetryableError after the retry policy, or an open breaker → the record is NOT
      skipped: the runner waits (until the breaker may half-open) and tries the same
      record again, so messages are processed once the system recovers.
    * Delivery to the outside system is at least once: a crash between the call and
      the commit repeats the call on restart. Hubs deduplicate what spokes report.
    * A new consumer group starts at the end of its topics (a new spoke must not
      replay history at the outside world); afterwards it resumes from its commits.
    """

    def __init__(self, spec: SpokeSpec, settings: Settings, codec: Codec, hubs: Sequence | None = None):
        self.spec, self.settings, self.codec = spec, settings, codec
        self.hubs = hubs
        self.answer_topics = answer_topics(hubs or (), settings.topic)
        """Where a request's outcome may be sent back (the Saga hub's commands topic)."""
        self.process_name = f"{spec.name}-spoke"
        self.events_topic = settings.topic(f"spoke.{spec.name}.events")
        self.dlq_topic = settings.topic(f"spoke.{spec.name}.dlq")
        self.assigned = asyncio.Event()
        self.handled = 0
        self.context: SpokeContext | None = None
        """The context `run` made (its breakers are the tenants' breakers); None before."""

    async def serve(self) -> None:
        ops = OpsServer(
            self.settings.ops_host,
            self.settings.ops_port_at("spoke", self.spec.ops_index),
            self.process_name,
            {"assigned": lambda: self.assigned.is_set()},
        )
        # No restart: a spoke retries its records in place (the keyed consumer).
        await serve_until_stopped("spoke", self.run, ops, (), lambda: {"spoke": self.spec.name, "handled": self.handled})

    async def run(self) -> None:
        commands = None
        if self.hubs is not None:
            commands = CommandClient(self.settings, self.codec, self.hubs)
            await commands.start()
        ctx = self.context = SpokeContext(self.spec, self.settings, self.codec, commands)
        try:
            async with AsyncExitStack() as stack:
                if self.spec.resources is not None:
                    ctx.resources = await stack.enter_async_context(self.spec.resources(ctx))
                await self._consume(ctx)
        finally:
            ctx.forget_breakers()  # stopped, even cancelled: its breakers leave the metrics
        await ctx.http.aclose()
        if commands is not None:
            await commands.stop()

    async def _consume(self, ctx: SpokeContext) -> None:
        consumer = group_consumer(
            self.settings,
            self.spec.all_topics,
            f"poseidon-spoke-{self.spec.name}",
            offset_reset="latest",
            # A record may wait for a breaker to half-open: allow long handling.
            max_poll_interval_ms=15 * 60 * 1000,
        )
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.kafka_bootstrap, acks="all", enable_idempotence=True)
        await producer.start()
        await consumer.start()
        try:
            await pin_positions(consumer)  # a record produced after "healthy" is never skipped
            self.assigned.set()
            log.info("spoke consuming", spoke=self.spec.name, topics=list(self.spec.all_topics))
            dead_letters = DeadLetters(producer, self.codec, self.process_name, self.dlq_topic, event="dead-lettering")
            await KeyedConsumer(
                consumer,
                lambda record: self._handle(ctx, producer, dead_letters, record),
                process=self.process_name,
                hub=self.spec.name,
                dead_letters=dead_letters,
                # Kafka or a hub away while reporting: the record is tried again, not skipped.
                is_transient=lambda exc: isinstance(exc, PLATFORM_OUTAGE),
                concurrency=CONCURRENCY,
                max_records=4 * CONCURRENCY,
            ).run()
        finally:
            self.assigned.clear()
            await consumer.stop()
            await producer.stop()

    async def _handle(
        self, ctx: SpokeContext, producer: AIOKafkaProducer, dead_letters: DeadLetters, record: ConsumerRecord
    ) -> str:
        """One record, completely; returns its outcome (a metric label)."""
        try:
            decoded = self.codec.decode(record.value)
        except DecodeError as exc:
            await dead_letters.publish(record, exc.reason, "DecodeError")
            return "dead_lettered"
        name, rec = decoded.name, decoded.record
        if name == REQUEST_SCHEMA:
            await self._answer(ctx, producer, dead_letters, record, rec)
            return "answered"
        try:
            wanted = self.spec.accepts(name, rec)
        except Exception as exc:  # a bug in a pure filter: park the record, keep the partition moving
            await dead_letters.publish(record, f"accepts() failed: {type(exc).__name__}: {exc}", "FilterError")
            return "dead_lettered"
        if not wanted:
            return "ignored"
        envelope = rec.get("envelope", {})
        bind_correlation(envelope.get("correlation_id"), spoke=self.spec.name, event_id=envelope.get("event_id"))
        outcome = await self._until_done(
            ctx, producer, dead_letters, record, envelope, name.rsplit(".", 1)[-1], lambda: self.spec.handle(ctx, name, rec)
        )
        if outcome is None:
            return "dead_lettered"
        await self._emit_breaker_changes(ctx, producer, envelope)
        await self._emit(producer, envelope, outcome, ctx.attempts)
        return "succeeded" if outcome.succeeded else "failed"

    async def _answer(
        self, ctx: SpokeContext, producer: AIOKafkaProducer, dead_letters: DeadLetters, record: ConsumerRecord, rec: dict
    ) -> None:
        """Do one saga request and answer it (always: the saga waits for the answer)."""
        envelope, ref, action = rec["envelope"], rec["request"], rec["action"]
        bind_correlation(envelope["correlation_id"], spoke=self.spec.name, saga=ref["saga_id"], step=ref["step"])
        handler = self.spec.requests.get(action)
        payload = _json_object(rec["payload_json"])
        deadline = rec["deadline_at"]
        ctx.attempts = 0
        if rec["spoke"] != self.spec.name or handler is None:
            known = ", ".join(sorted(self.spec.requests)) or "none"
            outcome = Outcome(
                action,
                False,
                f"the {self.spec.name} spoke has no action {action!r} (known: {known})",
                error_code="unknown_action",
            )
        elif payload is None:
            outcome = Outcome(action, False, "the request's payload_json is not a JSON object", error_code="bad_request")
        elif datetime.now(UTC) >= deadline:
            outcome = Outcome(action, False, "the request was read after its deadline; not attempted", error_code="past_deadline")
        else:
            call = SpokeCall(
                tenant_id=envelope["tenant_id"],
                correlation_id=envelope["correlation_id"],
                event_id=envelope["event_id"],
                saga_id=ref["saga_id"],
                step=ref["step"],
                attempt=int(ref["attempt"]),
                request_id=ref["request_id"],
                payload=payload,
            )
            outcome = await self._until_done(
                ctx, producer, dead_letters, record, envelope, action, lambda: handler(ctx, call), deadline
            )
            if outcome is None:  # a handler bug: dead-lettered; the saga still gets its answer
                outcome = Outcome(action, False, "the spoke failed on this request (dead-lettered)", error_code="handler_error")
        await self._emit_breaker_changes(ctx, producer, envelope)
        reply = reply_address(record.headers, self.answer_topics)
        await self._emit(producer, envelope, outcome, ctx.attempts, request=ref, reply=reply)

    async def _until_done(
        self,
        ctx: SpokeContext,
        producer: AIOKafkaProducer,
        dead_letters: DeadLetters,
        record: ConsumerRecord,
        envelope: Mapping[str, Any],
        operation: str,
        attempt: Callable[[], Awaitable[Outcome]],
        deadline: datetime | None = None,
    ) -> Outcome | None:
        """Run `attempt` under the runner's rules: a PermanentError is a failed
        outcome; a RetryableError (after the call's own retries) waits for the
        system and tries again — until `deadline`, if there is one, then it is a
        failed outcome; anything else is a bug: the record is dead-lettered (None)."""
        started = time.perf_counter()
        while True:
            try:
                outcome = await attempt()
                break
            except PermanentError as exc:
                outcome = Outcome(operation=operation, succeeded=False, detail=exc.reason, error_code=exc.code)
                break
            except (RetryableError, *PLATFORM_OUTAGE) as raised:
                exc = raised if isinstance(raised, RetryableError) else _outage(raised)
                pause = self.settings.breaker_reset_s if isinstance(exc, BreakerOpen) else min(self.settings.breaker_reset_s, 5.0)
                if deadline is not None and datetime.now(UTC) + timedelta(seconds=pause) >= deadline:
                    outcome = Outcome(operation, False, f"still failing at the deadline: {exc.reason}", error_code=exc.code)
                    break
                # Not skipped: wait for the system (or the breaker's reset) and try again.
                log.warning("outside system unavailable; will retry the same record", reason=exc.reason, pause_s=pause)
                await self._emit_breaker_changes(ctx, producer, envelope)
                await self._emit(producer, envelope, Outcome(operation, False, exc.reason, error_code=exc.code), ctx.attempts)
                await asyncio.sleep(pause)
                # Keep the group membership alive while waiting (heartbeats run in the background).
            except Exception as exc:
                log.error("spoke handler failed", error_type=type(exc).__name__)
                await dead_letters.publish(record, f"{type(exc).__name__}: {exc}", "HandlerError")
                return None
        self.handled += 1
        log.info(
            "spoke outcome",
            operation=outcome.operation,
            succeeded=outcome.succeeded,
            error_code=outcome.error_code,
            seconds=round(time.perf_counter() - started, 3),
        )
        return outcome

    async def _emit(
        self,
        producer: AIOKafkaProducer,
        source: Mapping[str, Any],
        outcome: Outcome,
        attempts: int,
        request: Mapping | None = None,
        reply: tuple[str, bytes, bytes] | None = None,
    ) -> None:
        """Reports an outcome on the spoke's events topic; an answer to a request that
        named a reply address (the Saga hub's processor sends them) goes there too,
        and its copy on the events topic says so (header `replied`), so the saga
        driver does not record it a second time."""
        record = {
            "envelope": self._envelope(OUTCOME_SCHEMA, source),
            "spoke": self.spec.name,
            "system": self.spec.system,
            "operation": outcome.operation,
            "succeeded": outcome.succeeded,
            "detail": outcome.detail[:2000],
            "error_code": outcome.error_code,
            "external_id": outcome.external_id,
            "data": {k: str(v) for k, v in outcome.data.items()},
            "attempts": max(attempts, 1),
            "request": dict(request) if request is not None else None,
            "result_json": json.dumps(dict(outcome.result), sort_keys=True, default=str),
        }
        key = str(source.get("aggregate_id", "")).encode()
        value = self.codec.encode(OUTCOME_SCHEMA, record)
        if reply is None:
            await producer.send_and_wait(self.events_topic, value, key=key, headers=list(tracing.headers()))
            return
        topic, reply_key, _ = reply
        sent = [
            await producer.send(topic, value, key=reply_key, headers=list(tracing.headers())),
            await producer.send(self.events_topic, value, key=key, headers=[(REPLIED, b"1"), *tracing.headers()]),
        ]
        await asyncio.gather(*sent)

    async def _emit_breaker_changes(self, ctx: SpokeContext, producer: AIOKafkaProducer, source: Mapping[str, Any]) -> None:
        while ctx.breaker_changes:
            system, scope, previous, state = ctx.breaker_changes.pop(0)
            record = {
                "envelope": self._envelope(BREAKER_SCHEMA, source),
                "spoke": self.spec.name,
                "system": system,
                "scope": scope,
                "previous_state": previous,
                "state": state,
            }
            await producer.send_and_wait(self.events_topic, self.codec.encode(BREAKER_SCHEMA, record), key=scope.encode())

    def _envelope(self, event_type: str, source: Mapping[str, Any]) -> dict:
        return event_envelope(
            event_type,
            event_id=str(uuid.uuid4()),
            aggregate_id=str(source.get("aggregate_id", "")),
            aggregate_version=int(source.get("aggregate_version", 0) or 0),
            tenant_id=str(source.get("tenant_id", "")),
            correlation_id=str(source.get("correlation_id", "")),
            causation_id=str(source.get("event_id", "")),
            occurred_at=datetime.now(UTC),
            actor=spoke_actor(self.spec.name),
        )
