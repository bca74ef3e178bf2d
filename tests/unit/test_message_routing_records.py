"""How the conversation records the router's work, as given / when / then over
`infra.hub.decide`: an inbound message with its routing decision in one step
(RouteMessage), re-deliveries refused before any second decision, platform
receipts moving outbound messages through the delivery state machine, the
outbound event carrying what a channel spoke needs; and the read model's
statements for the new events. No broker."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from hubs.message.aggregate import MESSAGE_WINDOW, NEVER, Conversation, conversation_id
from hubs.message.commands import (
    CloseConversation,
    RecordDeliveryReceipt,
    RecordOutboundMessage,
    RouteMessage,
    UpdateDeliveryStatus,
)
from hubs.message.hub import HUB
from infra.hub import Decision, SnapshotCodec, event_payload
from projections.message.mapping import CONVERSATION, MESSAGE, MESSAGE_UPDATED, ROUTING, apply
from schemas.codec import Catalog, Codec
from schemas.contracts import CommandMeta
from tests.unit.given_when_then import Fact, Hub, events_of, given, happened, schema_fields, then_rejected

CODEC = Codec(Catalog.load())
TENANT = "acme"
PAGE = "104857600123"
APP = "7b1f3c2a-9d4e-4f5a-8b6c-1d2e3f4a5b6c"
SECRET = "my card number is 4111 1111"
AT = datetime(2026, 3, 1, 12, 30, 15, 123000, tzinfo=UTC)
LINK = {"type": "image", "url": "https://scontent.xx.fbcdn.net/v/t1/123.jpg?oh=abc&oe=def"}


class Talk:
    """Commands of one conversation, so a test reads as a list of verbs."""

    def __init__(self, tenant: str = TENANT, contact: str | None = None):
        self.tenant, self.contact = tenant, contact or f"psid-{uuid.uuid4().hex[:8]}"
        self.id = conversation_id(tenant, "facebook", PAGE, self.contact)

    def meta(self, issued_at: datetime | None = None, aggregate_id: str | None = None) -> CommandMeta:
        command_id = str(uuid.uuid4())
        extra = {"issued_at": issued_at} if issued_at else {}
        return CommandMeta(
            command_id, aggregate_id or self.id, self.tenant, f"corr-{command_id}", command_id, "message-router", **extra
        )

    def route(self, message_id: str, text: str = "where is my order?", *, routed: bool = True, **fields) -> RouteMessage:
        decision = (
            {"rule": "Routed", "reason": "bot app passed its guards", "app_id": APP, "spoke": "botpress"}
            if routed
            else {"rule": "NoActiveSubscription", "reason": "tenant acme has no active app subscription"}
        )
        values = {
            "channel": "facebook", "channel_account_id": PAGE, "contact_id": self.contact, "message_id": message_id,
            "text": text, "received_at": AT, "routed": routed, **decision, "facts": {"tenant": self.tenant}, **fields,
        }  # fmt: skip
        aggregate_id = values.pop("aggregate_id", None)
        return RouteMessage(self.meta(aggregate_id=aggregate_id), **values)

    def reply(self, message_id: str, text: str = "we are on it") -> RecordOutboundMessage:
        return RecordOutboundMessage(self.meta(), message_id=message_id, text=text)

    def sent(self, message_id: str, at: datetime, platform_message_id: str = "") -> UpdateDeliveryStatus:
        return UpdateDeliveryStatus(self.meta(at), message_id=message_id, status="sent", platform_message_id=platform_message_id)

    def status(self, message_id: str, status: str, reason: str = "", platform_message_id: str = "") -> UpdateDeliveryStatus:
        return UpdateDeliveryStatus(self.meta(), message_id, status, reason, platform_message_id)

    def receipt(self, receipt: str, watermark: datetime = NEVER, mids=(), issued_at: datetime | None = None):
        return RecordDeliveryReceipt(self.meta(issued_at), receipt=receipt, watermark=watermark, platform_message_ids=list(mids))

    def close(self) -> CloseConversation:
        return CloseConversation(self.meta(), reason="resolved")

    # -- what happened in the conversation, for `given` (sequence: the message's number in it) --

    def started(self) -> Fact:
        return happened(
            Conversation.ConversationStarted,
            conversation_id=self.id,
            tenant_id=self.tenant,
            channel="facebook",
            channel_account_id=PAGE,
            contact_id=self.contact,
        )

    def routed(self, message_id: str, sequence: int, text: str = "where is my order?", received_at=AT) -> list[Fact]:
        """The inbound message and the router's decision to route it, as `route` records them."""
        return [
            happened(
                Conversation.InboundMessageRecorded,
                message_id=message_id,
                sequence=sequence,
                text=text,
                attachments=[],
                received_at=received_at,
            ),
            happened(
                Conversation.MessageRouted,
                message_id=message_id,
                app_id=APP,
                spoke="botpress",
                rule="Routed",
                reason="bot app passed its guards",
                channel="facebook",
                channel_account_id=PAGE,
                contact_id=self.contact,
                text=text,
                attachments=[],
                received_at=received_at,
                facts={"tenant": self.tenant},
                choice="",
            ),
        ]

    def replied(self, message_id: str, sequence: int, text: str = "we are on it", last_inbound_at=AT) -> Fact:
        """OutboundMessageRecorded; `last_inbound_at`: the received_at of the contact's last message."""
        return happened(
            Conversation.OutboundMessageRecorded,
            message_id=message_id, sequence=sequence, text=text, in_reply_to="",
            channel="facebook", channel_account_id=PAGE, contact_id=self.contact, last_inbound_at=last_inbound_at, content="",
        )  # fmt: skip

    def moved(
        self, message_id: str, status: str, previous: str, at: datetime, reason: str = "", platform_message_id: str = ""
    ) -> Fact:
        """DeliveryStatusUpdated from `previous` to `status` at `at` (a receipt's reason: "<kind> receipt")."""
        return happened(
            Conversation.DeliveryStatusUpdated,
            message_id=message_id,
            status=status,
            previous_status=previous,
            reason=reason,
            platform_message_id=platform_message_id,
            status_at=at,
        )

    def reported_sent(self, message_id: str, at: datetime, platform_message_id: str = "") -> Fact:
        return self.moved(message_id, "sent", "queued", at, platform_message_id=platform_message_id)

    def closed(self) -> Fact:
        return happened(Conversation.ConversationClosed, reason="resolved")


