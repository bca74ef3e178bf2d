"""One webhook to its reply is ONE trace in a real Jaeger (built from the Go module
proxy by `make setup`): the main path's world (tests/e2e/test_webhook_to_reply.py)
runs with every process exporting OTLP to a Jaeger started here on free loopback
ports; the webhook comes with a caller's W3C traceparent (only linked: a public entry
point starts a trace of its own), and Jaeger's HTTP query API must show our trace
holding a span of every hop, each span's parent in the trace. A hop
that drops the context starts a trace of its own, and its spans are missing here."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from infra import tracing
from tests.e2e.test_webhook_to_reply import ACME, APP_SECRET, PAGE, _sent, saga_row, world  # noqa: F401 (the main path's world)
from tests.harness import ROOT, Platform, eventually, free_ports
from tests.standins.facebook import message_event, signed_webhook, webhook_body

pytestmark = pytest.mark.integration

JAEGER = ROOT / ".stack" / "bin" / "jaeger"
EXPECTED_SPANS = {
    "ingress accept": lambda name: name == "ingress accept webhook",
    "router decision": lambda name: name == "message-router handle",
    "Message hub command": lambda name: name == "message RouteMessage",
    "saga start": lambda name: name == "saga StartSaga",
    "saga step result": lambda name: name == "saga RecordStepResult",
    "Botpress spoke call": lambda name: name.startswith("botpress call botpress"),
    "Facebook spoke send": lambda name: name == "facebook call facebook-graph send_message",
    "projection batch": lambda name: name.endswith(" projection batch"),
}


@dataclass
class Jaeger:
    otlp_port: int
    query_port: int
    log: Path

    def trace(self, trace_id: str) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.query_port}/api/traces/{trace_id}", timeout=5) as reply:
                data = json.load(reply)["data"]
        except OSError:
            return None  # 404 until the first span of the trace arrives
        return data[0] if data else None

    def trace_linked_to(self, caller_trace_id: str) -> str | None:
        """The id of our trace whose ingress span links the caller's trace (a public entry
        point starts a trace of its own and only links the caller's)."""
        query = "service=poseidon-e2e&operation=ingress%20accept%20webhook&lookback=1h&limit=100"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.query_port}/api/traces?{query}", timeout=5) as reply:
                found = json.load(reply)["data"] or []
        except OSError:
            return None
        for candidate in found:
            for span in candidate["spans"]:
                if any(r["refType"] == "FOLLOWS_FROM" and r["traceID"] == caller_trace_id for r in span["references"]):
                    return candidate["traceID"]
        return None


async def _async(value):
    return value


@pytest.fixture
def jaeger(tmp_path):
    """Jaeger (in-memory) on free loopback ports, stopped by its PID at the end."""
    if not JAEGER.exists():
        pytest.fail(f"{JAEGER} is missing: `make setup` builds it from the Go module proxy (infra/jaeger/go.mod)")
    otlp, query, query_grpc = free_ports(3)
    log = tmp_path / "jaeger.log"
    env = {
        **os.environ,
        "JAEGER_OTLP_PORT": str(otlp),
        "JAEGER_QUERY_PORT": str(query),
        "JAEGER_QUERY_GRPC_PORT": str(query_grpc),
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(JAEGER), "--config", str(ROOT / "infra" / "jaeger" / "config.yaml")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jaeger exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{query}/api/services", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"jaeger's query API not up in 60s:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
        yield Jaeger(otlp, query, log)
    finally:
        os.kill(proc.pid, 15)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, 9)
            proc.wait(5)


@pytest.fixture
def platform(namespace, tmp_path, jaeger):
    """The namespace's platform with tracing on: the processors (subprocesses) through
    POSEIDON_OTLP_ENDPOINT, the parts running on this test's loop through this process's tracing."""
    settings = namespace.with_(otlp_endpoint=f"http://127.0.0.1:{jaeger.otlp_port}")
    tracing.configure(settings, "poseidon-e2e")
    p = Platform(settings, tmp_path)
    try:
        yield p
    finally:
        p.stop_all()
        tracing.disable()


