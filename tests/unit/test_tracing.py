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


def test_a_service_name_is_the_command_and_its_role_never_an_options_value():
    import click
    from click.testing import CliRunner

    from poseidon.cli_settings import _service_name

    seen = []

    @click.group()
    def root() -> None: ...

    @root.group()
    def connect() -> None: ...

    @connect.command()
    @click.option("--webhook-secret")
    @click.option("--tenant")
    def bot(webhook_secret: str, tenant: str) -> None:
        seen.append(_service_name())

    @root.command()
    @click.argument("hub_name")
    def processor(hub_name: str) -> None:
        seen.append(_service_name())

    runner = CliRunner()
    assert runner.invoke(root, ["connect", "bot", "--webhook-secret", "TOPSECRET", "--tenant", "acme"]).exit_code == 0
    assert runner.invoke(root, ["processor", "message"]).exit_code == 0
    assert seen == ["poseidon-connect-bot", "poseidon-processor-message"]


def test_a_malformed_traceparent_is_no_context_and_a_public_span_only_links_a_valid_one():
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from base.settings import Settings

    assert tracing.context_of([("traceparent", b"00-zzzz-1234-01")]) is None
    assert tracing.context_of({"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"}) is None
    exporter = InMemorySpanExporter()
    tracing.configure(Settings(), "test", exporter=exporter)
    try:
        caller = {"traceparent": "00-" + "ab" * 16 + "-" + "cd" * 8 + "-00", "tracestate": "evil=1"}
        with tracing.public_span("ingress accept webhook", caller):
            ours = tracing.current_trace_id()
            carried = dict(tracing.metadata())
        assert ours and ours != "ab" * 16
        assert "tracestate" not in carried and ours in carried["traceparent"]
        with tracing.public_span("ingress accept webhook", {"traceparent": "garbage"}):
            assert tracing.current_trace_id()
    finally:
        tracing.disable()
    [linked, unlinked] = exporter.get_finished_spans()
    assert linked.parent is None and [format(link.context.trace_id, "032x") for link in linked.links] == ["ab" * 16]
    assert unlinked.parent is None and not unlinked.links