when = Hub(HUB).when


# -- RouteMessage: the message and its decision in one step ---------------------------------


def test_the_first_message_of_a_contact_starts_the_conversation_records_it_and_the_routing_decision():
    talk = Talk()

    decision = when(None, talk.route("mid.1", attachments=[LINK]))

    assert [name for name, _ in events_of(HUB, decision)] == ["ConversationStarted", "InboundMessageRecorded", "MessageRouted"]
    _, inbound = events_of(HUB, decision)[1]
    assert inbound["attachments"] == [{"kind": "image", "key": "", "url": LINK["url"], "content_type": "", "size_bytes": 0}]
    assert (inbound["message_id"], inbound["sequence"], inbound["received_at"]) == ("mid.1", 1, AT)
    _, routed = events_of(HUB, decision)[2]
    assert routed == {
        "message_id": "mid.1", "app_id": APP, "spoke": "botpress", "rule": "Routed", "reason": "bot app passed its guards",
        "channel": "facebook", "channel_account_id": PAGE, "contact_id": talk.contact, "text": "where is my order?",
        "attachments": [LINK], "received_at": AT, "facts": {"tenant": TENANT}, "choice": "",
    }  # fmt: skip
    assert decision.aggregate.recent == {"mid.1": "received"} and decision.aggregate.last_inbound_at == AT


def test_a_rejected_decision_records_the_message_and_message_rejected_naming_the_rule():
    talk = Talk()

    decision = when(given(talk.started(), talk.routed("mid.1", 1)), talk.route("mid.2", routed=False))

    assert events_of(HUB, decision) == [
        ("InboundMessageRecorded", {"message_id": "mid.2", "sequence": 2, "text": "where is my order?", "attachments": [],
                                    "received_at": AT}),
        ("MessageRejected", {"message_id": "mid.2", "rule": "NoActiveSubscription",
                             "reason": "tenant acme has no active app subscription", "facts": {"tenant": TENANT}}),
    ]  # fmt: skip


