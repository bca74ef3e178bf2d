"""OpenTelemetry tracing for every hop: W3C trace context (traceparent/tracestate)
read from and written into Kafka record headers, gRPC metadata and HTTP headers,
and the spans the shared machinery opens (ingress accept, keyed consumer records,
processor commands, spoke calls, projection batches, gRPC and REST calls).

Off unless an OTLP endpoint is configured (POSEIDON_OTLP_ENDPOINT, or the standard
OTEL_EXPORTER_OTLP_ENDPOINT): then no SDK is loaded, nothing is extracted or
injected, and every helper here returns at its first check (the processor's hot
path pays one attribute read per command). It must not decide anything: a record
is handled the same with or without a trace."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from base.settings import Settings

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_PROPAGATOR = TraceContextTextMapPropagator()
_NO_SPAN = nullcontext()
_NO_HEADERS: tuple = ()
SERVER, CLIENT, CONSUMER, INTERNAL = SpanKind.SERVER, SpanKind.CLIENT, SpanKind.CONSUMER, SpanKind.INTERNAL


class _Switch:
    """Whether this process exports traces and through which provider: set once at start
    (`configure`), read on every hop. The provider is ours, not OpenTelemetry's global one,
    so a test process can switch tracing off again (`disable`)."""

    on = False
    provider: Any = None
    tracer: Any = None


_switch = _Switch()


def endpoint_of(settings: Settings) -> str:
    """The OTLP/gRPC endpoint traces go to: POSEIDON_OTLP_ENDPOINT, else the standard
    OTEL_EXPORTER_OTLP_ENDPOINT (which the OpenTelemetry exporter reads itself too); empty: off."""
    return settings.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")


def configure(settings: Settings, service: str, exporter: Any = None) -> bool:
    """Install the SDK with a batching OTLP exporter when an endpoint is configured
    (returns whether it did). Called once per process, by the composition root;
    `exporter`: another SDK span exporter instead (the benchmark's in-memory one)."""
    endpoint = endpoint_of(settings)
    if not endpoint and exporter is None:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # A malformed traceparent from outside is no context (context_of); the library's warning would quote it.
    logging.getLogger("opentelemetry.trace").setLevel(logging.ERROR)
    provider = TracerProvider(resource=Resource.create({"service.name": service}), shutdown_on_exit=True)
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
    # One second between exports: a trace shows in the viewer about a second after the reply.
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    disable()
    _switch.provider, _switch.tracer = provider, provider.get_tracer("poseidon")
    _switch.on = True
    return True


def enabled() -> bool:
    return _switch.on


def disable() -> None:
    """Export what is buffered and stop tracing (a test that turned it on, a stopping process)."""
    provider, _switch.provider, _switch.tracer, _switch.on = _switch.provider, None, None, False
    if provider is not None:
        provider.shutdown()


def _tracer() -> trace.Tracer:
    return _switch.tracer


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, bytes | bytearray) else str(value)


