"""Botpress callbacks: a pushed bot message mapped to an InboundReceived record
(bot_reply) the real codec accepts."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from base.settings import Settings
from poseidon import bootstrap
from spokes.botpress.translate import parse_push
from spokes.botpress.webhook import attachments_of, inbound_record

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PUSH = {
    "type": "message_created",
    "data": {
        "id": "msg_01JDQ8M2V7X9",
        "createdAt": "2026-11-22T11:59:59.500Z",
        "conversationId": "conv_01JDQ8KZ3A",
        "userId": "user_bot_poseidon-dev",
        "payload": {"type": "text", "text": "Hi! How can I help?"},
        "isBot": True,
    },
}


def test_a_bot_message_becomes_a_bot_reply_for_the_tenant_of_the_callback():
    record = inbound_record(parse_push(PUSH), PUSH["data"], tenant_id="tenant-7", request_id="req-9", now=NOW)
    assert record["platform"] == "botpress" and record["kind"] == "bot_reply"
    assert record["envelope"]["aggregate_id"] == "botpress/tenant-7/conv_01JDQ8KZ3A"
    assert record["envelope"]["tenant_id"] == "tenant-7" and record["tenant_hint"] == "tenant-7"
    assert record["envelope"]["causation_id"] == "req-9"
    assert record["envelope"]["actor"] == "ingress:botpress"
    assert record["message_id"] == "msg_01JDQ8M2V7X9"
    assert record["text"] == "Hi! How can I help?"
    assert record["sent_at"] == datetime(2026, 11, 22, 11, 59, 59, 500000, tzinfo=UTC)
    assert json.loads(record["raw"]) == PUSH["data"]


def test_the_record_encodes_with_the_schema():
    codec = bootstrap.codec(Settings())
    record = inbound_record(parse_push(PUSH), PUSH["data"], tenant_id="t", request_id="r", now=NOW)
    assert codec.decode(codec.encode("poseidon.ingress.InboundReceived", record)).record["kind"] == "bot_reply"


def test_media_payloads_become_attachments():
    assert attachments_of({"type": "image", "imageUrl": "https://files.bp/x.png"}) == [
        {"type": "image", "url": "https://files.bp/x.png"}
    ]
    assert attachments_of({"type": "file", "fileUrl": "https://files.bp/a.pdf", "title": "A"}) == [
        {"type": "file", "url": "https://files.bp/a.pdf"}
    ]
    assert attachments_of({"type": "text", "text": "x"}) == []
    assert attachments_of({"type": "image"}) == []


def test_our_own_users_messages_are_not_bot_replies():
    assert parse_push({**PUSH, "data": {**PUSH["data"], "isBot": False}}) is None