def test_a_redelivered_message_is_refused_as_a_duplicate_and_no_second_decision_is_recorded():
    talk = Talk()
    conversation = given(talk.started(), talk.routed("mid.1", 1))

    for redelivery in (talk.route("mid.1"), talk.route("mid.1", routed=False), talk.route("mid.1", text="edited")):
        then_rejected(when(conversation, redelivery), "DuplicateMessage")
    assert conversation.version == 3 and conversation.message_count == 1


def test_a_message_on_a_closed_conversation_reopens_it_before_it_is_recorded_and_decided():
    talk = Talk()
    conversation = given(talk.started(), talk.routed("mid.1", 1), talk.closed())

    decision = when(conversation, talk.route("mid.2"))

    assert [name for name, _ in events_of(HUB, decision)] == ["ConversationReopened", "InboundMessageRecorded", "MessageRouted"]


def test_route_message_needs_the_canonical_conversation_id_of_its_tenant():
    talk = Talk()
    other_tenants = conversation_id("globex", "facebook", PAGE, talk.contact)

    then_rejected(when(None, talk.route("mid.1", aggregate_id=other_tenants)), "InvalidCommand")
    then_rejected(when(None, talk.route("mid.1", aggregate_id=str(uuid.uuid4()))), "InvalidCommand")


def test_an_unknown_accounts_message_is_kept_in_a_conversation_of_the_platform_tenant():
    talk = Talk(tenant="platform")

    decision = when(None, talk.route("mid.1", routed=False, rule="UnknownChannelAccount", reason="no tenant connected it"))

    assert decision.aggregate.tenant_id == "platform"
    assert [name for name, _ in events_of(HUB, decision)][-1] == "MessageRejected"


@pytest.mark.parametrize(
    "fields",
    [
        {"rule": ""},
        {"rule": "routed"},
        {"rule": "Guards Refused"},
        {"reason": ""},
        {"reason": "   "},
        {"reason": "x" * 501},
        {"app_id": ""},
        {"app_id": "not-a-uuid"},
        {"app_id": APP.upper()},
        {"spoke": ""},
        {"spoke": "Botpress"},
        {"facts": {"Tenant": "acme"}},
        {"facts": {"tenant": 7}},
        {"facts": {"tenant": "x" * 501}},
        {"facts": {f"f{i}": "v" for i in range(51)}},
    ],
    ids=lambda f: ",".join(f"{k}={str(v)[:12]}" for k, v in f.items()),
)
def test_a_routed_decision_that_does_not_explain_itself_or_names_no_app_and_spoke_is_invalid(fields):
    then_rejected(when(None, Talk().route("mid.1", **fields)), "InvalidCommand")


@pytest.mark.parametrize("fields", [{"app_id": APP}, {"spoke": "botpress"}])
def test_a_rejected_decision_goes_to_no_app_and_no_spoke(fields):
    then_rejected(when(None, Talk().route("mid.1", routed=False, **fields)), "InvalidCommand")


@pytest.mark.parametrize(
    "attachments",
    [
        [{"type": "image", "url": "ftp://example/1.jpg"}],
        [{"type": "image", "url": "https://example/has space.jpg"}],
        [{"type": "Image", "url": "https://example/1.jpg"}],
        [{"type": "image", "url": "https://example/1.jpg", "bytes": "AAAA"}],
        [{"type": "image", "url": "https://e/" + "x" * 2000}],
        [LINK] * 21,
        ["https://example/1.jpg"],
        {"type": "image"},
    ],
    ids=["ftp", "space", "upper-type", "bytes", "long-url", "21", "not-a-record", "not-a-list"],
)
def test_attachments_are_a_type_and_an_http_url_never_anything_else(attachments):
    then_rejected(when(None, Talk().route("mid.1", attachments=attachments)), "InvalidCommand")


def test_an_attachment_without_url_is_kept_and_stands_for_the_text():
    decision = when(None, Talk().route("mid.1", text="", attachments=[{"type": "location", "url": ""}]))

    assert decision.accepted
    then_rejected(when(None, Talk().route("mid.1", text="")), "InvalidCommand")


