"""Tracing's shared helpers without a broker: off by default (nothing injected, no
span), a record's traceparent continued and passed on, a batch span linked to the
other traces of its batch, the trace id in log lines, and a gRPC call's context
carried from the client interceptor to the server's span over a real loopback
gRPC server. Spans are collected by the SDK's in-memory exporter."""

from __future__ import annotations

import grpc
import pytest
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from base.logging import add_trace_id
from base.settings import Settings
from infra import tracing
from infra.grpc_server import GuardInterceptor

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
RECORD_HEADERS = [("content-type", b"x"), ("traceparent", f"00-{TRACE_ID}-{PARENT}-01".encode())]


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    tracing.configure(Settings(), "unit", exporter=exporter)
    try:
        yield exporter
    finally:
        tracing.disable()


def finished(exporter: InMemorySpanExporter) -> list:
    tracing._switch.provider.force_flush()
    return list(exporter.get_finished_spans())


def test_off_by_default_no_span_no_header_no_trace_id(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert not tracing.configure(Settings(), "unit")  # no endpoint configured
    assert not tracing.enabled()
    with tracing.span("anything", RECORD_HEADERS):
        assert tracing.headers() == () and tracing.metadata() == ()
        assert tracing.current_trace_id() == ""


def test_a_records_trace_is_continued_and_passed_on_in_the_headers_of_what_it_causes(spans):
    with tracing.span("message RouteMessage", RECORD_HEADERS):
        sent = dict(tracing.headers())
        assert tracing.current_trace_id() == TRACE_ID
    [span] = finished(spans)
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == PARENT
    assert sent["traceparent"] == f"00-{TRACE_ID}-{span.context.span_id:016x}-01".encode()


def test_a_batch_span_is_in_its_first_traced_records_trace_and_linked_to_the_others(spans):
    other = "11111111111111111111111111111111"
    batch = [[("content-type", b"x")], RECORD_HEADERS, [("traceparent", f"00-{other}-{PARENT}-01".encode())], None]
    with tracing.batch_span("message projection batch", batch, records=4):
        pass
    [span] = finished(spans)
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert [format(link.context.trace_id, "032x") for link in span.links] == [other]


def test_log_lines_inside_a_span_carry_its_trace_id_and_others_none(spans):
    with tracing.span("x", RECORD_HEADERS):
        assert add_trace_id(None, "info", {"event": "e"})["trace_id"] == TRACE_ID
    assert "trace_id" not in add_trace_id(None, "info", {"event": "e"})
    with structlog.testing.capture_logs(processors=[add_trace_id]) as logs, tracing.span("x", RECORD_HEADERS):
        structlog.get_logger().info("inside")
    assert logs[0]["trace_id"] == TRACE_ID


async def test_a_grpc_calls_context_reaches_the_servers_span_through_the_metadata(spans):
    server = grpc.aio.server(interceptors=[GuardInterceptor(verifier=None)])
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=[tracing.ClientTracing()]) as channel:
            with tracing.span("gateway GetHealth", RECORD_HEADERS):
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    finally:
        await server.stop(0)
    by_name = {s.name: s for s in finished(spans)}
    client = by_name["grpc call /grpc.health.v1.Health/Check"]
    served = by_name["grpc /grpc.health.v1.Health/Check"]
    assert {format(s.context.trace_id, "032x") for s in by_name.values()} == {TRACE_ID}
    assert served.parent.span_id == client.context.span_id
    assert client.parent.span_id == by_name["gateway GetHealth"].context.span_id