async def test_one_webhook_to_its_reply_is_one_trace_with_every_hop_in_jaeger(world, jaeger, platform):  # noqa: F811
    fb = world.fb
    psid = "24000000000000077"
    fb.state.user_wrote(psid)
    caller_trace, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    event = message_event(PAGE, psid, "trace me")
    body, headers = signed_webhook(webhook_body(event), APP_SECRET)
    # The caller's traceparent asks for no sampling and brings a tracestate: neither is obeyed nor carried on.
    hostile = {"traceparent": f"00-{caller_trace}-{caller_span}-00", "tracestate": "evil=" + "x" * 200}
    assert await world.post(body, {**headers, **hostile}) == 200
    sent = await eventually(lambda: _sent(fb, psid), timeout=90)
    assert sent[0].message["text"] == "echo: trace me"
    # A public entry point starts a trace of its own and links the caller's: the caller chooses nothing.
    trace_id = await eventually(lambda: _async(jaeger.trace_linked_to(caller_trace)), timeout=60, interval=1)
    assert trace_id != caller_trace

    def problems(found: dict | None) -> list[str]:
        """What the trace still lacks: a hop, or a span's parent (spans arrive as they end, in batches)."""
        if not found:
            return ["no span yet"]
        spans = {s["spanID"]: s for s in found["spans"]}
        names = {s["operationName"] for s in spans.values()}
        missing = [f"no {hop} span" for hop, matches in EXPECTED_SPANS.items() if not any(matches(n) for n in names)]
        for span in spans.values():
            parents = [r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"]
            if span["operationName"] == "ingress accept webhook" and not parents:
                links = [(r["traceID"], r["spanID"]) for r in span["references"] if r["refType"] == "FOLLOWS_FROM"]
                if links != [(caller_trace, caller_span)]:
                    missing.append(f"ingress span links {links}, not the caller's context")
                if any(t["key"] == "w3c.tracestate" for t in span.get("tags", [])) or "evil" in json.dumps(span):
                    missing.append("the caller's tracestate was carried into our trace")
            elif len(parents) != 1:
                missing.append(f"{span['operationName']}: references {span['references']}")
            elif span["operationName"] == "ingress accept webhook":
                missing.append(f"ingress span has a parent {parents}: it must start our trace")
            elif parents[0] not in spans:
                missing.append(f"{span['operationName']}: parent {parents[0]} not in the trace")
        return missing

    async def complete():
        found = jaeger.trace(trace_id)
        return found if not problems(found) else None

    try:
        found = await eventually(complete, timeout=60, interval=1)
    except TimeoutError:
        seen = jaeger.trace(trace_id)
        names = sorted({s["operationName"] for s in seen["spans"]}) if seen else []
        raise AssertionError(f"trace {trace_id}: {problems(seen)}; its spans: {names}") from None

    spans = {s["spanID"]: s for s in found["spans"]}
    assert {s["traceID"] for s in spans.values()} == {trace_id}
    assert "evil=" not in json.dumps(found)
    # Spans come from the processors' own processes too (the context crossed Kafka between processes).
    services = {found["processes"][s["processID"]]["serviceName"] for s in spans.values()}
    assert {"poseidon-e2e", "poseidon-processor-message", "poseidon-processor-saga"} <= services, services

    # The saga records the trace it started in (the dashboard's saga page shows and links it) …
    saga = await eventually(lambda: saga_row(world.settings, ACME, event["message"]["mid"], "completed"), timeout=60)
    assert saga["trace_id"] == trace_id
    # … and the processors' log lines written while deciding the message's commands carry its trace id.
    log = platform.procs["message-processor"].log.read_text().splitlines()
    lines = [json.loads(line) for line in log if line.startswith("{")]
    assert any(line.get("trace_id") == trace_id and line.get("event") == "command accepted" for line in lines)
