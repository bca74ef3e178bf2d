"""The HTTP APIs fuzzed from their OpenAPI documents (docs/openapi/) with
schemathesis, against a real ingress on a loopback port with the real Kafka
behind it: no 5xx, every status one the document declares, every refusal a
JSON {"error": reason}, and responses as documented.

Why schemathesis rather than a home-made generator: it installs cleanly beside
the existing pins (`pip check` clean; pytest 9, hypothesis 6), it generates
valid and invalid requests straight from the document (so the document is
tested too) and ships the conformance checks we would otherwise rewrite. We
drive its strategies with our own hypothesis loop instead of its pytest
decorator, because a Messenger body is only worth fuzzing past the signature
check when it carries a valid X-Hub-Signature-256 of its exact bytes: each
generated case is serialised once, signed, then sent (unsigned and wrongly
signed bodies are covered in test_webhook_parsers and tests/integration)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from infra.ingress import Ingress
from poseidon import bootstrap, roles
from sagas.dashboard.app import build_app
from tests.harness import free_port
from tests.integration.test_ingress import settings as ingress_settings  # noqa: F401  (fixture)
from tests.standins.facebook import signature_256

DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi"
INGRESS = schemathesis.openapi.from_path(DOCS / "ingress.yaml")
DASHBOARD = schemathesis.openapi.from_path(DOCS / "dashboard.yaml")
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
AREA = "HTTP fuzz (OpenAPI)"
MODES = {
    "/webhooks/facebook": [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    "/webhooks/botpress/{tenant_id}": [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    "/healthz": [GenerationMode.POSITIVE],
}


def send(case, base_url: str, app_secret: str, bp_secret: str) -> requests.Response:
    """The case as a request, its body serialised once and authenticated like the platform would."""
    kwargs = case.as_transport_kwargs(base_url=base_url)
    headers = dict(kwargs.pop("headers", None) or {})
    if "json" in kwargs:
        kwargs["data"] = json.dumps(kwargs.pop("json")).encode()
        headers["Content-Type"] = "application/json"
    if case.path == "/webhooks/facebook" and case.method == "POST":
        headers["X-Hub-Signature-256"] = signature_256(app_secret, kwargs.get("data") or b"")
    if case.path.startswith("/webhooks/botpress/"):
        headers["x-bp-secret"] = bp_secret
    return requests.request(**kwargs, headers=headers, timeout=15)


def fuzz_ingress(base_url: str, config, attacks) -> None:
    for result in INGRESS.get_all_operations():
        operation = result.ok()
        for mode in MODES[operation.path]:
            row = attacks.row(AREA, f"{operation.method.upper()} {operation.path} ({mode.value})", EXPECTED)
            fuzz_operation(operation, mode, row, base_url, config)


EXPECTED = "no 5xx; documented status; JSON reason"


def fuzz_operation(operation, mode, row, base_url: str, config) -> None:
    @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        row.cases += 1
        response = send(case, base_url, config.facebook_app_secret, config.botpress_webhook_secret)
        assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
        if response.status_code >= 400:
            assert response.json()["error"], response.text
        case.validate_response(response, checks=CHECKS)

    run()


@pytest.mark.integration
async def test_the_ingress_answers_every_generated_request_as_documented_and_never_5xx(ingress_settings, attacks):  # noqa: F811
    config = ingress_settings.with_(ingress_rate_per_s=10_000.0)
    ingress = Ingress(config, bootstrap.codec(config))
    runner = web.AppRunner(roles.ingress_app(ingress), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        assert await ingress.wait_connected(20)
        await asyncio.to_thread(fuzz_ingress, f"http://127.0.0.1:{port}", config, attacks)
    finally:
        await runner.cleanup()


def test_the_dashboard_document_lists_exactly_the_dashboard_routes(attacks):
    attacks.tried(AREA, "dashboard OpenAPI document vs the router", "same (method, path) set")
    from sagas.dashboard.app import Deps

    app = build_app(Deps(settings=None, pool=None, verifier=None, actions=None))
    routed = set()
    for route in app.router.routes():
        info = route.resource.get_info()
        path = info.get("path") or info.get("formatter") or info.get("prefix", "").rstrip("/") + "/{filename}"
        if route.method != "HEAD":
            routed.add((route.method, path))
    documented = {(op.ok().method.upper(), op.ok().path) for op in DASHBOARD.get_all_operations()}
    assert documented == routed