def _wrongly_typed_route_fields():
    sample = Talk(contact="psid-typed").route("mid.1")
    for name in sample.payload():
        for bad in (None, 7, b"bytes", ["list"]):
            if name == "attachments" and bad == ["list"]:
                continue  # a list of the wrong records: covered above
            yield pytest.param(sample, name, bad, id=f"{name}-{type(bad).__name__}")


@pytest.mark.parametrize(("command", "field_name", "bad"), list(_wrongly_typed_route_fields()))
def test_a_route_message_field_of_the_wrong_type_is_refused_as_invalid_never_a_crash(command, field_name, bad):
    then_rejected(when(None, replace(command, **{field_name: bad})), "InvalidCommand")


def test_no_rejection_of_a_route_message_repeats_the_message_text():
    talk = Talk()
    for command in (
        talk.route("bad id", text=SECRET),
        talk.route("mid.1", text=SECRET * 1000),
        talk.route("mid.1", text=SECRET, reason=""),
    ):
        decision = when(None, command)
        assert not decision.accepted and "4111" not in str(decision.rejection)


# -- what an outbound message tells the channel spoke -----------------------------------------


def test_an_outbound_message_carries_the_channel_account_contact_and_the_contacts_last_message_time():
    talk = Talk()
    later = AT + timedelta(hours=3)
    conversation = given(talk.started(), talk.routed("mid.1", 1), talk.routed("mid.2", 2, received_at=later))

    [(name, payload)] = events_of(HUB, when(conversation, talk.reply("out-1")))

    assert name == "OutboundMessageRecorded"
    assert {k: payload[k] for k in ("channel", "channel_account_id", "contact_id", "last_inbound_at")} == {
        "channel": "facebook",
        "channel_account_id": PAGE,
        "contact_id": talk.contact,
        "last_inbound_at": later,
    }


def test_an_outbound_message_of_a_conversation_the_contact_never_wrote_in_has_last_inbound_at_zero():
    talk = Talk()
    [(_, payload)] = events_of(HUB, when(given(talk.started()), talk.reply("out-1")))

    assert payload["last_inbound_at"] == NEVER
    record = CODEC.decode(CODEC.encode("poseidon.message.OutboundMessageRecorded", {"envelope": _envelope(), **payload})).record
    assert record["last_inbound_at"] == datetime(1970, 1, 1, tzinfo=UTC)


def test_a_conversation_restored_from_a_snapshot_older_than_the_routing_fields_still_works():
    talk = Talk()
    conversation = given(talk.started(), talk.routed("mid.1", 1), talk.replied("out-1", 2))
    for attribute in ("last_inbound_at", "sent"):  # as snapshots written before these existed
        del conversation.__dict__[attribute]
    codec = SnapshotCodec()
    old, _ = codec.loads(codec.dumps(conversation, ""))

    [(_, payload)] = events_of(HUB, when(old, talk.reply("out-2")))
    assert payload["last_inbound_at"] == NEVER
    assert when(old, talk.sent("out-1", AT, "m_1")).accepted
    assert when(old, talk.receipt("read", AT)).accepted


# -- the platform's message id and receipts ---------------------------------------------------


def test_a_send_reported_with_the_platforms_message_id_is_remembered_with_its_time():
    talk = Talk()
    conversation = given(talk.started(), talk.routed("mid.1", 1), talk.replied("out-1", 2))
    sent_at = AT + timedelta(seconds=5)

    [(name, payload)] = events_of(HUB, when(conversation, talk.sent("out-1", sent_at, "m_AbC-1")))

    assert (name, payload["platform_message_id"], payload["status_at"], payload["previous_status"]) == (
        "DeliveryStatusUpdated",
        "m_AbC-1",
        sent_at,
        "queued",
    )
    assert conversation.sent == {"out-1": ["m_AbC-1", int(sent_at.timestamp() * 1000)]}


@pytest.mark.parametrize("status", ["delivered", "read", "failed", "queued"])
def test_the_platforms_message_id_comes_with_a_send_only(status):
    talk = Talk()
    conversation = given(talk.started(), talk.routed("mid.1", 1), talk.replied("out-1", 2))

    then_rejected(when(conversation, talk.status("out-1", status, reason="x", platform_message_id="m_1")), "InvalidCommand")


