"""spokes.botpress.translate on Chat API payloads shaped as Botpress sends them:
request bodies, parsed answers, which messages answer ours, reply text per payload
type, pushed signals, and what every error answer means."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from spokes.botpress import translate
from spokes.botpress.translate import (
    CREATE_CONVERSATION,
    CREATE_MESSAGE,
    CREATE_USER,
    GET_USER,
    LIST_MESSAGES,
    ChatMessage,
    FailureKind,
    MalformedAnswer,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
USER = "user_01HX"
BOT = "user_bot"


def message(id: str, at: datetime, user: str = BOT, text: str = "hi", **extra) -> ChatMessage:
    return ChatMessage(id, at, user, "conv_1", {"type": "text", "text": text}, extra.get("metadata", {}))


def raw_message(id: str = "msg_1", **changes) -> dict:
    raw = {
        "id": id,
        "createdAt": "2026-03-01T12:00:00.123Z",
        "payload": {"type": "text", "text": "hello"},
        "userId": USER,
        "conversationId": "conv_1",
    }
    return {**raw, **changes}


def error_body(code: int, type_: str) -> dict:
    return {
        "id": "err_20260301120000x0A1B2C3D",
        "code": code,
        "type": type_,
        "message": "Expected string, received 'my secret text'",
    }


# --- request bodies ----------------------------------------------------------------------


def test_the_api_url_is_the_chat_base_followed_by_the_webhook_id():
    assert translate.api_url("https://chat.botpress.cloud/", "9a2b-51") == "https://chat.botpress.cloud/9a2b-51"
    assert translate.api_url("http://h", "a/b") == "http://h/a%2Fb"
    with pytest.raises(ValueError):
        translate.api_url("http://h", "")


def test_a_new_user_and_conversation_are_created_without_any_personal_data():
    assert translate.create_user_body() == {}
    assert translate.create_conversation_body() == {}


def test_a_message_is_a_text_payload_with_our_message_id_in_its_metadata():
    body = translate.create_message_body("conv_1", "Where is my order?", message_id="m-42")

    assert body == {
        "conversationId": "conv_1",
        "payload": {"type": "text", "text": "Where is my order?"},
        "metadata": {"poseidonMessageId": "m-42"},
    }
    assert "metadata" not in translate.create_message_body("conv_1", "hi")


def test_the_next_page_is_asked_for_with_the_token_the_last_answer_gave():
    assert translate.list_messages_query("abc") == {"nextToken": "abc"}
    assert translate.list_messages_query(None) == {}


# --- answers -----------------------------------------------------------------------------


def test_create_user_answers_the_user_id_and_its_key():
    body = {
        "user": {"id": USER, "createdAt": "2026-03-01T12:00:00.000Z", "updatedAt": "2026-03-01T12:00:00.000Z"},
        "key": "eyJ.x.y",
    }

    assert translate.parse_user_created(body) == (USER, "eyJ.x.y")


@pytest.mark.parametrize(
    "body",
    [{"user": {"id": USER}}, {"key": "k"}, {"user": {"id": ""}, "key": "k"}, {"user": "x", "key": "k"}, [], None],
)
def test_a_create_user_answer_without_user_id_or_key_is_malformed(body):
    with pytest.raises(MalformedAnswer):
        translate.parse_user_created(body)


def test_conversation_and_user_answers_give_their_ids():
    assert translate.parse_conversation({"conversation": {"id": "conv_9", "createdAt": "x"}}) == "conv_9"
    assert translate.parse_user({"user": {"id": USER}}) == USER


def test_a_message_is_parsed_with_its_time_author_payload_and_metadata():
    parsed = translate.parse_message_created({"message": raw_message(metadata={"poseidonMessageId": "m-1"})})

    assert parsed == ChatMessage("msg_1", T0, USER, "conv_1", {"type": "text", "text": "hello"}, {"poseidonMessageId": "m-1"})


@pytest.mark.parametrize("change", [{"createdAt": "yesterday"}, {"userId": None}, {"payload": "hello"}, {"id": ""}])
def test_a_message_missing_what_botpress_documents_is_malformed(change):
    with pytest.raises(MalformedAnswer):
        translate.parse_message(raw_message(**change))


def test_a_page_of_messages_comes_with_its_next_token_or_none_on_the_last_page():
    page = {"messages": [raw_message("msg_2"), raw_message("msg_1")], "meta": {"nextToken": "MjA="}}

    messages, token = translate.parse_message_page(page)

    assert [m.id for m in messages] == ["msg_2", "msg_1"]
    assert token == "MjA="
    assert translate.parse_message_page({"messages": [], "meta": {}}) == ([], None)
    assert translate.parse_message_page({"messages": []}) == ([], None)


# --- which messages answer ours -----------------------------------------------------------


def test_the_bots_replies_are_its_messages_at_or_after_ours_oldest_first():
    sent = message("msg_sent", T0, USER)
    listed = [
        message("old_reply", T0 - timedelta(seconds=5)),
        message("old_question", T0 - timedelta(seconds=6), USER),
        sent,
        message("same_ms_reply", T0),
        message("second", T0 + timedelta(milliseconds=40)),
        message("first", T0 + timedelta(milliseconds=20)),
        message("our_next_question", T0 + timedelta(seconds=1), USER),
    ]

    replies = translate.bot_replies(listed, user_id=USER, sent=sent)

    assert [m.id for m in replies] == ["same_ms_reply", "first", "second"]


def test_nothing_answers_a_message_the_bot_has_not_replied_to_yet():
    sent = message("msg_sent", T0, USER)
    assert translate.bot_replies([message("old", T0 - timedelta(seconds=1)), sent], user_id=USER, sent=sent) == []


def test_a_message_already_sent_is_found_by_the_id_in_its_metadata_and_its_author():
    ours = message("msg_a", T0, USER, metadata={"poseidonMessageId": "m-1"})
    someone_elses = message("msg_b", T0, BOT, metadata={"poseidonMessageId": "m-1"})

    assert translate.find_sent([someone_elses, ours], user_id=USER, message_id="m-1") is ours
    assert translate.find_sent([ours], user_id=USER, message_id="m-2") is None
    assert translate.find_sent([ours], user_id=USER, message_id="") is None


# --- reply text ---------------------------------------------------------------------------

CARD = {
    "type": "card",
    "title": "Blue shirt",
    "subtitle": "19.90 EUR",
    "imageUrl": "https://cdn/x.png",
    "actions": [
        {"action": "url", "label": "Buy", "value": "https://shop/1"},
        {"action": "postback", "label": "More", "value": "more"},
    ],
}


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        ({"type": "text", "text": "Your order ships today."}, "Your order ships today."),
        ({"type": "markdown", "markdown": "**Done**"}, "**Done**"),
        ({"type": "image", "imageUrl": "https://cdn/a.png"}, "https://cdn/a.png"),
        ({"type": "audio", "audioUrl": "https://cdn/a.mp3"}, "https://cdn/a.mp3"),
        ({"type": "video", "videoUrl": "https://cdn/a.mp4"}, "https://cdn/a.mp4"),
        ({"type": "file", "fileUrl": "https://cdn/f.pdf", "title": "Invoice"}, "Invoice: https://cdn/f.pdf"),
        ({"type": "file", "fileUrl": "https://cdn/f.pdf"}, "https://cdn/f.pdf"),
        ({"type": "location", "latitude": 46.2, "longitude": 6.1, "title": "Shop"}, "Shop (46.2, 6.1)"),
        ({"type": "location", "latitude": 46.2, "longitude": 6.1}, "46.2, 6.1"),
        (
            {"type": "choice", "text": "Pick one", "options": [{"label": "Yes", "value": "y"}, {"label": "No", "value": "n"}]},
            "Pick one\n- Yes\n- No",
        ),
        ({"type": "dropdown", "text": "Size?", "options": [{"label": "M", "value": "m"}]}, "Size?\n- M"),
        (CARD, "Blue shirt\n19.90 EUR\n- Buy: https://shop/1\n- More"),
        (
            {"type": "carousel", "items": [CARD, {**CARD, "title": "Red shirt", "subtitle": None, "actions": []}]},
            "Blue shirt\n19.90 EUR\n- Buy: https://shop/1\n- More\n\nRed shirt",
        ),
        (
            {"type": "bloc", "items": [{"type": "text", "text": "Here:"}, {"type": "image", "imageUrl": "https://cdn/b.png"}]},
            "Here:\nhttps://cdn/b.png",
        ),
        ({"type": "text", "text": ""}, None),
        ({"type": "typing"}, None),
        ({}, None),
    ],
)
def test_each_payload_type_reads_as_chat_text(payload, text):
    assert translate.reply_text(payload) == text


def test_replies_with_nothing_to_say_are_left_out():
    replies = [message("a", T0, text="one"), ChatMessage("b", T0, BOT, "c", {"type": "typing"}), message("c", T0, text="two")]

    assert translate.spoken_replies(replies) == [("a", "one"), ("c", "two")]


# --- push ---------------------------------------------------------------------------------


def test_a_push_is_authentic_only_with_our_secret_in_x_bp_secret():
    assert translate.PUSH_SECRET_HEADER == "x-bp-secret"
    assert translate.push_is_authentic("s3cret", "s3cret")
    assert not translate.push_is_authentic("s3cre", "s3cret")
    assert not translate.push_is_authentic(None, "s3cret")
    assert not translate.push_is_authentic("", "")


def test_a_pushed_bot_message_is_parsed_and_every_other_signal_ignored():
    bot_signal = {"type": "message_created", "data": {**raw_message(userId=BOT), "isBot": True}}

    assert translate.parse_push(bot_signal).user_id == BOT
    assert translate.parse_push({"type": "message_created", "data": {**raw_message(), "isBot": False}}) is None
    assert translate.parse_push({"type": "participant_added", "data": {"conversationId": "c", "participantId": "p"}}) is None
    assert translate.parse_push({"type": "message_created", "data": raw_message()}) is None
    assert translate.parse_push("garbage") is None


# --- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "type_", "operation", "kind", "code"),
    [
        (429, "RateLimited", CREATE_MESSAGE, FailureKind.RETRYABLE, "rate_limited"),
        (500, "Internal", CREATE_USER, FailureKind.RETRYABLE, "server_error"),
        (500, "Unknown", LIST_MESSAGES, FailureKind.RETRYABLE, "server_error"),
        (502, "", CREATE_MESSAGE, FailureKind.RETRYABLE, "unavailable"),
        (503, "", CREATE_CONVERSATION, FailureKind.RETRYABLE, "unavailable"),
        (408, "", CREATE_MESSAGE, FailureKind.RETRYABLE, "unavailable"),
        # createUser is unauthenticated: a refusal is the tenant's integration (manual auth, disabled, wrong webhook).
        (403, "Forbidden", CREATE_USER, FailureKind.REAUTHORIZE, "user_creation_refused"),
        (401, "Unauthorized", CREATE_USER, FailureKind.REAUTHORIZE, "user_creation_refused"),
        (404, "ResourceNotFound", CREATE_USER, FailureKind.REAUTHORIZE, "webhook_not_found"),
        # With a user key: the stored mapping went stale.
        (401, "Unauthorized", CREATE_MESSAGE, FailureKind.STALE_USER, "user_key_rejected"),
        (401, "Unauthorized", LIST_MESSAGES, FailureKind.STALE_USER, "user_key_rejected"),
        (401, "Unauthorized", CREATE_CONVERSATION, FailureKind.STALE_USER, "user_key_rejected"),
        (404, "ResourceNotFound", GET_USER, FailureKind.STALE_USER, "user_not_found"),
        (404, "ResourceNotFound", CREATE_MESSAGE, FailureKind.STALE_CONVERSATION, "conversation_not_found"),
        (403, "Forbidden", LIST_MESSAGES, FailureKind.STALE_CONVERSATION, "conversation_forbidden"),
        # The request itself, or the tenant's plan: retrying will not help.
        (400, "InvalidPayload", CREATE_MESSAGE, FailureKind.PERMANENT, "invalid_payload"),
        (400, "InvalidQuery", LIST_MESSAGES, FailureKind.PERMANENT, "invalid_query"),
        (409, "AlreadyExists", CREATE_CONVERSATION, FailureKind.PERMANENT, "already_exists"),
        (413, "PayloadTooLarge", CREATE_MESSAGE, FailureKind.PERMANENT, "payload_too_large"),
        (403, "QuotaExceeded", CREATE_MESSAGE, FailureKind.PERMANENT, "quota_exceeded"),
        (403, "QuotaExceeded", CREATE_USER, FailureKind.PERMANENT, "quota_exceeded"),
        (402, "PaymentRequired", CREATE_USER, FailureKind.PERMANENT, "payment_required"),
        (418, "", CREATE_MESSAGE, FailureKind.PERMANENT, "http_418"),
    ],
)
def test_every_error_answer_maps_to_what_we_do_about_it(status, type_, operation, kind, code):
    failure = translate.classify_error(
        status, error_body(status, type_) if type_ else "<html>gateway</html>", operation=operation
    )

    assert (failure.kind, failure.code) == (kind, code)


def test_the_reason_names_status_type_and_error_id_but_never_the_apis_message():
    failure = translate.classify_error(400, error_body(400, "InvalidPayload"), operation=CREATE_MESSAGE)

    assert failure.reason == "createMessage: Botpress answered 400 InvalidPayload (error id err_20260301120000x0A1B2C3D)"
    assert "secret" not in failure.reason


def test_a_rate_limit_carries_the_retry_after_botpress_asked_for():
    failure = translate.classify_error(429, error_body(429, "RateLimited"), operation=CREATE_MESSAGE, retry_after="7")

    assert failure.retry_after == 7.0
    assert translate.classify_error(429, None, operation=CREATE_MESSAGE).retry_after is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("3", 3.0), ("0.5", 0.5), ("-2", 0.0), ("Sun, 01 Mar 2026 12:00:10 GMT", 10.0), ("soon", None), ("", None), (None, None)],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(value, seconds):
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)

    assert translate.parse_retry_after(value, now=now) == seconds


# --- the listen stream (server-sent events) ----------------------------------------------


def feed(lines: list[str]) -> list[str]:
    events = translate.EventStream()
    return [data for line in lines if (data := events.feed(line)) is not None]


def test_an_event_stream_yields_each_events_data_at_its_blank_line_and_skips_comments_and_other_fields():
    lines = [": ping", "", "event: message", "id: 7", 'data: {"a":', "data:1}", "", "retry: 100", "", "data: x", ""]
    assert feed(lines) == ['{"a":\n1}', "x"]
    assert feed(["data: unfinished"]) == []


def test_a_message_created_signal_is_the_message_and_any_other_signal_is_nothing():
    message = {
        "id": "msg_1",
        "createdAt": "2026-01-01T12:00:00.000Z",
        "userId": "user_bot",
        "conversationId": "conv_1",
        "payload": {"type": "text", "text": "hi"},
    }
    heard = translate.parse_signal(json.dumps({"type": "message_created", "data": message}))
    assert heard is not None and heard.id == "msg_1" and heard.user_id == "user_bot" and heard.payload["text"] == "hi"
    assert translate.parse_signal('{"type":"participant_added","data":{}}') is None
    with pytest.raises(translate.MalformedAnswer):
        translate.parse_signal("not json")
    with pytest.raises(translate.MalformedAnswer):
        translate.parse_signal('{"type":"message_created","data":{"id":1}}')


def test_event_stream_text_is_cut_at_cr_lf_or_crlf_only_even_across_chunks():
    events = translate.EventStream()
    said = json.dumps({"text": "one\u2028two"}, ensure_ascii=False)
    chunks = ["data: ", said, "\r", "\n\r", "\ndata: b\rdata: c\n", "\n: ping\n\ndata: unfinished"]
    assert [data for chunk in chunks for data in events.feed_text(chunk)] == [said, "b\nc"]
    assert json.loads(said)["text"] == "one\u2028two"
