"""The Messenger webhook's pure parts: signatures, the verification handshake, and
items of a realistic (batched) webhook body mapped to InboundReceived records that
the real codec accepts."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from base.settings import Settings
from poseidon import bootstrap
from spokes.facebook.translate import InvalidWebhook
from spokes.facebook.webhook import expected_signature, records_of, verify_signature, verify_subscription
from tests.standins import facebook as fb

SECRET = "app-secret"
PAGE, OTHER_PAGE = "1067280970047460", "2098765432101234"
PSID, OTHER_PSID = "6783295398356782", "7011220033445566"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

# Shapes as the Messenger Platform sends them (webhook reference, messages / postbacks /
# message_deliveries / message_reads / message_echoes), two pages in one batch.
BODY = {
    "object": "page",
    "entry": [
        {
            "id": PAGE,
            "time": 1763812800100,
            "messaging": [
                {
                    "sender": {"id": PSID},
                    "recipient": {"id": PAGE},
                    "timestamp": 1763812800000,
                    "message": {
                        "mid": "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplwlqLP_5cgXIbu7I3rBN0P",
                        "text": "hello",
                    },
                },
                {
                    "sender": {"id": PSID},
                    "recipient": {"id": PAGE},
                    "timestamp": 1763812800050,
                    "postback": {"title": "Get Started", "payload": "GET_STARTED", "mid": "m_postback_1"},
                },
            ],
        },
        {
            "id": OTHER_PAGE,
            "time": 1763812800200,
            "messaging": [
                {
                    "sender": {"id": OTHER_PSID},
                    "recipient": {"id": OTHER_PAGE},
                    "timestamp": 1763812800150,
                    "delivery": {"mids": ["m_out_1", "m_out_2"], "watermark": 1763812800140},
                },
                {
                    "sender": {"id": OTHER_PAGE},
                    "recipient": {"id": OTHER_PSID},
                    "timestamp": 1763812800160,
                    "message": {
                        "is_echo": True,
                        "app_id": 1517776481860111,
                        "mid": "m_echo_1",
                        "attachments": [{"type": "image", "payload": {"url": "https://scontent.xx.fbcdn.net/v/t1/img.png"}}],
                    },
                },
                {
                    "sender": {"id": OTHER_PSID},
                    "recipient": {"id": OTHER_PAGE},
                    "timestamp": 1763812800170,
                    "read": {"watermark": 1763812800160},
                },
            ],
        },
    ],
}


def ids():
    counter = iter(range(1000))
    return lambda: f"id-{next(counter)}"


def test_the_signature_is_the_hex_hmac_sha256_of_the_raw_body():
    body = b'{"object":"page","entry":[]}'
    assert expected_signature(SECRET, body) == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def test_a_signature_matches_only_its_own_body_and_secret():
    body = json.dumps(BODY).encode()
    header = expected_signature(SECRET, body)
    assert verify_signature(header, SECRET, body)
    assert not verify_signature(header, SECRET, body + b" ")
    assert not verify_signature(header, "other-secret", body)
    assert not verify_signature(header.replace("sha256=", "sha1="), SECRET, body)
    assert not verify_signature(None, SECRET, body)
    assert not verify_signature("", SECRET, body)
    assert not verify_signature("sha256=é", SECRET, body)


def test_the_handshake_echoes_the_challenge_only_for_our_verify_token():
    query = {"hub.mode": "subscribe", "hub.verify_token": "tok", "hub.challenge": "1158201444"}
    assert verify_subscription(query, "tok") == (200, "1158201444")
    assert verify_subscription({**query, "hub.verify_token": "nope"}, "tok")[0] == 403
    assert verify_subscription({**query, "hub.mode": "unsubscribe"}, "tok")[0] == 400
    assert verify_subscription({k: v for k, v in query.items() if k != "hub.challenge"}, "tok")[0] == 400
    assert verify_subscription({k: v for k, v in query.items() if k != "hub.verify_token"}, "tok")[0] == 403


def test_a_batch_of_entries_is_split_into_one_record_per_item_in_order():
    records, skipped = records_of(BODY, request_id="req-1", now=NOW)
    assert skipped == []
    assert [r["kind"] for r in records] == ["message", "postback", "delivery", "echo", "read"]
    assert [r["envelope"]["aggregate_id"] for r in records] == [
        f"facebook/{PAGE}/{PSID}",
        f"facebook/{PAGE}/{PSID}",
        f"facebook/{OTHER_PAGE}/{OTHER_PSID}",
        f"facebook/{OTHER_PAGE}/{OTHER_PSID}",  # an echo files under the person, not the page
        f"facebook/{OTHER_PAGE}/{OTHER_PSID}",
    ]
    assert [r["account_id"] for r in records] == [PAGE, PAGE, OTHER_PAGE, OTHER_PAGE, OTHER_PAGE]


def test_each_record_carries_what_the_router_needs():
    message, postback, delivery, echo, read = records_of(BODY, request_id="req-1", now=NOW)[0]
    assert message["message_id"].startswith("m_AG5Hz2")
    assert message["text"] == "hello"
    assert message["sent_at"] == datetime.fromtimestamp(1763812800, UTC)
    assert postback["message_id"] == f"postback:{PSID}:1763812800050"
    assert postback["text"] == "Get Started"
    assert json.loads(postback["raw"])["postback"]["payload"] == "GET_STARTED"
    assert delivery["mids"] == ["m_out_1", "m_out_2"]
    assert delivery["watermark"] == 1763812800140
    assert delivery["message_id"] == ""
    assert echo["attachments"] == [{"type": "image", "url": "https://scontent.xx.fbcdn.net/v/t1/img.png"}]
    assert read["watermark"] == 1763812800160


def test_the_envelope_starts_a_correlation_per_item_caused_by_the_request():
    records, _ = records_of(BODY, request_id="req-1", now=NOW)
    for record in records:
        env = record["envelope"]
        assert env["event_type"] == "poseidon.ingress.InboundReceived"
        assert env["aggregate_version"] == 0
        assert env["tenant_id"] == "" and record["tenant_hint"] == ""
        assert env["causation_id"] == "req-1"
        assert env["actor"] == "ingress:facebook"
        assert env["previous_hash"] == ""
        assert env["occurred_at"] == NOW
        assert record["platform"] == "facebook"
    assert len({r["envelope"]["correlation_id"] for r in records}) == len(records)
    assert len({r["envelope"]["event_id"] for r in records}) == len(records)


def test_raw_keeps_each_item_as_received():
    records, _ = records_of(BODY, request_id="req-1", now=NOW)
    events = [e for entry in BODY["entry"] for e in entry["messaging"]]
    assert [json.loads(r["raw"]) for r in records] == events


def test_every_record_encodes_and_decodes_with_the_schema():
    codec = bootstrap.codec(Settings())
    for record in records_of(BODY, request_id="req-1", now=NOW)[0]:
        decoded = codec.decode(codec.encode("poseidon.ingress.InboundReceived", record))
        assert decoded.name == "poseidon.ingress.InboundReceived"
        assert decoded.record["message_id"] == record["message_id"]
        assert decoded.record["envelope"] == record["envelope"]


def test_standby_and_unhandled_items_are_left_out_and_reported():
    body = {
        "object": "page",
        "entry": [
            {
                "id": PAGE,
                "time": 1,
                "messaging": [
                    {
                        "sender": {"id": PSID},
                        "recipient": {"id": PAGE},
                        "timestamp": 5,
                        "reaction": {"mid": "m1", "action": "react"},
                    },
                    {"sender": {"id": PSID}, "recipient": {"id": PAGE}, "timestamp": 6, "message": {"mid": "m2", "text": "x"}},
                ],
                "standby": [
                    {"sender": {"id": PSID}, "recipient": {"id": PAGE}, "timestamp": 7, "message": {"mid": "m3", "text": "y"}}
                ],
            }
        ],
    }
    records, skipped = records_of(body, request_id="r", now=NOW)
    assert [r["message_id"] for r in records] == ["m2"]
    assert [(s.kind, s.standby) for s in skipped] == [("unsupported", False), ("message", True)]


def test_a_page_feed_webhook_holds_nothing_for_us():
    body = {"object": "page", "entry": [{"id": PAGE, "time": 1, "changes": [{"field": "feed", "value": {}}]}]}
    assert records_of(body, request_id="r", now=NOW) == ([], [])


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"object": "instagram", "entry": []},
        {"object": "page"},
        {"object": "page", "entry": [{"id": PAGE, "messaging": [{"recipient": {"id": PAGE}, "timestamp": 1, "message": {}}]}]},
    ],
)
def test_bodies_that_are_not_messenger_webhooks_are_refused_with_a_reason(body):
    with pytest.raises(InvalidWebhook) as refused:
        records_of(body, request_id="r", now=NOW)
    assert refused.value.reason


def test_a_handover_is_recorded_with_the_app_that_holds_the_thread_as_its_text():
    event = fb.handover_event(PAGE, PSID, "take_thread_control", fb.PAGE_INBOX_APP_ID, fb.APP_ID, timestamp_ms=1763812800300)
    [record], skipped = records_of(fb.webhook_body(event), request_id="req-1", now=NOW)
    assert skipped == [] and record["kind"] == "handover"
    assert (record["text"], record["message_id"]) == (fb.PAGE_INBOX_APP_ID, f"handover:{PSID}:1763812800300")
    assert record["envelope"]["aggregate_id"] == f"facebook/{PAGE}/{PSID}"