def sent_conversation(talk: Talk, *sends: tuple[str, datetime, str]) -> Conversation:
    """After the contact's `mid.1`, each of `sends` (message id, sent at, platform id) recorded and reported sent."""
    return given(
        talk.started(),
        talk.routed("mid.1", 1),
        [
            (talk.replied(message_id, sequence), talk.reported_sent(message_id, at, mid))
            for sequence, (message_id, at, mid) in enumerate(sends, 2)
        ],
    )


def moves(decision: Decision) -> list[tuple[str, str, str]]:
    return [(p["message_id"], p["previous_status"], p["status"]) for _, p in events_of(HUB, decision)]


def test_a_delivery_receipt_delivers_the_messages_it_names_by_the_platforms_id():
    talk = Talk()
    conversation = sent_conversation(talk, ("out-1", AT, "m_1"), ("out-2", AT, "m_2"), ("out-3", AT, "m_3"))

    decision = when(conversation, talk.receipt("delivery", mids=["m_1", "m_3", "m_unknown"]))

    assert moves(decision) == [("out-1", "sent", "delivered"), ("out-3", "sent", "delivered")]
    assert all(p["reason"] == "delivery receipt" for _, p in events_of(HUB, decision))


def test_a_delivery_watermark_delivers_what_was_sent_at_or_before_it_and_nothing_later():
    talk = Talk()
    conversation = sent_conversation(
        talk, ("out-1", AT, "m_1"), ("out-2", AT + timedelta(seconds=10), "m_2"), ("out-3", AT + timedelta(seconds=11), "")
    )

    decision = when(conversation, talk.receipt("delivery", watermark=AT + timedelta(seconds=10)))

    assert moves(decision) == [("out-1", "sent", "delivered"), ("out-2", "sent", "delivered")]
    assert [p["status_at"] for _, p in events_of(HUB, decision)] == [AT + timedelta(seconds=10)] * 2


def test_a_read_receipt_reads_every_sent_or_delivered_message_up_to_its_watermark():
    talk = Talk()
    conversation = sent_conversation(
        talk, ("out-1", AT, "m_1"), ("out-2", AT, "m_2"), ("out-3", AT + timedelta(minutes=1), "m_3")
    )
    conversation = given(talk.moved("out-1", "delivered", "sent", AT, reason="delivery receipt"), on=conversation)

    decision = when(conversation, talk.receipt("read", watermark=AT + timedelta(seconds=1)))

    assert moves(decision) == [("out-1", "delivered", "read"), ("out-2", "sent", "read")]


def test_receipts_never_touch_inbound_queued_failed_or_already_read_messages():
    talk = Talk()
    conversation = sent_conversation(talk, ("out-read", AT, "m_r"), ("out-failed", AT, "m_f"))
    conversation = given(
        talk.moved("out-failed", "failed", "sent", AT, reason="(#10) outside the messaging window"),
        talk.moved("out-read", "read", "sent", AT, reason="read receipt"),
        talk.replied("out-queued", 4),
        on=conversation,
    )
    late = AT + timedelta(days=1)

    for receipt in (talk.receipt("read", watermark=late), talk.receipt("delivery", late, ["m_r", "m_f", "mid.1", "out-queued"])):
        decision = when(conversation, receipt)
        assert decision.accepted and decision.events == [], moves(decision)
    assert conversation.recent == {"mid.1": "received", "out-read": "read", "out-failed": "failed", "out-queued": "queued"}


def test_a_repeated_receipt_is_accepted_and_changes_nothing():
    talk = Talk()
    conversation = given(
        talk.moved("out-1", "delivered", "sent", AT, reason="delivery receipt"), on=sent_conversation(talk, ("out-1", AT, "m_1"))
    )

    decision = when(conversation, talk.receipt("delivery", mids=["m_1"]))

    assert decision.accepted and decision.events == [] and decision.aggregate.version == conversation.version