def context_of(headers: Iterable[tuple[str, Any]] | Mapping[str, Any] | None) -> otel_context.Context | None:
    """The trace context a record's headers (name, bytes) pairs, gRPC metadata or HTTP headers carry; None if none."""
    if not headers:
        return None
    carrier: dict[str, str] = {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        lowered = name.lower()
        if lowered == TRACEPARENT or lowered == TRACESTATE:
            carrier[lowered] = _text(value)
    if TRACEPARENT not in carrier:
        return None
    extracted = _PROPAGATOR.extract(carrier)
    # A malformed traceparent carries no context: None, so the caller's own span stays the parent.
    return extracted if trace.get_current_span(extracted).get_span_context().is_valid else None


def span(
    name: str,
    parent: Iterable[tuple[str, Any]] | Mapping[str, Any] | None = None,
    *,
    kind: SpanKind = INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    links: list[Link] | None = None,
) -> Any:
    """A context manager: the span `name`, child of the context in `parent` (record
    headers or metadata) when it carries one, else of the current span. Off: a shared no-op."""
    if not _switch.on:
        return _NO_SPAN
    return _span(name, context_of(parent), kind, attributes, links)


@contextmanager
def _span(name: str, context, kind: SpanKind, attributes, links) -> Iterator[Any]:
    # An exception's text is not exported (it may carry what logs mask: an outside system's answer, a
    # refusal's words): the span records its type only, as the logs do.
    with _tracer().start_as_current_span(
        name, context=context, kind=kind, attributes=attributes, links=links, record_exception=False,
        set_status_on_exception=False,
    ) as current:  # fmt: skip
        try:
            yield current
        except BaseException as exc:
            current.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
            raise


def public_span(name: str, untrusted: Iterable[tuple[str, Any]] | Mapping[str, Any] | None, **options: Any) -> Any:
    """A span at a public entry point (a webhook, a REST call): a trace of our own, never
    the caller's — whoever sends a traceparent would otherwise choose our trace id,
    switch sampling off or fill every record downstream with its tracestate. The
    caller's context, if valid, is linked (its trace id and span id only)."""
    if not _switch.on:
        return _NO_SPAN
    caller = context_of(untrusted)
    links = list(options.pop("links", None) or ())
    if caller is not None:
        sc = trace.get_current_span(caller).get_span_context()
        links.append(Link(trace.SpanContext(sc.trace_id, sc.span_id, is_remote=True)))
    return _span(name, otel_context.Context(), options.pop("kind", SERVER), options.pop("attributes", None), links)


@contextmanager
def batch_span(name: str, headers_of_records: Iterable[Iterable[tuple[str, Any]] | None], **attributes: Any) -> Iterator[None]:
    """One span for a batch of records of many traces: the child of the first record's
    trace, linked to every other trace in the batch (a batch belongs to all of them)."""
    if not _switch.on:
        yield
        return
    contexts = [c for c in (context_of(h) for h in headers_of_records) if c is not None]
    spans = [trace.get_current_span(c).get_span_context() for c in contexts]
    first = contexts[0] if contexts else None
    seen, links = set(), []
    for sc in spans[1:]:
        if sc.trace_id != spans[0].trace_id and sc.trace_id not in seen:
            seen.add(sc.trace_id)
            links.append(Link(sc))
    with _span(name, first, INTERNAL, attributes, links):
        yield


def _traceparent() -> list[tuple[str, str]]:
    """The current span's context as W3C headers, formatted directly (the propagator's
    regex and dict work cost more than the span itself on the processor's path)."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return []
    found = [(TRACEPARENT, f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}")]
    if context.trace_state:
        found.append((TRACESTATE, context.trace_state.to_header()))
    return found


def headers() -> list[tuple[str, bytes]] | tuple:
    """Kafka record headers carrying the current span's context (empty when off or outside a span)."""
    if not _switch.on:
        return _NO_HEADERS
    return [(name, value.encode()) for name, value in _traceparent()]


def metadata() -> tuple[tuple[str, str], ...]:
    """gRPC metadata / HTTP headers carrying the current span's context."""
    if not _switch.on:
        return _NO_HEADERS
    return tuple(_traceparent())


def current_trace_id() -> str:
    """The current trace's id (32 hex digits), or "" outside a trace (or when off)."""
    if not _switch.on:
        return ""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""


class ClientTracing(grpc.aio.UnaryUnaryClientInterceptor):
    """A span per outgoing gRPC call, its context in the call's metadata (the server continues the trace)."""

    async def intercept_unary_unary(self, continuation, details, request):
        if not _switch.on:
            return await continuation(details, request)
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        with span(f"grpc call {method}", kind=CLIENT, attributes={"rpc.method": method}):
            details = details._replace(metadata=(*(details.metadata or ()), *metadata()))
            call = await continuation(details, request)
            await call  # the span lasts until the answer (or the error) is in
            return call
