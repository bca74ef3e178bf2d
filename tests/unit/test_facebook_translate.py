"""The Facebook spoke's pure translation: webhook bodies as Facebook documents and sends
them (written out literally here), receipts to delivery statuses, the messaging window,
Send API bodies, and every Graph error class."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from spokes.facebook.translate import (
    DEFAULT_RATE_LIMIT_WAIT_S,
    DELIVERY,
    ECHO,
    HANDOVER,
    MESSAGE,
    PAGE_INBOX_APP_ID,
    PERMANENT,
    POSTBACK,
    RATE_LIMITED,
    READ_RECEIPT,
    REAUTHORIZE,
    RETRY,
    UNSUPPORTED,
    Attachment,
    InvalidOutbound,
    InvalidWebhook,
    OutsideMessagingWindow,
    StatusUpdate,
    attachment_message,
    classify_graph_error,
    messaging_type_for,
    parse_webhook,
    receipt_updates,
    signature_header,
    signature_matches,
    text_message,
)
from tests.standins import facebook as fb

PAGE = "112233445566778"
PSID = "6543210987654321"

# As Facebook writes it: compact, "/" escaped, non-ASCII as \u escapes.
TEXT_AND_IMAGE = (
    rb'{"object":"page","entry":[{"id":"112233445566778","time":1732233600123,"messaging":[{"sender":{"id":"6543210987654321"},'
    rb'"recipient":{"id":"112233445566778"},"timestamp":1732233599876,"message":{"mid":"m_AbC-123_xyz",'
    rb'"text":"Gr\u00fc\u00dfe \/ hi","quick_reply":{"payload":"PICK_RED"},"reply_to":{"mid":"m_earlier"},'
    rb'"attachments":[{"type":"image","payload":'
    rb'{"url":"https:\/\/scontent.xx.fbcdn.net\/v\/t1.15752-9\/photo.jpg?_nc_cat=1&oh=abc&oe=674B1C2D"}}]}}]}]}'
)


def parse(raw: bytes | str) -> list:
    return parse_webhook(json.loads(raw))


def test_a_text_message_with_an_image_becomes_one_message_item_with_every_field():
    [item] = parse(TEXT_AND_IMAGE)

    assert item.kind == MESSAGE
    assert (item.page_id, item.sender_id, item.recipient_id, item.psid) == (PAGE, PSID, PAGE, PSID)
    assert item.timestamp_ms == 1732233599876
    assert item.at == datetime(2024, 11, 22, 0, 0, 0, 876000, tzinfo=UTC) - timedelta(seconds=1)
    assert item.mid == "m_AbC-123_xyz"
    assert item.text == "Grüße / hi"
    assert item.payload == "PICK_RED"
    assert item.reply_to == "m_earlier"
    assert item.attachments == (
        Attachment("image", "https://scontent.xx.fbcdn.net/v/t1.15752-9/photo.jpg?_nc_cat=1&oh=abc&oe=674B1C2D"),
    )
    assert not item.standby


def test_batched_entries_of_two_pages_are_split_into_items_in_order():
    body = {
        "object": "page",
        "entry": [
            {
                "id": "111",
                "time": 1,
                "messaging": [
                    {
                        "sender": {"id": "9001"},
                        "recipient": {"id": "111"},
                        "timestamp": 10,
                        "message": {"mid": "m_1", "text": "a"},
                    },
                    {
                        "sender": {"id": "9002"},
                        "recipient": {"id": "111"},
                        "timestamp": 11,
                        "message": {"mid": "m_2", "text": "b"},
                    },
                ],
            },
            {
                "id": "222",
                "time": 2,
                "messaging": [
                    {"sender": {"id": "9003"}, "recipient": {"id": "222"}, "timestamp": 12, "postback": {"payload": "GO"}}
                ],
            },
        ],
    }

    items = parse_webhook(body)

    assert [(i.page_id, i.psid, i.kind, i.mid or i.payload) for i in items] == [
        ("111", "9001", MESSAGE, "m_1"),
        ("111", "9002", MESSAGE, "m_2"),
        ("222", "9003", POSTBACK, "GO"),
    ]


def test_a_postback_carries_its_payload_title_and_mid():
    raw = (
        '{"object":"page","entry":[{"id":"112233445566778","time":1732233600000,"messaging":[{"sender":{"id":"6543210987654321"},'
        '"recipient":{"id":"112233445566778"},"timestamp":1732233600000,"postback":{"title":"Talk to a human",'
        '"payload":"HUMAN_PLEASE","mid":"m_pb1"}}]}]}'
    )

    [item] = parse(raw)

    assert (item.kind, item.title, item.payload, item.mid, item.psid) == (
        POSTBACK,
        "Talk to a human",
        "HUMAN_PLEASE",
        "m_pb1",
        PSID,
    )


def test_a_delivery_receipt_without_a_timestamp_takes_the_entry_time():
    raw = (
        '{"object":"page","entry":[{"id":"112233445566778","time":1458668856451,"messaging":[{"sender":{"id":"6543210987654321"},'
        '"recipient":{"id":"112233445566778"},"delivery":{"mids":["m_out1","m_out2"],"watermark":1458668856253}}]}]}'
    )

    [item] = parse(raw)

    assert item.kind == DELIVERY
    assert item.mids == ("m_out1", "m_out2")
    assert item.watermark_ms == 1458668856253
    assert item.timestamp_ms == 1458668856451


def test_a_delivery_receipt_may_leave_out_its_mids():
    raw = (
        '{"object":"page","entry":[{"id":"1","time":5,"messaging":[{"sender":{"id":"2"},"recipient":{"id":"1"},'
        '"timestamp":5,"delivery":{"watermark":4}}]}]}'
    )

    [item] = parse(raw)

    assert (item.kind, item.mids, item.watermark_ms) == (DELIVERY, (), 4)


def test_a_read_receipt_carries_its_watermark():
    raw = (
        '{"object":"page","entry":[{"id":"112233445566778","time":1458668856463,"messaging":[{"sender":{"id":"6543210987654321"},'
        '"recipient":{"id":"112233445566778"},"timestamp":1458668856463,"read":{"watermark":1458668856253}}]}]}'
    )

    [item] = parse(raw)

    assert (item.kind, item.watermark_ms, item.psid) == (READ_RECEIPT, 1458668856253, PSID)


def test_an_echo_is_sent_by_the_page_and_its_psid_is_the_recipient():
    raw = (
        '{"object":"page","entry":[{"id":"112233445566778","time":1480114700424,"messaging":[{"sender":{"id":"112233445566778"},'
        '"recipient":{"id":"6543210987654321"},"timestamp":1480114700296,"message":{"is_echo":true,"app_id":1517776481860111,'
        '"metadata":"DEVELOPER_DEFINED_METADATA_STRING","mid":"m_echo1","text":"Hello from the page"}}]}]}'
    )

    [item] = parse(raw)

    assert (item.kind, item.sender_id, item.psid, item.app_id, item.text) == (
        ECHO,
        PAGE,
        PSID,
        "1517776481860111",
        "Hello from the page",
    )


def test_standby_items_are_parsed_and_marked():
    raw = (
        '{"object":"page","entry":[{"id":"1","time":5,"standby":[{"sender":{"id":"2"},"recipient":{"id":"1"},'
        '"timestamp":5,"message":{"mid":"m_s","text":"x"}}]}]}'
    )

    [item] = parse(raw)

    assert item.standby and item.kind == MESSAGE


def test_an_event_kind_we_do_not_handle_is_returned_as_unsupported_not_refused():
    raw = (
        '{"object":"page","entry":[{"id":"1","time":5,"messaging":[{"sender":{"id":"2"},"recipient":{"id":"1"},'
        '"timestamp":5,"reaction":{"mid":"m_x","action":"react","reaction":"love","emoji":"\\u2764"}}]}]}'
    )

    [item] = parse(raw)

    assert (item.kind, item.event) == (UNSUPPORTED, "reaction")


def test_a_page_feed_change_entry_holds_no_messaging_items():
    assert parse_webhook({"object": "page", "entry": [{"id": "1", "time": 5, "changes": [{"field": "feed", "value": {}}]}]}) == []


def _message_body(**message_overrides) -> dict:
    event = {"sender": {"id": "2"}, "recipient": {"id": "1"}, "timestamp": 5, "message": {"mid": "m_1", "text": "hi"}}
    event["message"].update(message_overrides)
    return {"object": "page", "entry": [{"id": "1", "time": 5, "messaging": [event]}]}


def _entry(**entry) -> dict:
    return {"object": "page", "entry": [{"id": "1", "time": 5, **entry}]}


def _event(*, without: tuple[str, ...] = (), **overrides) -> dict:
    event = {"sender": {"id": "2"}, "recipient": {"id": "1"}, "timestamp": 5, "message": {"mid": "m_1", "text": "hi"}}
    event.update(overrides)
    for key in without:
        del event[key]
    return {"object": "page", "entry": [{"id": "1", "time": 5, "messaging": [event]}]}


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ([1, 2], "the body must be a JSON object"),
        ({"object": "instagram", "entry": []}, "object must be 'page', not 'instagram'"),
        ({"object": "page"}, "entry must be a list, not missing"),
        ({"object": "page", "entry": ["x"]}, "entry[0] must be an object"),
        ({"object": "page", "entry": [{"time": 5, "messaging": []}]}, "entry[0].id must be a non-empty id string"),
        (_entry(), "entry[0] has neither messaging nor standby"),
        (_entry(messaging={}), "entry[0].messaging must be a list"),
        (_entry(time="yesterday", messaging=[]), "entry[0].time must be a non-negative integer"),
        (_event(sender=None), "entry[0].messaging[0].sender must be an object"),
        (_event(sender={"id": ""}), "entry[0].messaging[0].sender.id must be a non-empty id string"),
        (_event(recipient={"id": "999"}), "entry[0].messaging[0].recipient.id is 999, not the entry's page 1"),
        (_event(timestamp="5"), "entry[0].messaging[0].timestamp must be a non-negative integer"),
        (_message_body(mid=None), "entry[0].messaging[0].message.mid must be a non-empty string"),
        (_message_body(text=5), "entry[0].messaging[0].message.text must be a string"),
        (_message_body(attachments={"type": "image"}), "entry[0].messaging[0].message.attachments must be a list"),
        (
            _message_body(attachments=[{"payload": {}}]),
            "entry[0].messaging[0].message.attachments[0].type must be a non-empty string",
        ),
        (
            _message_body(attachments=[{"type": "image", "payload": {"url": 5}}]),
            "message.attachments[0].payload.url must be a string",
        ),
        (_message_body(quick_reply="PICK"), "entry[0].messaging[0].message.quick_reply must be an object"),
        (
            _event(without=("message",), delivery={"mids": ["m"]}),
            "entry[0].messaging[0].delivery.watermark must be a non-negative integer",
        ),
        (
            _event(without=("message",), delivery={"mids": "m", "watermark": 1}),
            "entry[0].messaging[0].delivery.mids must be a list",
        ),
        (
            _event(without=("message",), read={"watermark": True}),
            "entry[0].messaging[0].read.watermark must be a non-negative integer",
        ),
        (_event(without=("message",), postback=["GO"]), "entry[0].messaging[0].postback must be an object"),
    ],
)
def test_a_malformed_body_is_refused_naming_the_bad_field(body, names):
    with pytest.raises(InvalidWebhook) as refused:
        parse_webhook(body)
    assert names in refused.value.reason


def test_a_missing_timestamp_without_an_entry_time_is_refused():
    body = {
        "object": "page",
        "entry": [{"id": "1", "messaging": [{"sender": {"id": "2"}, "recipient": {"id": "1"}, "read": {"watermark": 1}}]}],
    }

    with pytest.raises(InvalidWebhook, match=r"entry\[0\]\.messaging\[0\]\.timestamp is missing"):
        parse_webhook(body)


def test_the_refusal_does_not_repeat_long_field_values():
    body = _event(sender={"id": "x " + "secret text " * 20})

    with pytest.raises(InvalidWebhook) as refused:
        parse_webhook(body)
    assert "secret" not in refused.value.reason
    assert "a string of 242 characters" in refused.value.reason


def test_what_the_standin_builds_parses_back_to_the_same_items():
    image = fb.attachment("image", "http://127.0.0.1:1/cdn/cat.jpg")
    body = fb.webhook_body(
        fb.message_event(PAGE, PSID, "hi", mid="m_in", timestamp_ms=1000, attachments=[image]),
        fb.postback_event(PAGE, PSID, "GO", title="Go", mid="m_pb", timestamp_ms=1001),
        fb.delivery_event(PAGE, PSID, ["m_out"], 999),
        fb.read_event(PAGE, PSID, 999, timestamp_ms=1002),
        fb.echo_event(PAGE, PSID, "reply", mid="m_out", timestamp_ms=998),
        time_ms=1003,
    )

    items = parse_webhook(json.loads(fb.webhook_bytes(body)))

    assert [(i.kind, i.page_id, i.psid) for i in items] == [
        (MESSAGE, PAGE, PSID),
        (POSTBACK, PAGE, PSID),
        (DELIVERY, PAGE, PSID),
        (READ_RECEIPT, PAGE, PSID),
        (ECHO, PAGE, PSID),
    ]
    assert items[0].attachments == (Attachment("image", "http://127.0.0.1:1/cdn/cat.jpg"),)
    assert items[2].timestamp_ms == 1003 and items[2].mids == ("m_out",)


# ---------------------------------------------------------------- signatures


def test_the_signature_is_the_hmac_sha256_of_the_exact_raw_bytes():
    expected = "sha256=" + hmac.new(b"s3cret", TEXT_AND_IMAGE, hashlib.sha256).hexdigest()

    assert signature_header("s3cret", TEXT_AND_IMAGE) == expected
    assert signature_matches("s3cret", TEXT_AND_IMAGE, expected)
    assert fb.signed_webhook(json.loads(TEXT_AND_IMAGE), "s3cret")[1]["X-Hub-Signature-256"] == signature_header(
        "s3cret", fb.webhook_bytes(json.loads(TEXT_AND_IMAGE))
    )


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=" + "0" * 64,
        "sha1=" + hmac.new(b"s3cret", TEXT_AND_IMAGE, hashlib.sha1).hexdigest(),
        hmac.new(b"s3cret", TEXT_AND_IMAGE, hashlib.sha256).hexdigest(),
    ],
)
def test_a_missing_wrong_or_sha1_signature_does_not_match(header):
    assert not signature_matches("s3cret", TEXT_AND_IMAGE, header)


def test_a_reserialised_body_no_longer_matches_its_signature():
    header = signature_header("s3cret", TEXT_AND_IMAGE)

    assert not signature_matches("s3cret", json.dumps(json.loads(TEXT_AND_IMAGE)).encode(), header)


# ---------------------------------------------------------------- receipts


def _receipt(kind: str, watermark: int, mids: tuple[str, ...] = ()):
    raw = {"sender": {"id": "2"}, "recipient": {"id": "1"}, "timestamp": 50}
    raw[kind] = {"watermark": watermark, **({"mids": list(mids)} if kind == "delivery" else {})}
    [item] = parse_webhook({"object": "page", "entry": [{"id": "1", "time": 50, "messaging": [raw]}]})
    return item


def test_a_delivery_receipt_marks_its_mids_delivered():
    assert receipt_updates(_receipt("delivery", 10, ("m_b", "m_a"))) == [
        StatusUpdate("m_a", "delivered"),
        StatusUpdate("m_b", "delivered"),
    ]


def test_a_delivery_watermark_also_covers_earlier_sends_it_does_not_name():
    sent = {"m_old": 5, "m_edge": 10, "m_later": 11}

    assert receipt_updates(_receipt("delivery", 10), sent) == [
        StatusUpdate("m_edge", "delivered"),
        StatusUpdate("m_old", "delivered"),
    ]


def test_a_read_receipt_marks_every_message_sent_up_to_its_watermark_read():
    sent = {"m_1": 5, "m_2": 10, "m_3": 11}

    assert receipt_updates(_receipt("read", 10), sent) == [StatusUpdate("m_1", "read"), StatusUpdate("m_2", "read")]
    assert receipt_updates(_receipt("read", 10)) == []


def test_messages_and_postbacks_imply_no_delivery_status():
    assert receipt_updates(parse(TEXT_AND_IMAGE)[0], {"m_1": 0}) == []


# ---------------------------------------------------------------- the messaging window

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_a_reply_within_24_hours_is_a_response():
    assert messaging_type_for(NOW - timedelta(hours=23, minutes=59), NOW) == ("RESPONSE", "")


def test_a_reply_within_24_hours_is_a_response_even_when_a_tag_is_offered():
    assert messaging_type_for(NOW - timedelta(minutes=5), NOW, "HUMAN_AGENT") == ("RESPONSE", "")


@pytest.mark.parametrize("age", [timedelta(hours=24), timedelta(hours=30), timedelta(days=40)])
def test_a_reply_after_24_hours_without_a_tag_is_refused_with_the_reason(age):
    with pytest.raises(OutsideMessagingWindow) as refused:
        messaging_type_for(NOW - age, NOW)

    assert refused.value.code == "outside_messaging_window"
    assert "outside the 24 h window" in refused.value.reason
    assert f"{age.total_seconds() / 3600:.1f} h ago" in refused.value.reason


def test_a_human_agent_reply_after_24_hours_is_a_tagged_message():
    assert messaging_type_for(NOW - timedelta(hours=30), NOW, "HUMAN_AGENT") == ("MESSAGE_TAG", "HUMAN_AGENT")


def test_the_human_agent_tag_allows_seven_days_only():
    assert messaging_type_for(NOW - timedelta(days=6, hours=23), NOW, "HUMAN_AGENT") == ("MESSAGE_TAG", "HUMAN_AGENT")
    with pytest.raises(OutsideMessagingWindow, match="within 7 days only"):
        messaging_type_for(NOW - timedelta(days=7), NOW, "HUMAN_AGENT")


@pytest.mark.parametrize("tag", ["ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE"])
def test_update_tags_are_allowed_at_any_age(tag):
    assert messaging_type_for(NOW - timedelta(days=90), NOW, tag) == ("MESSAGE_TAG", tag)


@pytest.mark.parametrize("tag", ["SHIPPING_UPDATE", "ISSUE_RESOLUTION", "human_agent", "ANYTHING"])
def test_a_retired_or_unknown_tag_is_refused(tag):
    with pytest.raises(InvalidOutbound) as refused:
        messaging_type_for(NOW - timedelta(days=2), NOW, tag)
    assert refused.value.code == "tag_not_allowed"


def test_nobody_who_never_wrote_can_be_messaged_even_with_a_tag():
    with pytest.raises(OutsideMessagingWindow, match="never wrote"):
        messaging_type_for(None, NOW, "ACCOUNT_UPDATE")


def test_naive_timestamps_are_taken_as_utc():
    assert messaging_type_for(datetime(2026, 11, 22, 0, 0), NOW) == ("RESPONSE", "")
    with pytest.raises(OutsideMessagingWindow):
        messaging_type_for(datetime(2026, 11, 21, 11, 0), NOW.replace(tzinfo=None))


# ---------------------------------------------------------------- Send API bodies


def test_a_text_response_body_is_what_the_send_api_takes():
    assert text_message(PSID, "Hello", "RESPONSE") == {
        "recipient": {"id": PSID},
        "messaging_type": "RESPONSE",
        "message": {"text": "Hello"},
    }


def test_a_tagged_body_carries_its_tag():
    assert text_message(PSID, "Hello", "MESSAGE_TAG", "HUMAN_AGENT")["tag"] == "HUMAN_AGENT"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ((PSID, ""), "empty_text"),
        ((PSID, "   "), "empty_text"),
        ((PSID, "x" * 2001), "text_too_long"),
        (("", "hi"), "invalid_recipient"),
        ((PSID, "hi", "PUSH"), "invalid_messaging_type"),
        ((PSID, "hi", "MESSAGE_TAG"), "tag_not_allowed"),
        ((PSID, "hi", "MESSAGE_TAG", "SHIPPING_UPDATE"), "tag_not_allowed"),
        ((PSID, "hi", "RESPONSE", "HUMAN_AGENT"), "tag_not_allowed"),
    ],
)
def test_a_body_facebook_would_refuse_is_refused_before_sending(args, code):
    with pytest.raises(InvalidOutbound) as refused:
        text_message(*args)
    assert refused.value.code == code


def test_2000_characters_is_the_longest_text():
    assert text_message(PSID, "é" * 2000)["message"]["text"] == "é" * 2000


def test_an_attachment_body_points_facebook_at_the_url():
    body = attachment_message(PSID, "image", "https://cdn.example/cat.jpg", reusable=True)

    assert body["message"] == {
        "attachment": {"type": "image", "payload": {"url": "https://cdn.example/cat.jpg", "is_reusable": True}}
    }
    with pytest.raises(InvalidOutbound, match="attachment type"):
        attachment_message(PSID, "sticker", "https://cdn.example/cat.jpg")
    with pytest.raises(InvalidOutbound, match="http"):
        attachment_message(PSID, "image", "file:///etc/passwd")


# ---------------------------------------------------------------- Graph errors


def graph_error(code: int, message: str = "msg", subcode: int | None = None, **extra) -> bytes:
    error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEfGhIjK", **extra}
    if subcode is not None:
        error["error_subcode"] = subcode
    return json.dumps({"error": error}).encode()


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (
            400,
            graph_error(190, "Invalid OAuth access token - Cannot parse access token"),
            REAUTHORIZE,
            "reauthorization_required",
        ),
        (
            401,
            graph_error(190, "Error validating access token: Session has expired", 463),
            REAUTHORIZE,
            "reauthorization_required",
        ),
        (400, graph_error(102, "Session key invalid"), REAUTHORIZE, "reauthorization_required"),
        (400, graph_error(4, "(#4) Application request limit reached"), RATE_LIMITED, "rate_limited"),
        (400, graph_error(17, "(#17) User request limit reached"), RATE_LIMITED, "rate_limited"),
        (400, graph_error(32, "(#32) Page request limit reached"), RATE_LIMITED, "rate_limited"),
        (400, graph_error(613, "(#613) Calls to this api have exceeded the rate limit."), RATE_LIMITED, "rate_limited"),
        (400, graph_error(80006, "too many messenger api calls"), RATE_LIMITED, "rate_limited"),
        (429, b"", RATE_LIMITED, "rate_limited"),
        (500, graph_error(2, "An unexpected error has occurred.", is_transient=True), RETRY, "graph_transient"),
        (500, graph_error(1, "An unknown error occurred"), RETRY, "graph_transient"),
        (400, graph_error(1200, "(#1200) Temporary send message failure"), RETRY, "graph_transient"),
        (400, graph_error(9999, "something", is_transient=True), RETRY, "graph_transient"),
        (502, b"<html>Bad Gateway</html>", RETRY, "outcome_unknown"),  # may have gone out
        (503, b"", RETRY, "outcome_unknown"),
        (400, graph_error(100, "(#100) Invalid parameter"), PERMANENT, "invalid_parameter"),
        (400, graph_error(100, "(#100) No matching user found", 2018001), PERMANENT, "recipient_not_found"),
        (400, graph_error(551, "(#551) This person isn't available right now.", 1545041), PERMANENT, "recipient_unavailable"),
        (400, graph_error(200, "Message Not Sent: This person isn't available", 1545041), PERMANENT, "recipient_unavailable"),
        (
            400,
            graph_error(10, "(#10) This message is sent outside of allowed window.", 2018278),
            PERMANENT,
            "outside_messaging_window",
        ),
        (403, graph_error(10, "(#10) Application does not have permission for this action"), PERMANENT, "permission_denied"),
        (403, graph_error(200, "(#200) Requires pages_messaging permission"), PERMANENT, "permission_denied"),
        (403, graph_error(230, "(#230) Requires pages_messaging permission"), PERMANENT, "permission_denied"),
        (400, graph_error(368, "temporarily blocked for policies violations"), PERMANENT, "policy_blocked"),
        (400, graph_error(2500, "Unknown path components: /v0/me/messages"), PERMANENT, "graph_error"),
        (404, b"not json", PERMANENT, "graph_error"),
    ],
)
def test_each_graph_error_maps_to_what_to_do_about_it(status, body, kind, code):
    failure = classify_graph_error(status, body, {})

    assert (failure.kind, failure.code) == (kind, code)
    assert failure.retryable == (kind in (RATE_LIMITED, RETRY))


def test_the_reason_names_status_code_subcode_message_and_trace_id():
    failure = classify_graph_error(400, graph_error(551, "(#551) This person isn't available right now.", 1545041), {})

    assert (
        failure.reason
        == "Graph API HTTP 400, error 551/1545041: (#551) This person isn't available right now. (fbtrace_id AbCdEfGhIjK)"
    )
    assert (failure.graph_code, failure.subcode, failure.fbtrace_id) == (551, 1545041, "AbCdEfGhIjK")


def test_a_rate_limit_without_a_hint_waits_the_default():
    assert classify_graph_error(400, graph_error(613), {}).retry_after == DEFAULT_RATE_LIMIT_WAIT_S
    assert classify_graph_error(400, graph_error(613), {}, default_retry_after=2.5).retry_after == 2.5


def test_a_rate_limit_honours_retry_after_in_seconds_or_as_a_date():
    assert classify_graph_error(429, b"", {"Retry-After": "7"}).retry_after == 7.0
    assert classify_graph_error(400, graph_error(4), {"retry-after": "1.5"}).retry_after == 1.5
    date = "Sun, 22 Nov 2026 12:00:30 GMT"
    assert classify_graph_error(429, b"", {"Retry-After": date}, now=NOW).retry_after == 30.0


def test_a_rate_limit_honours_the_business_use_case_estimate_in_minutes():
    usage = json.dumps({PAGE: [{"type": "messenger", "call_count": 100, "estimated_time_to_regain_access": 2}]})

    assert classify_graph_error(400, graph_error(80006), {"X-Business-Use-Case-Usage": usage}).retry_after == 120.0


def test_a_zero_or_garbled_hint_falls_back_to_the_default():
    assert classify_graph_error(429, b"", {"Retry-After": "0"}).retry_after == DEFAULT_RATE_LIMIT_WAIT_S
    assert classify_graph_error(429, b"", {"Retry-After": "soon"}).retry_after == DEFAULT_RATE_LIMIT_WAIT_S
    assert classify_graph_error(429, b"", {"X-Business-Use-Case-Usage": "{"}).retry_after == DEFAULT_RATE_LIMIT_WAIT_S


# Handover Protocol, as Facebook sends it to the app whose thread was taken (take) or that is given it (pass).
TAKEN_BY_INBOX = (
    '{"object":"page","entry":[{"id":"112233445566778","time":1732233600123,"messaging":[{"sender":{"id":"6543210987654321"},'
    '"recipient":{"id":"112233445566778"},"timestamp":1732233600000,"take_thread_control":{"previous_owner_app_id":'
    '"1517776481860111","new_owner_app_id":"263902037430900","metadata":"admin took over"}}]}]}'
)


def test_a_thread_taken_or_passed_is_a_handover_naming_the_app_that_holds_it_now():
    [taken] = parse(TAKEN_BY_INBOX)
    assert (taken.kind, taken.app_id, taken.psid, taken.page_id) == (HANDOVER, PAGE_INBOX_APP_ID, PSID, PAGE)
    passed = json.loads(TAKEN_BY_INBOX)
    event = passed["entry"][0]["messaging"][0]
    event["pass_thread_control"] = {"new_owner_app_id": 1517776481860111, "metadata": ""}  # an id sent as a number
    del event["take_thread_control"]
    [back] = parse_webhook(passed)
    assert (back.kind, back.app_id) == (HANDOVER, "1517776481860111")
    del event["pass_thread_control"]["new_owner_app_id"]
    with pytest.raises(InvalidWebhook, match="new_owner_app_id"):
        parse_webhook(passed)


def test_the_stand_in_builds_the_handover_facebook_sends():
    event = fb.handover_event(PAGE, PSID, "take_thread_control", fb.PAGE_INBOX_APP_ID, fb.APP_ID)
    [item] = parse_webhook(fb.webhook_body(event))
    assert (item.kind, item.app_id) == (HANDOVER, PAGE_INBOX_APP_ID)
