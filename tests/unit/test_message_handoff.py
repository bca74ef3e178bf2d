"""The handoff to people, as given / when / then over the Conversation aggregate:
a conversation the people hold (awaiting an agent, or taken by one) sends its
messages to the agents instead of the bot (rule HeldByAgent), routing to a human
inbox app puts it in the agents' queue, agents take it and hand it back, and the
read model follows. No broker."""

from __future__ import annotations

import uuid

from hubs.message.aggregate import Conversation
from hubs.message.commands import CloseConversation, HandBackToBot, RequestAgent, TakeConversation
from hubs.message.hub import HUB
from hubs.message.routing import HELD_BY_AGENT, RULES
from projections.message.mapping import apply
from tests.unit.given_when_then import events_of, given, happened, then_rejected
from tests.unit.test_message_routing_records import APP, AT, PAGE, TENANT, Talk, when

AGENT_ID = "5a0e7c1e-1111-4c4c-9d9d-0123456789ab"
OTHER_AGENT = "6b1f8d2f-2222-4d4d-8e8e-0123456789ab"


def take(talk: Talk, agent: str = AGENT_ID) -> TakeConversation:
    return TakeConversation(talk.meta(), agent_id=agent)


def hand_back(talk: Talk, reason: str = "solved") -> HandBackToBot:
    return HandBackToBot(talk.meta(), reason=reason)


def taken(agent: str = AGENT_ID, previous: str = "bot"):
    return happened(Conversation.ConversationTaken, agent_id=agent, previous_handler=previous)


def requested(reason: str = "the bot asked for a person", message_id: str = ""):
    return happened(Conversation.AgentRequested, reason=reason, message_id=message_id)


def handed_back(agent: str = AGENT_ID, reason: str = "solved", talk: Talk | None = None):
    where = {"channel": "facebook", "channel_account_id": PAGE, "contact_id": talk.contact if talk else "psid-1"}
    return happened(Conversation.ConversationHandedBack, agent_id=agent, reason=reason, **where)


def test_a_conversation_the_bot_handles_is_taken_by_an_agent_and_handed_back():
    talk = Talk()
    conversation = given(talk.started(), talk.routed("mid.1", 1))
    assert conversation.handled_by() == ("bot", "")

    decision = when(conversation, take(talk))
    assert events_of(HUB, decision) == [("ConversationTaken", {"agent_id": AGENT_ID, "previous_handler": "bot"})]
    assert decision.aggregate.handled_by() == ("agent", AGENT_ID)

    back = when(decision.aggregate, hand_back(talk))
    assert events_of(HUB, back) == [
        ("ConversationHandedBack", {"agent_id": AGENT_ID, "reason": "solved", "channel": "facebook",
                                    "channel_account_id": PAGE, "contact_id": talk.contact}),
    ]  # fmt: skip
    assert back.aggregate.handled_by() == ("bot", "")


def test_a_message_routed_to_the_bot_goes_to_the_people_while_an_agent_holds_the_conversation():
    talk = Talk()
    conversation = given(talk.started(), talk.routed("mid.1", 1), taken())

    decision = when(conversation, talk.route("mid.2"))

    names = [name for name, _ in events_of(HUB, decision)]
    assert names == ["InboundMessageRecorded", "MessageRouted"]
    routed = events_of(HUB, decision)[1][1]
    assert (routed["spoke"], routed["rule"], routed["app_id"]) == ("agent", HELD_BY_AGENT, APP)
    assert f"agent {AGENT_ID} took the conversation" in routed["reason"]
    assert routed["reason"].endswith("bot app passed its guards")  # the router's own reason is kept
    assert routed["facts"]["handled_by"] == "agent"
    assert HELD_BY_AGENT in RULES


def test_a_conversation_awaiting_an_agent_does_not_ask_the_bot_and_after_hand_back_the_bot_answers_again():
    talk = Talk()
    waiting = given(talk.started(), talk.routed("mid.1", 1), requested())

    held = events_of(HUB, when(waiting, talk.route("mid.2")))[1][1]
    assert (held["spoke"], held["rule"]) == ("agent", HELD_BY_AGENT) and "awaits an agent" in held["reason"]

    back = given(talk.started(), talk.routed("mid.1", 1), requested(), handed_back(agent=""))
    again = events_of(HUB, when(back, talk.route("mid.2")))[1][1]
    assert (again["spoke"], again["rule"]) == ("botpress", "Routed") and "handled_by" not in again["facts"]


