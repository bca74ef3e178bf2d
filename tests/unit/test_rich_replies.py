"""Rich replies both ways, on recorded payload shapes: a Botpress Chat API payload →
channel-neutral content (spokes/botpress/translate) → a Messenger Send API body
(spokes/facebook/translate), degrading to text with the reason when Messenger's
limits or shapes do not fit; and a Messenger quick reply or postback → the chosen
value the bot receives."""

from __future__ import annotations

import pytest

from spokes.botpress.translate import ChatMessage, bot_reply, create_message_body, reply_content
from spokes.facebook.translate import (
    MAX_QUICK_REPLIES,
    InvalidOutbound,
    parse_webhook,
    rich_message,
    sender_action_message,
)

PSID = "psid-1"
CHOICE = {
    "type": "choice",
    "text": "Which size?",
    "options": [{"label": "Small", "value": "SIZE_S"}, {"label": "Large", "value": "SIZE_L"}],
}
CARD = {
    "type": "card",
    "title": "Margherita",
    "subtitle": "Tomato, mozzarella",
    "imageUrl": "https://cdn.example/m.jpg",
    "actions": [
        {"action": "postback", "label": "Order", "value": "ORDER_M"},
        {"action": "url", "label": "Menu", "value": "https://pizza.example/menu"},
        {"action": "say", "label": "Tell me more", "value": "more about margherita"},
    ],
}


def messenger(payload, text="fallback"):
    content, degraded = reply_content(payload)
    body, why = rich_message(PSID, text, content)
    return body, degraded or why


def test_a_choice_becomes_quick_replies():
    body, degraded = messenger(CHOICE)
    assert degraded == ""
    assert body["message"] == {
        "text": "Which size?",
        "quick_replies": [
            {"content_type": "text", "title": "Small", "payload": "SIZE_S"},
            {"content_type": "text", "title": "Large", "payload": "SIZE_L"},
        ],
    }
    assert body["recipient"] == {"id": PSID} and body["messaging_type"] == "RESPONSE"


def test_a_dropdown_becomes_quick_replies_too():
    body, _ = messenger({**CHOICE, "type": "dropdown"})
    assert [q["payload"] for q in body["message"]["quick_replies"]] == ["SIZE_S", "SIZE_L"]


def test_a_card_becomes_a_generic_template_with_postback_and_link_buttons():
    body, degraded = messenger(CARD)
    assert degraded == ""
    payload = body["message"]["attachment"]["payload"]
    assert body["message"]["attachment"]["type"] == "template" and payload["template_type"] == "generic"
    assert payload["elements"] == [
        {
            "title": "Margherita",
            "subtitle": "Tomato, mozzarella",
            "image_url": "https://cdn.example/m.jpg",
            "buttons": [
                {"type": "postback", "title": "Order", "payload": "ORDER_M"},
                {"type": "web_url", "title": "Menu", "url": "https://pizza.example/menu"},
                {"type": "postback", "title": "Tell me more", "payload": "more about margherita"},
            ],
        }
    ]


def test_a_carousel_becomes_one_element_per_card():
    body, _ = messenger({"type": "carousel", "items": [CARD, {**CARD, "title": "Diavola", "actions": []}]})
    elements = body["message"]["attachment"]["payload"]["elements"]
    assert [e["title"] for e in elements] == ["Margherita", "Diavola"] and "buttons" not in elements[1]


