"""Rich replies end to end on the real stack (the main path's `world`): the bot answers
with choices, a card and a location; the Send API stand-in receives quick replies, a
generic template and — for the location, which has no Messenger form — text, with the
reason on the delivery step's outcome; a typing indicator arrives first; the rich
content travels through the Message hub as data; then the customer taps a quick
reply and the bot receives the choice (the option's value, its title as text)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_webhook_to_reply import APP_SECRET, PAGE, events_of, world  # noqa: F401 - `world` is the fixture
from tests.harness import eventually
from tests.standins.facebook import message_event, signed_webhook, webhook_body

pytestmark = pytest.mark.integration

SIZES = {
    "type": "choice",
    "text": "Which pizza?",
    "options": [{"label": "Margherita", "value": "PIZZA_M"}, {"label": "Diavola", "value": "PIZZA_D"}],
}
CARD = {
    "type": "card",
    "title": "Today's special",
    "subtitle": "Quattro formaggi",
    "imageUrl": "https://cdn.example/q.jpg",
    "actions": [
        {"action": "postback", "label": "Order it", "value": "PIZZA_Q"},
        {"action": "url", "label": "Menu", "value": "https://pizza.example/menu"},
    ],
}
SHOP = {"type": "location", "latitude": 45.46, "longitude": 9.19, "title": "Our shop"}


async def test_the_bots_choices_and_card_reach_messenger_and_the_tapped_quick_reply_reaches_the_bot(world):  # noqa: F811
    fb, bp, settings = world.fb, world.bp, world.settings
    bp.state.script["I want a pizza"] = [SIZES, CARD, SHOP]
    bp.state.script["PIZZA_M"] = ["Margherita it is!"]
    psid = "24000000000000777"
    fb.state.user_wrote(psid)
    body, headers = signed_webhook(webhook_body(message_event(PAGE, psid, "I want a pizza")), APP_SECRET)
    assert await world.post(body, headers) == 200

    sent = await eventually(lambda: _sent(fb, psid, 3), timeout=90)
    assert sent[0].message == {
        "text": "Which pizza?",
        "quick_replies": [
            {"content_type": "text", "title": "Margherita", "payload": "PIZZA_M"},
            {"content_type": "text", "title": "Diavola", "payload": "PIZZA_D"},
        ],
    }
    template = sent[1].message["attachment"]
    assert template["type"] == "template" and template["payload"]["template_type"] == "generic"
    [element] = template["payload"]["elements"]
    assert (element["title"], element["subtitle"], element["image_url"]) == (
        "Today's special",
        "Quattro formaggi",
        CARD["imageUrl"],
    )
    assert element["buttons"] == [
        {"type": "postback", "title": "Order it", "payload": "PIZZA_Q"},
        {"type": "web_url", "title": "Menu", "url": "https://pizza.example/menu"},
    ]
    assert sent[2].message == {"text": "Our shop (45.46, 9.19)"}  # no Messenger form: its text

    # "typing…" was shown before the first reply went out.
    typing = [at for who, action, at in fb.state.sender_actions if who == psid and action == "typing_on"]
    assert typing and typing[0] <= sent[0].at_ms

    # The content went through the Message hub as data; what degraded says why on the step's outcome.
    recorded = [
        r for n, r in await events_of(settings, "message.events") if n == "OutboundMessageRecorded" and r["contact_id"] == psid
    ]
    contents = [json.loads(r["content"]) if r["content"] else None for r in recorded]
    assert [c["type"] if c else None for c in contents] == ["choice", "cards", None]
    delivered = [
        r for n, r in await events_of(settings, "spoke.facebook.events")
        if n == "SpokeOutcome" and r["operation"] == "send_message" and r["data"].get("degraded")
    ]  # fmt: skip
    assert any("location has no rich form" in r["data"]["degraded"] for r in delivered)

    # The customer taps "Margherita": the bot gets the option's value, the history its title.
    tap = message_event(PAGE, psid, "Margherita", quick_reply_payload="PIZZA_M")
    body, headers = signed_webhook(webhook_body(tap), APP_SECRET)
    assert await world.post(body, headers) == 200
    answered = await eventually(lambda: _sent(fb, psid, 4), timeout=90)
    assert answered[3].message == {"text": "Margherita it is!"}
    asked = [r.body["payload"] for r in bp.state.calls("createMessage")]
    assert {"type": "text", "text": "Margherita", "value": "PIZZA_M"} in asked


async def _sent(fb, psid: str, count: int):
    sent = fb.state.sent_to(psid)
    return sent if len(sent) >= count else None
