"""The webhook ingress against the real Kafka: the app runs in-process on a free
loopback port, each test in its own topics. What is answered 200 is already
readable (read_committed) from `ingress.inbound`; what is refused is not stored;
signed but unusable bodies land whole on `ingress.dlq`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from unittest import mock

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import REGISTRY

from base.settings import Settings
from infra.ingress import Ingress
from infra.topics import ensure_topics, ingress_topics
from poseidon import bootstrap, roles
from tests.standins.botpress import running_botpress
from tests.standins.facebook import (
    delivery_event,
    echo_event,
    message_event,
    postback_event,
    read_event,
    running_facebook,
    signature_256,
    verification_params,
    webhook_bytes,
)

pytestmark = pytest.mark.integration

FB = "/webhooks/facebook"
PAGE_A, PAGE_B = "104010101010101", "205020202020202"


# ---------------------------------------------------------------- helpers


def messaging(page: str, psid: str, n: int, *, ts: int = 1763812800000) -> list[dict]:
    """n items from `psid` to `page` (built as the Facebook stand-in builds them):
    a message, a postback, a delivery, a read, an echo, and round again."""
    shapes = [
        lambda i: message_event(page, psid, f"hi {i}", mid=f"m_{page}_{psid}_{i}", timestamp_ms=ts + i),
        lambda i: postback_event(page, psid, "MENU", title="Menu", timestamp_ms=ts + i),
        lambda i: delivery_event(page, psid, [f"m_out_{i}"], ts, timestamp_ms=ts + i),
        lambda i: read_event(page, psid, ts, timestamp_ms=ts + i),
        lambda i: echo_event(page, psid, "ok", mid=f"m_echo_{i}", timestamp_ms=ts + i),
    ]
    return [shapes[i % len(shapes)](i) for i in range(n)]


def webhook(*entries: tuple[str, list[dict]]) -> bytes:
    """A batched body (several entries, several items each), serialised as Facebook does."""
    body = {"object": "page", "entry": [{"id": page, "time": 1763812800999, "messaging": items} for page, items in entries]}
    return webhook_bytes(body)


def signed(body: bytes, secret: str, **headers: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Hub-Signature-256": signature_256(secret, body), **headers}


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def ingress_client(
    settings: Settings, *, connect: bool = True, produce_timeout_s: float = 3.0
) -> AsyncIterator[TestClient]:
    ingress = Ingress(settings, bootstrap.codec(settings), produce_timeout_s=produce_timeout_s)
    async with TestClient(TestServer(roles.ingress_app(ingress))) as client:
        if connect:
            assert await ingress.wait_connected(20), "ingress producer did not connect"
        client.ingress = ingress
        yield client


async def read_all(settings: Settings, logical_topic: str, *, at_least: int = 0, timeout: float = 10.0) -> list:
    """Every committed record of a topic, waiting up to `timeout` for `at_least` of them."""
    topic = settings.topic(logical_topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, isolation_level="read_committed", group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list = []
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(records)
            ends = await consumer.end_offsets(partitions)
            positions = {tp: await consumer.position(tp) for tp in partitions}
            if len(found) >= at_least and all(positions[tp] >= ends[tp] for tp in partitions):
                break
        return found
    finally:
        await consumer.stop()


async def committed_count(settings: Settings, logical_topic: str) -> int:
    """How many records a read_committed reader can see right now (no waiting)."""
    topic = settings.topic(logical_topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, isolation_level="read_committed", group_id=None)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        begins = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        return sum(ends[tp] - begins[tp] for tp in partitions)
    finally:
        await consumer.stop()


def decode(settings: Settings, records: list) -> list[dict]:
    codec = bootstrap.codec(settings)
    return [codec.decode(r.value).record for r in records]


@pytest.fixture
async def settings(namespace: Settings) -> Settings:
    await ensure_topics(namespace, ingress_topics())
    return namespace.with_(
        facebook_app_secret="it-app-secret", facebook_verify_token="it-verify", botpress_webhook_secret="it-bp"
    )


# ---------------------------------------------------------------- verification


async def test_the_handshake_answers_the_challenge_only_to_our_verify_token(settings):
    async with ingress_client(settings) as client:
        ok = await client.get(FB, params=verification_params("it-verify", "8842"))
        assert ok.status == 200
        assert await ok.text() == "8842"
        wrong = await client.get(FB, params=verification_params("guess", "8842"))
        assert wrong.status == 403
        assert "verify_token" in (await wrong.json())["error"]
        assert (await client.get(FB, params={"hub.mode": "subscribe", "hub.verify_token": "it-verify"})).status == 400


# ---------------------------------------------------------------- accepting


async def test_a_signed_batch_is_split_and_durable_before_the_200(settings):
    body = webhook((PAGE_A, messaging(PAGE_A, "psid-1", 2)), (PAGE_B, messaging(PAGE_B, "psid-2", 2)))
    before = metric("poseidon_ingress_items_total", platform="facebook", kind="message")
    async with ingress_client(settings) as client:
        answer = await client.post(FB, data=body, headers=signed(body, "it-app-secret", **{"X-Request-Id": "req-batch-1"}))
        assert answer.status == 200, await answer.text()
        # Durable before the answer: a read_committed reader sees all four at once.
        assert await committed_count(settings, "ingress.inbound") == 4
        assert await answer.json() == {"accepted": 4}
        assert answer.headers["X-Request-Id"] == "req-batch-1"
    stored = await read_all(settings, "ingress.inbound", at_least=4)
    records = decode(settings, stored)
    by_mid = sorted((r["account_id"], r["kind"], r["message_id"]) for r in records)
    assert by_mid == sorted(
        [
            (PAGE_A, "message", f"m_{PAGE_A}_psid-1_0"),
            (PAGE_A, "postback", "postback:psid-1:1763812800001"),
            (PAGE_B, "message", f"m_{PAGE_B}_psid-2_0"),
            (PAGE_B, "postback", "postback:psid-2:1763812800001"),
        ]
    )
    for kafka_record, record in zip(stored, records, strict=True):
        env = record["envelope"]
        assert kafka_record.key.decode() == env["aggregate_id"] == f"facebook/{record['account_id']}/{record['contact_id']}"
        assert env["causation_id"] == "req-batch-1"
        assert env["event_type"] == "poseidon.ingress.InboundReceived"
        headers = dict(kafka_record.headers)
        assert headers["event_type"] == b"poseidon.ingress.InboundReceived"
        assert headers["correlation_id"].decode() == env["correlation_id"]
    assert len({r["envelope"]["correlation_id"] for r in records}) == 4
    assert metric("poseidon_ingress_items_total", platform="facebook", kind="message") == before + 2
    assert metric("poseidon_webhook_requests_total", route=FB, status="200") >= 1


async def test_every_kind_of_item_is_stored_with_its_kind(settings):
    body = webhook((PAGE_A, messaging(PAGE_A, "psid-k", 5)))
    async with ingress_client(settings) as client:
        answer = await client.post(FB, data=body, headers=signed(body, "it-app-secret"))
        assert answer.status == 200 and await answer.json() == {"accepted": 5}
    records = decode(settings, await read_all(settings, "ingress.inbound", at_least=5))
    assert sorted(r["kind"] for r in records) == ["delivery", "echo", "message", "postback", "read"]
    # All of one person's items share a key, hence a partition and their order.
    assert {r["envelope"]["aggregate_id"] for r in records} == {f"facebook/{PAGE_A}/psid-k"}


async def test_each_conversation_lands_on_the_partition_the_java_client_and_aiokafka_choose(settings):
    # Ingress remembers each key's hash (KeyPartitioner); whoever else writes a
    # conversation's key (a replay, a tool, the Java client) must pick the same partition.
    body = webhook((PAGE_A, [message_event(PAGE_A, f"psid-p{i}", "hi", mid=f"m_p{i}") for i in range(24)]))
    async with ingress_client(settings) as client:
        answer = await client.post(FB, data=body, headers=signed(body, "it-app-secret"))
        assert answer.status == 200 and await answer.json() == {"accepted": 24}
    stored = await read_all(settings, "ingress.inbound", at_least=24)
    assert settings.topic_partitions > 1
    every = list(range(settings.topic_partitions))
    assert [r.partition for r in stored] == [DefaultPartitioner()(r.key, every, every) for r in stored]
    assert len({r.partition for r in stored}) > 1


async def test_ten_concurrent_identical_deliveries_are_all_stored_for_downstream_dedupe(settings):
    body = webhook((PAGE_A, messaging(PAGE_A, "psid-dup", 1)))
    async with ingress_client(settings) as client:
        answers = await asyncio.gather(*(client.post(FB, data=body, headers=signed(body, "it-app-secret")) for _ in range(10)))
        assert [a.status for a in answers] == [200] * 10
    records = decode(settings, await read_all(settings, "ingress.inbound", at_least=10))
    assert len(records) == 10
    # One platform message id and one key: the Message hub records it once (DuplicateMessage for the rest).
    assert {r["message_id"] for r in records} == {f"m_{PAGE_A}_psid-dup_0"}
    assert {r["envelope"]["aggregate_id"] for r in records} == {f"facebook/{PAGE_A}/psid-dup"}
    assert len({r["envelope"]["event_id"] for r in records}) == 10


async def test_the_facebook_stand_ins_deliveries_are_accepted_byte_for_byte(settings):
    async with ingress_client(settings) as client, running_facebook(app_secret="it-app-secret") as facebook:
        facebook.state.webhook_url = str(client.make_url(FB))
        # Facebook escapes non-ASCII and "/" in what it signs: the signature covers those bytes.
        status = await facebook.push(message_event(PAGE_A, "6783295398356782", "héllo ✓ https://example.com/a", mid="m_fb_1"))
        assert status == 200
    [record] = decode(settings, await read_all(settings, "ingress.inbound", at_least=1))
    assert (record["message_id"], record["text"]) == ("m_fb_1", "héllo ✓ https://example.com/a")


# ---------------------------------------------------------------- refusing


async def test_a_missing_or_bad_signature_is_refused_counted_and_never_stored(settings):
    body = webhook((PAGE_A, messaging(PAGE_A, "psid-x", 2)))
    missing_before = metric("poseidon_webhook_signature_failures_total", route=FB, reason="missing")
    invalid_before = metric("poseidon_webhook_signature_failures_total", route=FB, reason="invalid")
    async with ingress_client(settings) as client:
        missing = await client.post(FB, data=body, headers={"Content-Type": "application/json"})
        assert missing.status == 401
        assert "X-Hub-Signature-256" in (await missing.json())["error"]
        forged = await client.post(FB, data=body, headers=signed(body, "not-the-app-secret"))
        assert forged.status == 403
        tampered = await client.post(FB, data=body.replace(b"hi 0", b"hi 9"), headers=signed(body, "it-app-secret"))
        assert tampered.status == 403
        garbage = await client.post(
            FB, data=b"{not json", headers={"Content-Type": "application/json", "X-Hub-Signature-256": "x"}
        )
        assert garbage.status == 403
    assert metric("poseidon_webhook_signature_failures_total", route=FB, reason="missing") == missing_before + 1
    assert metric("poseidon_webhook_signature_failures_total", route=FB, reason="invalid") == invalid_before + 3
    assert await committed_count(settings, "ingress.inbound") == 0
    assert await committed_count(settings, "ingress.dlq") == 0


async def test_an_oversized_body_is_refused_with_413(settings):
    small = settings.with_(ingress_max_body_bytes=2048)
    body = webhook((PAGE_A, messaging(PAGE_A, "psid-big", 40)))
    assert len(body) > 2048

    async def chunks():
        for i in range(0, len(body), 512):
            yield body[i : i + 512]

    async with ingress_client(small) as client:
        declared = await client.post(FB, data=body, headers=signed(body, "it-app-secret"))
        assert declared.status == 413
        assert "2048" in (await declared.json())["error"]
        streamed = await client.post(FB, data=chunks(), headers=signed(body, "it-app-secret"))
        assert streamed.status == 413
    assert await committed_count(settings, "ingress.inbound") == 0


async def test_bodies_up_to_the_size_limit_are_stored_whole(settings):
    limit = settings.ingress_max_body_bytes
    text = "x" * (limit - 1024)
    body = webhook((PAGE_A, [message_event(PAGE_A, "psid-large", text, mid="m_large", timestamp_ms=1)]))
    unusable = b"[" + b" " * (limit - 2) + b"x"
    assert len(body) <= limit and len(unusable) == limit
    async with ingress_client(settings) as client:
        assert (await client.post(FB, data=body, headers=signed(body, "it-app-secret"))).status == 200
        assert (await client.post(FB, data=unusable, headers=signed(unusable, "it-app-secret"))).status == 400
    [record] = decode(settings, await read_all(settings, "ingress.inbound", at_least=1))
    assert record["text"] == text
    [dead] = decode(settings, await read_all(settings, "ingress.dlq", at_least=1))
    assert dead["payload"] == unusable


async def test_signed_malformed_json_is_refused_and_dead_lettered_with_its_reason(settings):
    body = b'{"object": "page", "entry": [{"id": "1", '
    async with ingress_client(settings) as client:
        answer = await client.post(FB, data=body, headers=signed(body, "it-app-secret", **{"X-Request-Id": "req-bad-json"}))
        assert answer.status == 400
        assert (await answer.json())["error"].startswith("malformed JSON")
    [letter] = await read_all(settings, "ingress.dlq", at_least=1)
    dead = decode(settings, [letter])[0]
    assert dead["source_topic"] == "http:POST /webhooks/facebook"
    assert (dead["source_partition"], dead["source_offset"]) == (-1, -1)
    assert dead["payload"] == body
    assert dead["reason"].startswith("malformed JSON") and dead["error_type"] == "MalformedJSON"
    assert dead["processor"] == "ingress"
    assert dict(letter.headers)["request_id"] == b"req-bad-json"
    assert await committed_count(settings, "ingress.inbound") == 0


async def test_a_signed_body_that_is_no_messenger_webhook_is_dead_lettered(settings):
    body = json.dumps({"object": "page", "entry": [{"id": PAGE_A, "messaging": [{"recipient": {"id": PAGE_A}, "timestamp": 1}]}]})
    body = body.encode()
    async with ingress_client(settings) as client:
        answer = await client.post(FB, data=body, headers=signed(body, "it-app-secret"))
        assert answer.status == 400
        reason = (await answer.json())["error"]
        assert "sender" in reason
    dead = decode(settings, await read_all(settings, "ingress.dlq", at_least=1))
    assert [(d["reason"], d["error_type"], d["payload"]) for d in dead] == [(reason, "InvalidWebhook", body)]


async def test_a_wrong_content_type_is_refused_with_415(settings):
    body = webhook((PAGE_A, messaging(PAGE_A, "psid-ct", 1)))
    async with ingress_client(settings) as client:
        answer = await client.post(FB, data=body, headers=signed(body, "it-app-secret", **{"Content-Type": "text/plain"}))
        assert answer.status == 415
        assert "application/json" in (await answer.json())["error"]
    assert await committed_count(settings, "ingress.inbound") == 0
    # Signed by Facebook, so kept rather than dropped.
    assert [d["error_type"] for d in decode(settings, await read_all(settings, "ingress.dlq", at_least=1))] == [
        "UnsupportedMediaType"
    ]


async def test_a_page_over_its_rate_gets_429_with_retry_after_and_other_pages_do_not(settings):
    slow = settings.with_(ingress_rate_per_s=1.0)  # bursts of 2 items
    async with ingress_client(slow) as client:

        async def post(page: str, psid: str, i: int) -> aiohttp.ClientResponse:
            body = webhook((page, messaging(page, psid, 1, ts=1763812800000 + 1000 * i)))
            return await client.post(FB, data=body, headers=signed(body, "it-app-secret"))

        assert [(await post(PAGE_A, "p", i)).status for i in range(2)] == [200, 200]
        limited = await post(PAGE_A, "p", 2)
        assert limited.status == 429
        assert int(limited.headers["Retry-After"]) >= 1
        assert (await post(PAGE_B, "q", 0)).status == 200
        await asyncio.sleep(1.1)
        assert (await post(PAGE_A, "p", 3)).status == 200
    assert await committed_count(settings, "ingress.inbound") == 4


# ---------------------------------------------------------------- Kafka away


async def test_without_kafka_every_delivery_is_answered_503_never_200(settings):
    away = settings.with_(kafka_bootstrap="127.0.0.1:1")
    body = webhook((PAGE_A, messaging(PAGE_A, "psid-away", 2)))
    async with ingress_client(away, connect=False) as client:
        answers = [await client.post(FB, data=body, headers=signed(body, "it-app-secret")) for _ in range(3)]
        assert [a.status for a in answers] == [503, 503, 503]
        assert "Retry-After" in answers[0].headers
        bad_json = b"{oops"
        assert (await client.post(FB, data=bad_json, headers=signed(bad_json, "it-app-secret"))).status == 503
        health = await client.get("/healthz")
        assert health.status == 503
        assert (await health.json())["checks"] == {"kafka": False}


async def test_kafka_not_acking_in_time_is_answered_503(settings):
    body = webhook((PAGE_A, messaging(PAGE_A, "psid-slow", 1)))
    async with ingress_client(settings, produce_timeout_s=0.5) as client:
        producer = client.ingress._producer
        never = asyncio.get_running_loop().create_future()  # a broker that takes the record and never acks

        async def unacked_send(*args, **kwargs):
            return never

        with mock.patch.object(producer, "send", side_effect=unacked_send):
            started = asyncio.get_running_loop().time()
            answer = await client.post(FB, data=body, headers=signed(body, "it-app-secret"))
            assert answer.status == 503
            assert asyncio.get_running_loop().time() - started < 3
        # Kafka back: the platform's retry is stored.
        retry = await client.post(FB, data=body, headers=signed(body, "it-app-secret"))
        assert retry.status == 200
    assert await committed_count(settings, "ingress.inbound") == 1


# ---------------------------------------------------------------- Botpress callbacks


async def test_botpress_callbacks_need_our_secret_and_store_bot_replies(settings):
    path = "/webhooks/botpress/tenant-42"
    push = {
        "type": "message_created",
        "data": {
            "id": "msg_it_1",
            "createdAt": "2026-11-22T12:00:00.000Z",
            "conversationId": "conv_it_1",
            "userId": "user_bot",
            "payload": {"type": "text", "text": "hello from the bot"},
            "isBot": True,
        },
    }
    body = json.dumps(push).encode()
    user_echo = json.dumps({**push, "data": {**push["data"], "isBot": False}}).encode()
    async with ingress_client(settings) as client:
        assert (await client.post(path, data=body, headers={"Content-Type": "application/json"})).status == 401
        assert (
            await client.post(path, data=body, headers={"Content-Type": "application/json", "x-bp-secret": "nope"})
        ).status == 403
        ok = await client.post(path, data=body, headers={"Content-Type": "application/json", "x-bp-secret": "it-bp"})
        assert ok.status == 200 and await ok.json() == {"accepted": 1}
        skipped = await client.post(path, data=user_echo, headers={"Content-Type": "application/json", "x-bp-secret": "it-bp"})
        assert skipped.status == 200 and await skipped.json() == {"accepted": 0}
        bad = await client.post(path, data=b"[1,", headers={"Content-Type": "application/json", "x-bp-secret": "it-bp"})
        assert bad.status == 400
    [record] = decode(settings, await read_all(settings, "ingress.inbound", at_least=1))
    assert (record["platform"], record["kind"], record["message_id"], record["text"]) == (
        "botpress",
        "bot_reply",
        "msg_it_1",
        "hello from the bot",
    )
    assert record["envelope"]["tenant_id"] == "tenant-42" and record["tenant_hint"] == "tenant-42"
    assert record["envelope"]["aggregate_id"] == "botpress/tenant-42/conv_it_1"
    [dead] = decode(settings, await read_all(settings, "ingress.dlq", at_least=1))
    assert dead["source_topic"] == "http:POST /webhooks/botpress/tenant-42"


async def test_the_botpress_stand_ins_pushes_land_as_bot_replies(settings):
    async with ingress_client(settings) as client, running_botpress() as botpress, aiohttp.ClientSession() as http:
        botpress.state.push_url = str(client.make_url("/webhooks/botpress/tenant-bp"))
        botpress.state.push_secret = "it-bp"
        botpress.state.script["hello"] = ["Hi there!"]
        api = botpress.api_url()
        async with http.post(f"{api}/users", json={}) as r:
            key = (await r.json())["key"]
        async with http.post(f"{api}/conversations", json={}, headers={"x-user-key": key}) as r:
            conversation = (await r.json())["conversation"]["id"]
        async with http.post(
            f"{api}/messages",
            json={"conversationId": conversation, "payload": {"type": "text", "text": "hello"}},
            headers={"x-user-key": key},
        ) as r:
            assert r.status == 201
        await botpress.state.settled()
        for _ in range(50):
            if len(botpress.state.pushes) >= 2:
                break
            await asyncio.sleep(0.1)
        assert [status for status, _ in botpress.state.pushes] == [200, 200]  # our user's message, then the bot's reply
    [record] = decode(settings, await read_all(settings, "ingress.inbound", at_least=1))
    assert (record["kind"], record["text"], record["contact_id"]) == ("bot_reply", "Hi there!", conversation)


# ---------------------------------------------------------------- ops


async def test_health_is_served_on_the_ingress_port_and_metrics_are_not(settings):
    async with ingress_client(settings) as client:
        health = await client.get("/healthz")
        assert health.status == 200
        assert await health.json() == {"process": "ingress", "status": "ok", "checks": {"kafka": True}}
        # Metrics describe the platform's inside: only the ops port serves them (the process test reads them there).
        exposed = await client.get("/metrics")
        assert exposed.status == 404 and "poseidon_" not in await exposed.text()
        unknown = await client.get("/webhooks/nowhere")
        assert unknown.status == 404 and "error" in await unknown.json()
    assert metric("poseidon_webhook_requests_total", route="unmatched", status="404") >= 1


# ---------------------------------------------------------------- the process


async def test_the_ingress_process_serves_until_sigterm_then_stops_cleanly(settings, tmp_path):
    import signal
    import subprocess
    import sys

    from tests.harness import ROOT, env_for, free_port

    port, ops_port = free_port(), free_port()
    env = env_for(
        settings,
        POSEIDON_INGRESS_PORT=str(port),
        POSEIDON_OPS_PORT=str(ops_port),
        POSEIDON_FACEBOOK_APP_SECRET="it-app-secret",
        POSEIDON_FACEBOOK_VERIFY_TOKEN="it-verify",
    )
    log = tmp_path / "ingress.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "poseidon.cli", "ingress"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            for _ in range(150):
                try:
                    async with http.get(f"{base}/healthz") as health:
                        if health.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert proc.poll() is None, log.read_text()
                await asyncio.sleep(0.2)
            else:
                pytest.fail(f"ingress not healthy:\n{log.read_text()}")
            body = webhook((PAGE_A, messaging(PAGE_A, "psid-proc", 2)))
            async with http.post(f"{base}{FB}", data=body, headers=signed(body, "it-app-secret")) as answer:
                assert answer.status == 200
            async with http.get(f"http://127.0.0.1:{ops_port}/metrics") as metrics:
                text = await metrics.text()
            assert 'poseidon_webhook_requests_total{route="/webhooks/facebook",status="200"} 1.0' in text
            assert "poseidon_ingress_produce_seconds" in text
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 15) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert "ingress stopped" in log.read_text()
    assert await committed_count(settings, "ingress.inbound") == 2