@pytest.mark.parametrize("kind", ["image", "audio", "video", "file"])
def test_media_become_attachments_by_url(kind):
    body, degraded = messenger({"type": kind, f"{kind}Url": f"https://cdn.example/x.{kind}"})
    assert degraded == ""
    assert body["message"] == {
        "attachment": {"type": kind, "payload": {"url": f"https://cdn.example/x.{kind}", "is_reusable": True}}
    }


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({**CHOICE, "options": [{"label": f"o{i}", "value": f"v{i}"} for i in range(MAX_QUICK_REPLIES + 1)]}, "14 options"),
        ({**CHOICE, "options": [{"label": "A label far over twenty", "value": "v"}]}, "quick reply's title 20"),
        ({**CHOICE, "text": ""}, "quick replies need a text"),
        ({"type": "carousel", "items": [CARD] * 11}, "11 cards"),
        ({**CARD, "title": "t" * 81}, "card title has 81"),
        ({**CARD, "subtitle": "s" * 81}, "subtitle has 81"),
        ({**CARD, "actions": CARD["actions"] + [{"action": "postback", "label": "4th", "value": "x"}]}, "4 buttons"),
        ({**CARD, "actions": [{"action": "postback", "label": "A button title too long", "value": "x"}]}, "button title"),
        ({**CARD, "actions": [{"action": "url", "label": "Menu", "value": "ftp://x"}]}, "http(s) URL"),
    ],
)
def test_what_exceeds_messenger_limits_degrades_to_text_with_the_reason(payload, reason):
    body, degraded = messenger(payload, text="the text form")
    assert body["message"] == {"text": "the text form"}
    assert reason in degraded and degraded.endswith("sent as text")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"type": "location", "latitude": 1.0, "longitude": 2.0}, "location has no rich form"),
        ({"type": "bloc", "items": [{"type": "text", "text": "a"}]}, "bloc has no rich form"),
        ({"type": "choice", "text": "x", "options": []}, "choice without options"),
        ({"type": "card", "title": "x", "actions": [{"action": "teleport", "label": "a", "value": "b"}]}, "unknown action"),
        ({"type": "image", "imageUrl": "data:image/png;base64,AAAA"}, "image without an http(s) URL"),
    ],
)
def test_shapes_without_a_rich_form_stay_text_with_the_reason(payload, reason):
    body, degraded = messenger(payload, text="the text form")
    assert body["message"] == {"text": "the text form"} and reason in degraded


def test_plain_text_and_markdown_are_text_without_a_degradation():
    assert reply_content({"type": "text", "text": "hi"}) == (None, "")
    assert reply_content({"type": "markdown", "markdown": "**hi**"}) == (None, "")
    assert messenger({"type": "text", "text": "hi"}, text="hi") == (
        {"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": {"text": "hi"}},
        "",
    )


def test_a_bot_reply_keeps_its_text_form_beside_its_content():
    from datetime import UTC, datetime

    reply = bot_reply(ChatMessage("msg_1", datetime.now(UTC), "bot", "conv", CHOICE))
    assert reply.text == "Which size?\n- Small\n- Large"
    assert reply.content["type"] == "choice" and reply.degraded == ""


def test_a_typing_indicator_is_a_sender_action_without_a_message():
    assert sender_action_message(PSID, "typing_on") == {"recipient": {"id": PSID}, "sender_action": "typing_on"}
    with pytest.raises(InvalidOutbound):
        sender_action_message(PSID, "dancing")


def _webhook(event):
    return {"object": "page", "entry": [{"id": "page-1", "time": 1, "messaging": [
        {"sender": {"id": PSID}, "recipient": {"id": "page-1"}, "timestamp": 1700000000000, **event}
    ]}]}  # fmt: skip


def test_a_tapped_quick_reply_reaches_the_bot_as_the_chosen_value_with_its_title_as_text():
    [item] = parse_webhook(_webhook({"message": {"mid": "m1", "text": "Small", "quick_reply": {"payload": "SIZE_S"}}}))
    assert (item.text, item.choice) == ("Small", "SIZE_S")
    body = create_message_body("conv-1", item.text, choice=item.choice)
    assert body["payload"] == {"type": "text", "text": "Small", "value": "SIZE_S"}


def test_a_tapped_button_postback_reaches_the_bot_as_the_chosen_value():
    [item] = parse_webhook(_webhook({"postback": {"mid": "m2", "title": "Order", "payload": "ORDER_M"}}))
    assert (item.title, item.choice) == ("Order", "ORDER_M")
    assert create_message_body("conv-1", item.title, choice=item.choice)["payload"]["value"] == "ORDER_M"


def test_typed_text_carries_no_choice():
    [item] = parse_webhook(_webhook({"message": {"mid": "m3", "text": "hello"}}))
    assert item.choice == ""
    assert create_message_body("conv-1", "hello")["payload"] == {"type": "text", "text": "hello"}


@pytest.mark.parametrize(
    "content",
    [
        {"type": "choice", "text": 5, "options": "x"},
        {"type": "cards", "cards": [None]},
        {"type": "cards", "cards": 7},
        {"type": "choice", "text": "hi", "options": [{"title": None}]},
        {"type": "cards", "cards": [{"title": 3}]},
    ],
)
def test_content_that_is_an_object_but_not_of_its_shape_goes_out_as_text_with_the_reason(content):
    body, degraded = rich_message(PSID, "the reply's text", content)
    assert body["message"] == {"text": "the reply's text"}
    assert degraded.startswith("malformed content (") and degraded.endswith("sent as text")
