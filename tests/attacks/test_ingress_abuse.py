"""Abuse of the webhook ingress over real sockets, with the real Kafka behind
it: oversized bodies (declared and chunked), deeply nested JSON, slow-loris
headers and bodies, header floods — while a well-behaved client on its own
connection keeps getting its answers. Bounded: a few dozen connections, a
body timeout of two seconds, no latency figures asserted (only "answered
within a generous bound")."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
import pytest

from base.settings import Settings, SettingsError
from infra.ingress import Ingress
from poseidon import bootstrap, roles
from tests.integration.test_ingress import ingress_client, read_all, settings  # noqa: F401  (fixture)
from tests.standins.facebook import message_event, signature_256, webhook_body, webhook_bytes

pytestmark = pytest.mark.integration

AREA = "ingress abuse"
FB = "/webhooks/facebook"
BP = "/webhooks/botpress/acme"
ANSWERED_WITHIN_S = 10.0
LIMIT = 64 * 1024
BODY_TIMEOUT_S = 2.0


@pytest.fixture
def abuse_settings(settings):  # noqa: F811  (the ingress tests' fixture: topics and secrets)
    return settings.with_(ingress_max_body_bytes=LIMIT, ingress_body_timeout_s=BODY_TIMEOUT_S)


def signed(ingress_settings, body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Hub-Signature-256": signature_256(ingress_settings.facebook_app_secret, body)}


async def well_behaved(client, ingress_settings, n: int = 3) -> list[int]:
    """A proper signed webhook, answered (any status) within the bound."""
    statuses = []
    for i in range(n):
        body = webhook_bytes(webhook_body(message_event("104010101010101", "2400001", f"hi {i}", timestamp_ms=1763812800000)))
        async with asyncio.timeout(ANSWERED_WITHIN_S):
            async with client.post(FB, data=body, headers=signed(ingress_settings, body)) as response:
                statuses.append(response.status)
    return statuses


async def error_of(response) -> str:
    body = await response.json()
    assert set(body) == {"error"} and body["error"], body
    return body["error"]


async def test_oversized_bodies_are_refused_with_413_declared_or_chunked(abuse_settings, attacks):
    async with ingress_client(abuse_settings) as client:
        for path in (FB, BP):
            attacks.tried(AREA, "Content-Length past the limit", "413 with the limit in the reason, nothing read")
            big = b"x" * (LIMIT + 1)
            async with client.post(path, data=big, headers={"Content-Type": "application/json"}) as response:
                assert response.status == 413 and f"larger than {LIMIT}" in await error_of(response)

            attacks.tried(AREA, "chunked body (no Content-Length) past the limit", "413 with the reason")

            async def chunks():
                for _ in range(LIMIT // 4096 + 2):
                    yield b"y" * 4096

            async with client.post(path, data=chunks(), headers={"Content-Type": "application/json"}) as response:
                assert response.status == 413 and f"larger than {LIMIT}" in await error_of(response)
        assert await well_behaved(client, abuse_settings) == [200, 200, 200]


async def test_deeply_nested_json_is_refused_with_400_and_dead_lettered(abuse_settings, attacks):
    bodies = {
        "nesting past the parser's recursion limit": b"[" * 30_000 + b"]" * 30_000,
        "nesting inside a webhook": json.dumps({"object": "page", "entry": [{"id": "1", "messaging": [_nested(400)]}]}).encode(),
    }
    async with ingress_client(abuse_settings) as client:
        for name, body in bodies.items():
            attacks.tried(AREA, f"signed {name}", "400 with the reason, whole body on ingress.dlq")
            async with client.post(FB, data=body, headers=signed(abuse_settings, body)) as response:
                assert response.status == 400
                reason = await error_of(response)
            letters = [
                bootstrap.codec(abuse_settings).decode(r.value).record for r in await read_all(abuse_settings, "ingress.dlq")
            ]
            assert any(letter["payload"] == body and letter["reason"] == reason for letter in letters), name
        assert await well_behaved(client, abuse_settings) == [200, 200, 200]


def _nested(depth: int) -> dict:
    value: dict = {"sender": {"id": "1"}}
    for _ in range(depth):
        value = {"message": value}
    return value


async def _raw(server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(server.host, server.port)


async def test_slow_loris_and_header_floods_do_not_keep_a_well_behaved_client_waiting(abuse_settings, attacks):
    async with ingress_client(abuse_settings) as client:
        server = client.server
        opened: list[asyncio.StreamWriter] = []
        try:
            # 20 connections that trickle their headers and never finish them.
            for _ in range(20):
                reader, writer = await _raw(server)
                writer.write(f"POST {FB} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode())
                opened.append(writer)
            attacks.tried(AREA, "connections trickling headers, never finishing", "others still answered", 20)
            # 20 connections that announce a body and send it one byte at a time.
            slow_bodies = []
            for _ in range(20):
                reader, writer = await _raw(server)
                head = f"POST {FB} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
                writer.write(head.encode() + b"X-Hub-Signature-256: sha256=00\r\n\r\n{")
                opened.append(writer)
                slow_bodies.append((reader, writer))
            assert await well_behaved(client, abuse_settings) == [200, 200, 200]

            attacks.tried(AREA, "slow-loris bodies (1 byte, then silence)", "408 with the reason within the body timeout", 20)
            for reader, _ in slow_bodies:
                async with asyncio.timeout(BODY_TIMEOUT_S + ANSWERED_WITHIN_S):
                    status_line = await reader.readline()
                    answer = await reader.read(4096)
                assert status_line.startswith(b"HTTP/1.1 408"), status_line
                assert f"body not received within {BODY_TIMEOUT_S:g}s".encode() in answer

            floods = {
                "200 headers": "".join(f"X-H{i}: v\r\n" for i in range(200)),
                "one 100 KB header": "X-Big: " + "v" * 100_000 + "\r\n",
                "100 KB request line": "",
            }
            for name, headers in floods.items():
                attacks.tried(AREA, f"header flood: {name}", "4xx with a reason, connection closed")
                reader, writer = await _raw(server)
                opened.append(writer)
                target = FB + ("?" + "q" * 100_000 if name == "100 KB request line" else "")
                writer.write(f"POST {target} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: 0\r\n\r\n".encode())
                async with asyncio.timeout(ANSWERED_WITHIN_S):
                    status_line = await reader.readline()
                    rest = await reader.read(4096)
                status = int(status_line.split()[1])
                assert 400 <= status < 500 and rest.strip(), (name, status_line)
            assert await well_behaved(client, abuse_settings) == [200, 200, 200]
        finally:
            for writer in opened:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()


async def test_a_client_that_stops_mid_body_gets_408_and_nothing_is_stored(abuse_settings, attacks):
    attacks.tried(AREA, "signed body cut off mid-way (connection kept open)", "408 with the reason, nothing stored")
    body = webhook_bytes(webhook_body(message_event("104010101010101", "2400001", "hi", timestamp_ms=1763812800000)))
    async with ingress_client(abuse_settings) as client:
        reader, writer = await _raw(client.server)
        try:
            head = "".join(f"{k}: {v}\r\n" for k, v in signed(abuse_settings, body).items())
            writer.write(f"POST {FB} HTTP/1.1\r\nHost: x\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body[:10])
            async with asyncio.timeout(BODY_TIMEOUT_S + ANSWERED_WITHIN_S):
                status_line = await reader.readline()
            assert status_line.startswith(b"HTTP/1.1 408")
        finally:
            writer.close()
        assert await read_all(abuse_settings, "ingress.inbound") == []
        async with aiohttp.ClientSession() as session:  # a fresh connection is served as ever
            url = f"http://{client.server.host}:{client.server.port}/healthz"
            async with session.get(url) as response:
                assert response.status == 200


def test_default_and_empty_webhook_secrets_are_refused_before_anything_listens(settings, attacks):  # noqa: F811
    built_in = {name: Settings.model_fields[name].default for name in bootstrap.webhook_secrets()}
    production = settings.with_(dev_mode=False, **built_in)
    with pytest.raises(SettingsError) as refused:
        roles.ingress_app(Ingress(production, bootstrap.codec(production)))
    for name in built_in:
        assert f"POSEIDON_{name.upper()}" in str(refused.value)
    attacks.tried(
        AREA,
        "ingress started with the built-in development webhook secrets",
        "refused at start, naming each variable",
        len(built_in),
    )
    # Development mode accepts the built-in values, never an empty one; secrets of one's own start anywhere.
    for name in built_in:
        empty = settings.with_(dev_mode=True, **{name: ""})
        with pytest.raises(SettingsError, match=f"POSEIDON_{name.upper()}"):
            roles.ingress_app(Ingress(empty, bootstrap.codec(empty)))
        attacks.tried(AREA, "an empty webhook secret (HMAC keyed by nothing), even in development mode", "refused at start")
    own = production.with_(**{name: f"{name}-of-our-own-{i}" * 2 for i, name in enumerate(built_in)})
    assert roles.ingress_app(Ingress(own, bootstrap.codec(own))) is not None