def test_routing_to_an_app_answered_by_people_puts_the_conversation_in_the_agents_queue_once():
    talk = Talk()
    conversation = given(talk.started(), talk.routed("mid.1", 1))

    decision = when(conversation, talk.route("mid.2", spoke="agent", reason="app passed its guards; agent acts next"))
    assert [name for name, _ in events_of(HUB, decision)] == ["InboundMessageRecorded", "MessageRouted", "AgentRequested"]
    request = events_of(HUB, decision)[2][1]
    assert request["message_id"] == "mid.2" and APP in request["reason"]
    assert decision.aggregate.handled_by() == ("awaiting_agent", "")

    # The next message to that inbox finds it queued already: no second request.
    following = when(decision.aggregate, talk.route("mid.3", spoke="agent", reason="app passed its guards; agent acts next"))
    assert [name for name, _ in events_of(HUB, following)] == ["InboundMessageRecorded", "MessageRouted"]
    assert events_of(HUB, following)[1][1]["rule"] == "Routed"


def test_an_agent_takes_a_conversation_from_the_queue_and_taking_it_again_changes_nothing():
    talk = Talk()
    waiting = given(talk.started(), talk.routed("mid.1", 1), requested())

    decision = when(waiting, take(talk))
    assert events_of(HUB, decision) == [("ConversationTaken", {"agent_id": AGENT_ID, "previous_handler": "awaiting_agent"})]
    again = when(decision.aggregate, take(talk))
    assert again.accepted and again.events == []


def test_a_conversation_another_agent_holds_cannot_be_taken_and_requests_are_refused_while_people_have_it():
    talk = Talk()
    held = given(talk.started(), talk.routed("mid.1", 1), taken())

    then_rejected(when(held, take(talk, OTHER_AGENT)), "HeldByAnotherAgent", AGENT_ID, "hand it back")
    then_rejected(when(held, RequestAgent(talk.meta(), reason="again")), "NotWithBot", f"held by agent {AGENT_ID}")
    waiting = given(talk.started(), talk.routed("mid.1", 1), requested())
    then_rejected(when(waiting, RequestAgent(talk.meta(), reason="again")), "NotWithBot", "already awaits an agent")


def test_handing_back_a_conversation_the_bot_has_is_refused_and_requests_need_a_reason():
    talk = Talk()
    conversation = given(talk.started(), talk.routed("mid.1", 1))

    then_rejected(when(conversation, hand_back(talk)), "NotWithAgent", "bot already handles")
    then_rejected(when(conversation, RequestAgent(talk.meta(), reason=" ")), "InvalidCommand", "reason is required")
    asked = when(conversation, RequestAgent(talk.meta(), reason="customer asked for a human"))
    assert events_of(HUB, asked) == [("AgentRequested", {"reason": "customer asked for a human", "message_id": ""})]


def test_malformed_agent_ids_and_closed_conversations_cannot_be_taken():
    talk = Talk()
    conversation = given(talk.started(), talk.routed("mid.1", 1))
    for bad in ("", "has space", "x" * 201):
        then_rejected(when(conversation, take(talk, bad)), "InvalidCommand", "agent_id")
    then_rejected(when(given(talk.started(), talk.closed()), take(talk)), "ConversationClosed")


def test_closing_a_conversation_the_people_hold_hands_it_back_first():
    talk = Talk()
    held = given(talk.started(), talk.routed("mid.1", 1), taken())

    decision = when(held, CloseConversation(talk.meta(), reason="resolved"))
    assert [name for name, _ in events_of(HUB, decision)] == ["ConversationHandedBack", "ConversationClosed"]
    assert decision.aggregate.handled_by() == ("bot", "")


def test_a_conversation_restored_without_the_handoff_attributes_is_handled_by_the_bot():
    talk = Talk()
    conversation = given(talk.started(), talk.routed("mid.1", 1))
    del conversation.__dict__["handler"], conversation.__dict__["agent_id"]  # as a snapshot from before the handoff

    assert conversation.handled_by() == ("bot", "")
    assert events_of(HUB, when(conversation, talk.route("mid.2")))[1][1]["spoke"] == "botpress"


def test_the_read_model_shows_who_handles_each_conversation():
    talk = Talk()
    decision = when(given(talk.started(), talk.routed("mid.1", 1)), take(talk))
    [(name, payload)] = events_of(HUB, decision)
    envelope = {"tenant_id": TENANT, "aggregate_id": talk.id, "aggregate_version": 4, "occurred_at": AT,
                "event_id": str(uuid.uuid4()), "correlation_id": "c"}  # fmt: skip

    [statement] = apply(f"poseidon.message.{name}", {"envelope": envelope, **payload})
    assert "handled_by" in statement.sql and "agent" in statement.args and AGENT_ID in statement.args
    back_record = {"envelope": envelope, "agent_id": AGENT_ID, "reason": "", "channel": "facebook", "channel_account_id": PAGE,
                   "contact_id": talk.contact}  # fmt: skip
    [back] = apply("poseidon.message.ConversationHandedBack", back_record)
    assert "bot" in back.args and AGENT_ID not in back.args
    [queued] = apply("poseidon.message.AgentRequested", {"envelope": envelope, "reason": "r", "message_id": ""})
    assert "awaiting_agent" in queued.args