def test_a_message_reported_sent_after_the_receipt_was_taken_waits_for_the_next_receipt():
    # Never claim more than is known: the platform's watermark is its own clock,
    # the sent time is ours, and ours comes after the platform accepted the message.
    talk = Talk()
    conversation = sent_conversation(talk, ("out-1", AT + timedelta(milliseconds=80), "m_1"))

    assert when(conversation, talk.receipt("read", watermark=AT + timedelta(milliseconds=50))).events == []
    assert moves(when(conversation, talk.receipt("read", watermark=AT + timedelta(seconds=2)))) == [("out-1", "sent", "read")]


@pytest.mark.parametrize(
    "receipt",
    [
        lambda t: t.receipt("seen", AT),
        lambda t: t.receipt("read", AT, ["m_1"]),
        lambda t: t.receipt("delivery", AT, [f"m_{i}" for i in range(101)]),
        lambda t: t.receipt("delivery", AT, ["has space"]),
        lambda t: t.receipt("delivery", datetime(2026, 3, 1)),
        lambda t: replace(t.receipt("delivery", AT), platform_message_ids=None),
        lambda t: replace(t.receipt("delivery", AT), watermark=7),
        lambda t: replace(t.receipt("delivery", AT), receipt=None),
    ],
    ids=["unknown-kind", "read-with-ids", "101-ids", "bad-id", "naive-watermark", "ids-none", "watermark-int", "kind-none"],
)
def test_a_malformed_receipt_is_refused_as_invalid(receipt):
    talk = Talk()

    then_rejected(when(sent_conversation(talk, ("out-1", AT, "m_1")), receipt(talk)), "InvalidCommand")


def test_a_forgotten_message_leaves_the_sent_record_with_it():
    talk = Talk()
    conversation = sent_conversation(talk, ("out-0", AT, "m_0"))

    conversation = given([talk.routed(f"mid.{i}", i + 1) for i in range(2, MESSAGE_WINDOW + 3)], on=conversation)

    assert "out-0" not in conversation.recent and conversation.sent == {}


# -- the read model ---------------------------------------------------------------------------


def _envelope(aggregate_id: str = str(uuid.UUID(int=1)), version: int = 1, event_type: str = "") -> dict:
    return {
        "event_id": str(uuid.uuid4()), "event_type": event_type, "aggregate_id": aggregate_id, "aggregate_version": version,
        "tenant_id": TENANT, "correlation_id": "c", "causation_id": "c", "occurred_at": AT, "actor": "message-router",
        "previous_hash": "",
    }  # fmt: skip


def projected(decision: Decision, aggregate_id: str) -> list[tuple[str, dict]]:
    out = []
    for event in decision.events:
        name = HUB.event_name(event)
        payload = event_payload(event, schema_fields(HUB, event))
        record = {"envelope": _envelope(aggregate_id, event.originator_version, name), **payload}
        decoded = CODEC.decode(CODEC.encode(name, record))
        out.append((decoded.name, decoded.record))
    return out


def test_the_routing_decision_lands_on_the_inbound_messages_row_with_its_facts():
    talk = Talk()
    records = projected(
        when(None, talk.route("mid.1", attachments=[LINK], facts={"tenant": TENANT, "subscriptions": "1"})), talk.id
    )

    statements = [s for name, record in records for s in apply(name, record)]

    inserted = next(s for s in statements if s.sql == MESSAGE)
    assert json.loads(inserted.args[6]) == [{"kind": "image", "key": "", "content_type": "", "size_bytes": 0, "url": LINK["url"]}]
    routing = [s for s in statements if s.sql == ROUTING]
    assert len(routing) == 1 and routing[0].phase == MESSAGE_UPDATED
    assert routing[0].args[:7] == (TENANT, uuid.UUID(talk.id), "mid.1", APP, "botpress", "Routed", "bot app passed its guards")
    assert json.loads(routing[0].args[7]) == {"subscriptions": "1", "tenant": TENANT}
    assert statements[-1].sql == CONVERSATION and statements[-1].args[5] == 3  # the conversation's version moves on


def test_a_rejection_lands_on_the_row_with_no_app_and_no_spoke():
    talk = Talk()
    records = projected(when(None, talk.route("mid.1", routed=False)), talk.id)

    [routing] = [s for name, record in records for s in apply(name, record) if s.sql == ROUTING]

    assert routing.args[3:7] == ("", "", "NoActiveSubscription", "tenant acme has no active app subscription")
