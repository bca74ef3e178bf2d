"""The conversation's business rules as given / when / then over `infra.hub.decide`,
the same pure step the aggregate processor runs: canonical ids, duplicate message
ids, the delivery state machine through the aggregate, open/closed, the bounded
message window, and rejections that never carry message text. No broker."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime

import pytest

from hubs.message.aggregate import MAX_ATTACHMENTS, MAX_TEXT, MESSAGE_WINDOW, NEVER, Conversation, conversation_id
from hubs.message.commands import (
    CloseConversation,
    HandBackToBot,
    RecordDeliveryReceipt,
    RecordInboundMessage,
    RecordOutboundMessage,
    RequestAgent,
    RouteMessage,
    StartConversation,
    TakeConversation,
    UpdateDeliveryStatus,
)
from hubs.message.delivery import STATUSES
from hubs.message.hub import HUB
from infra.hub import SnapshotCodec, command_from_record, command_to_record
from schemas.codec import Catalog, Codec
from schemas.contracts import CommandMeta
from tests.unit.given_when_then import Fact, Hub, event_names, given, happened, only_event, then_rejected

TENANT = "tenant-a"
OTHER_TENANT = "tenant-b"
SECRET = "my card number is 4111 1111"
AT = datetime(2026, 3, 1, 12, 30, 15, 123000, tzinfo=UTC)


def meta(aggregate_id: str, *, tenant: str = TENANT, expected_version: int | None = None) -> CommandMeta:
    command_id = str(uuid.uuid4())
    return CommandMeta(
        command_id=command_id,
        aggregate_id=aggregate_id,
        tenant_id=tenant,
        correlation_id=command_id,
        causation_id=command_id,
        actor="test",
        expected_version=expected_version,
    )


class Story:
    """Builds commands for one conversation, so a test reads as a list of verbs."""

    def __init__(self, channel: str = "facebook", account: str = "page-1", contact: str | None = None, tenant: str = TENANT):
        self.channel, self.account, self.contact = channel, account, contact or f"psid-{uuid.uuid4().hex[:8]}"
        self.tenant = tenant
        self.id = conversation_id(tenant, self.channel, self.account, self.contact)

    def start(self, aggregate_id: str | None = None, **m) -> StartConversation:
        return StartConversation(meta(aggregate_id or self.id, **m), self.channel, self.account, self.contact)

    def inbound(self, message_id: str, text: str = "hello", attachments=(), received_at=AT, **m) -> RecordInboundMessage:
        return RecordInboundMessage(
            meta(self.id, **m), message_id=message_id, text=text, received_at=received_at, attachments=list(attachments)
        )

    def outbound(self, message_id: str, text: str = "hi, how can we help?", in_reply_to: str = "", **m) -> RecordOutboundMessage:
        return RecordOutboundMessage(meta(self.id, **m), message_id=message_id, text=text, in_reply_to=in_reply_to)

    def status(self, message_id: str, status: str, reason: str = "", **m) -> UpdateDeliveryStatus:
        return UpdateDeliveryStatus(meta(self.id, **m), message_id=message_id, status=status, reason=reason)

    def close(self, reason: str = "", **m) -> CloseConversation:
        return CloseConversation(meta(self.id, **m), reason=reason)

    # -- what happened in the conversation, for `given` (sequence: the message's number in it) --

    def started(self) -> Fact:
        return happened(
            Conversation.ConversationStarted,
            conversation_id=self.id,
            tenant_id=self.tenant,
            channel=self.channel,
            channel_account_id=self.account,
            contact_id=self.contact,
        )

    def inbound_recorded(self, message_id: str, sequence: int, text: str = "hello", received_at=AT) -> Fact:
        return happened(
            Conversation.InboundMessageRecorded,
            message_id=message_id,
            sequence=sequence,
            text=text,
            attachments=[],
            received_at=received_at,
        )

    def outbound_recorded(
        self, message_id: str, sequence: int, text: str = "hi, how can we help?", last_inbound_at=NEVER
    ) -> Fact:
        """OutboundMessageRecorded; `last_inbound_at`: the received_at of the contact's last message."""
        return happened(
            Conversation.OutboundMessageRecorded,
            message_id=message_id,
            sequence=sequence,
            text=text,
            in_reply_to="",
            channel=self.channel,
            channel_account_id=self.account,
            contact_id=self.contact,
            last_inbound_at=last_inbound_at,
            content="",
        )

    def status_updated(self, message_id: str, status: str, previous: str, reason: str = "", at=AT) -> Fact:
        return happened(
            Conversation.DeliveryStatusUpdated,
            message_id=message_id,
            status=status,
            previous_status=previous,
            reason=reason,
            platform_message_id="",
            status_at=at,
        )

    def closed(self, reason: str = "") -> Fact:
        return happened(Conversation.ConversationClosed, reason=reason)


when = Hub(HUB).when


def started(story: Story | None = None) -> tuple[Story, Conversation]:
    story = story or Story()
    return story, given(story.started())


def with_outbound_in(status: str) -> tuple[Story, Conversation]:
    """A conversation whose outbound message `out-1` is in `status`, reached by allowed moves."""
    path = {
        "queued": [],
        "sending": ["sending"],
        "sent": ["sent"],
        "delivered": ["sent", "delivered"],
        "read": ["sent", "delivered", "read"],
        "failed": ["failed"],
    }[status]
    story = Story()
    moves = [
        story.status_updated("out-1", new, previous, reason="error 551" if new == "failed" else "")
        for previous, new in itertools.pairwise(["queued", *path])
    ]
    conversation = given(story.started(), story.outbound_recorded("out-1", 1), moves)
    assert conversation.recent["out-1"] == status
    return story, conversation


# -- ids -----------------------------------------------------------------------


def test_a_conversation_id_is_the_uuid5_of_tenant_channel_account_and_contact():
    a = conversation_id(TENANT, "facebook", "page-1", "psid-1")

    assert a == str(uuid.uuid5(uuid.UUID("86ebb7cc-09fb-4f9d-8781-6db27f108fb1"), "tenant-a/facebook/page-1/psid-1"))
    assert a == conversation_id(TENANT, "facebook", "page-1", "psid-1")
    others = {
        conversation_id(OTHER_TENANT, "facebook", "page-1", "psid-1"),
        conversation_id(TENANT, "instagram", "page-1", "psid-1"),
        conversation_id(TENANT, "facebook", "page-2", "psid-1"),
        conversation_id(TENANT, "facebook", "page-1", "psid-2"),
    }
    assert a not in others and len(others) == 4


# -- starting --------------------------------------------------------------------


def test_starting_a_conversation_records_conversation_started_open_for_the_tenant():
    story = Story(contact="psid-42")

    decision = when(None, story.start())

    event = only_event(decision)
    assert HUB.event_name(event) == "poseidon.message.ConversationStarted"
    assert (event.channel, event.channel_account_id, event.contact_id) == ("facebook", "page-1", "psid-42")
    assert event.originator_id == uuid.UUID(story.id) and event.originator_version == 1
    conversation = decision.aggregate
    assert (conversation.tenant_id, conversation.status, conversation.message_count, conversation.recent) == (
        TENANT,
        "open",
        0,
        {},
    )


@pytest.mark.parametrize(
    "spelling",
    [
        lambda cid: cid.upper(),
        lambda cid: cid.replace("-", ""),
        lambda cid: "{" + cid + "}",
        lambda cid: str(uuid.uuid4()),
        lambda cid: "not-a-uuid",
    ],
    ids=["upper-case", "no-hyphens", "braces", "random-uuid", "not-a-uuid"],
)
def test_starting_under_an_id_other_than_the_canonical_one_is_invalid_and_names_the_right_id(spelling):
    story = Story()

    decision = when(None, story.start(aggregate_id=spelling(story.id)))

    then_rejected(decision, "InvalidCommand")
    assert story.id in str(decision.rejection)


def test_a_tenant_cannot_start_a_conversation_under_another_tenants_conversation_id():
    story = Story()  # the id is tenant-a's

    decision = when(None, story.start(tenant=OTHER_TENANT))

    then_rejected(decision, "InvalidCommand")


@pytest.mark.parametrize(
    ("channel", "account", "contact"),
    [
        ("Facebook", "page-1", "psid-1"),
        ("", "page-1", "psid-1"),
        ("face book", "page-1", "psid-1"),
        ("facebook", "", "psid-1"),
        ("facebook", "page/1", "psid-1"),
        ("facebook", "page 1", "psid-1"),
        ("facebook", "page-1", ""),
        ("facebook", "page-1", "psid/1"),
        ("facebook", "page-1", "psid\n1"),
        ("facebook", "page-1", "x" * 201),
    ],
)
def test_starting_with_a_malformed_channel_account_or_contact_is_invalid(channel, account, contact):
    cid = conversation_id(TENANT, channel, account, contact)
    command = StartConversation(meta(cid), channel, account, contact)

    then_rejected(when(None, command), "InvalidCommand")


def test_starting_an_open_conversation_again_is_refused_as_already_open():
    story, conversation = started()

    decision = when(conversation, story.start())

    then_rejected(decision, "ConversationAlreadyOpen")


def test_starting_a_closed_conversation_reopens_it():
    story = Story()
    conversation = given(story.started(), story.closed())

    decision = when(conversation, story.start())

    assert event_names(decision) == ["ConversationReopened"]
    assert decision.aggregate.status == "open" and decision.version == 3


@pytest.mark.parametrize(
    "build",
    [
        lambda s: s.inbound("m-1"),
        lambda s: s.outbound("o-1"),
        lambda s: s.status("o-1", "sent"),
        lambda s: s.close(),
    ],
    ids=["inbound", "outbound", "status", "close"],
)
def test_every_command_but_start_on_a_conversation_that_does_not_exist_is_refused_as_not_found(build):
    then_rejected(when(None, build(Story())), "AggregateNotFound")


def test_another_tenant_cannot_record_anything_in_a_conversation():
    story, conversation = started()

    decision = when(conversation, story.inbound("m-1", tenant=OTHER_TENANT))

    then_rejected(decision, "TenantMismatch")


def test_a_command_expecting_another_version_is_refused_as_a_version_conflict():
    story, conversation = started()

    then_rejected(when(conversation, story.inbound("m-1", expected_version=7)), "VersionConflict")
    assert when(conversation, story.inbound("m-1", expected_version=1)).accepted


# -- inbound messages --------------------------------------------------------------


def test_an_inbound_message_is_recorded_with_its_sequence_text_attachments_and_platform_time():
    story, conversation = started()

    decision = when(
        conversation,
        story.inbound("mid.1", text="where is my order?", attachments=[{"kind": "image", "key": "tenant-a/att/1.jpg"}]),
    )

    event = only_event(decision)
    assert HUB.event_name(event) == "poseidon.message.InboundMessageRecorded"
    assert (event.message_id, event.sequence, event.text, event.received_at) == ("mid.1", 1, "where is my order?", AT)
    assert event.attachments == [{"kind": "image", "key": "tenant-a/att/1.jpg", "content_type": "", "size_bytes": 0}]
    assert decision.aggregate.message_count == 1
    assert decision.aggregate.recent == {"mid.1": "received"}


def test_a_redelivered_inbound_message_id_is_refused_as_a_duplicate_and_changes_nothing():
    story = Story()
    conversation = given(story.started(), story.inbound_recorded("mid.1", 1), story.inbound_recorded("mid.2", 2))

    decision = when(conversation, story.inbound("mid.1", text="hello again"))

    then_rejected(decision, "DuplicateMessage")
    assert "mid.1" in str(decision.rejection)
    assert (conversation.version, conversation.message_count) == (3, 2)


def test_a_message_id_is_unique_across_both_directions():
    story = Story()
    conversation = given(story.started(), story.outbound_recorded("shared-id", 1))

    then_rejected(when(conversation, story.inbound("shared-id")), "DuplicateMessage")
    other = Story()
    conversation = given(other.started(), other.inbound_recorded("mid.9", 1))
    then_rejected(when(conversation, other.outbound("mid.9")), "DuplicateMessage")


def test_the_same_message_id_may_appear_in_two_different_conversations():
    a, b = Story(contact="psid-a"), Story(contact="psid-b")
    given(a.started(), a.inbound_recorded("mid.1", 1))

    assert when(given(b.started()), b.inbound("mid.1")).accepted


def test_an_inbound_message_on_a_closed_conversation_reopens_it_and_is_recorded():
    story = Story()
    conversation = given(story.started(), story.inbound_recorded("mid.1", 1), story.closed())

    decision = when(conversation, story.inbound("mid.2"))

    assert event_names(decision) == ["ConversationReopened", "InboundMessageRecorded"]
    assert [e.originator_version for e in decision.events] == [4, 5]
    assert decision.events[1].sequence == 2
    assert decision.aggregate.status == "open"


def test_a_redelivery_on_a_closed_conversation_is_a_duplicate_and_does_not_reopen_it():
    story = Story()
    conversation = given(story.started(), story.inbound_recorded("mid.1", 1), story.closed())

    then_rejected(when(conversation, story.inbound("mid.1")), "DuplicateMessage")
    assert conversation.status == "closed"


def test_an_inbound_message_may_be_only_attachments_but_not_empty():
    story, conversation = started()

    assert when(conversation, story.inbound("mid.1", text="", attachments=[{"kind": "file", "key": "k/1"}])).accepted
    then_rejected(when(conversation, story.inbound("mid.2", text="")), "InvalidCommand")
    then_rejected(when(conversation, story.inbound("mid.3", text="   ")), "InvalidCommand")


def test_a_text_longer_than_the_limit_is_invalid():
    story, conversation = started()

    assert when(conversation, story.inbound("mid.1", text="x" * MAX_TEXT)).accepted
    then_rejected(when(conversation, story.inbound("mid.2", text="x" * (MAX_TEXT + 1))), "InvalidCommand")


@pytest.mark.parametrize(
    "attachments",
    [
        [{"kind": "image", "key": "k/1", "data": b"\x89PNG"}],
        [{"kind": "image", "key": "k/1", "url": "https://cdn.example/1.png?token=x"}],
        [{"kind": "image"}],
        [{"kind": "image", "key": ""}],
        [{"kind": "Image", "key": "k/1"}],
        [{"kind": "image", "key": "k/1", "size_bytes": -1}],
        [{"kind": "image", "key": "k/1", "size_bytes": True}],
        [{"kind": "image", "key": "k/1", "content_type": "x" * 201}],
        [b"raw bytes"],
        [{"kind": "image", "key": f"k/{i}"} for i in range(MAX_ATTACHMENTS + 1)],
    ],
    ids=["bytes", "url", "no-key", "empty-key", "bad-kind", "negative-size", "bool-size", "long-type", "not-record", "too-many"],
)
def test_attachments_are_metadata_records_only_anything_else_is_invalid(attachments):
    story, conversation = started()

    then_rejected(when(conversation, story.inbound("mid.1", attachments=attachments)), "InvalidCommand")


def test_full_attachment_metadata_is_kept_as_given():
    story, conversation = started()
    attachment = {"kind": "video", "key": "tenant-a/att/v.mp4", "content_type": "video/mp4", "size_bytes": 1_048_576}

    event = only_event(when(conversation, story.inbound("mid.1", attachments=[attachment])))

    assert event.attachments == [attachment]


def test_a_received_at_without_a_time_zone_is_invalid():
    story, conversation = started()

    then_rejected(when(conversation, story.inbound("mid.1", received_at=datetime(2026, 3, 1, 12, 0))), "InvalidCommand")


@pytest.mark.parametrize("message_id", ["", "has space", "tab\tid", "x" * 301, "é-accent"])
def test_a_malformed_message_id_is_invalid(message_id):
    story, conversation = started()

    then_rejected(when(conversation, story.inbound(message_id)), "InvalidCommand")
    then_rejected(when(conversation, story.outbound(message_id)), "InvalidCommand")


# -- outbound messages -------------------------------------------------------------


def test_an_outbound_message_is_recorded_queued_and_continues_the_sequence_of_both_directions():
    story = Story()
    conversation = given(story.started(), story.inbound_recorded("mid.1", 1))

    decision = when(conversation, story.outbound("out-1", text="we are on it", in_reply_to="mid.1"))

    event = only_event(decision)
    assert HUB.event_name(event) == "poseidon.message.OutboundMessageRecorded"
    assert (event.message_id, event.sequence, event.text, event.in_reply_to) == ("out-1", 2, "we are on it", "mid.1")
    assert decision.aggregate.recent == {"mid.1": "received", "out-1": "queued"}


def test_a_repeated_outbound_message_id_is_refused_as_a_duplicate():
    story = Story()
    conversation = given(story.started(), story.outbound_recorded("out-1", 1))

    then_rejected(when(conversation, story.outbound("out-1")), "DuplicateMessage")


def test_no_outbound_message_is_recorded_on_a_closed_conversation():
    story = Story()
    conversation = given(story.started(), story.inbound_recorded("mid.1", 1), story.closed())

    then_rejected(when(conversation, story.outbound("out-1", in_reply_to="mid.1")), "ConversationClosed")


def test_an_outbound_message_needs_text_and_cannot_reply_to_itself():
    story, conversation = started()

    then_rejected(when(conversation, story.outbound("out-1", text="")), "InvalidCommand")
    then_rejected(when(conversation, story.outbound("out-1", in_reply_to="out-1")), "InvalidCommand")
    then_rejected(when(conversation, story.outbound("out-1", in_reply_to="bad id")), "InvalidCommand")
    then_rejected(when(conversation, story.outbound("out-1", in_reply_to=None)), "InvalidCommand")


# -- delivery status ---------------------------------------------------------------


def test_a_delivery_status_update_records_the_new_and_the_previous_status():
    story = Story()
    conversation = given(story.started(), story.outbound_recorded("out-1", 1))

    event = only_event(when(conversation, story.status("out-1", "sent")))

    assert HUB.event_name(event) == "poseidon.message.DeliveryStatusUpdated"
    assert (event.message_id, event.status, event.previous_status, event.reason) == ("out-1", "sent", "queued", "")
    assert conversation.recent["out-1"] == "sent"


@pytest.mark.parametrize(("current", "new"), list(itertools.product(STATUSES, STATUSES)))
def test_through_the_aggregate_every_status_pair_is_accepted_exactly_when_the_state_machine_allows_it(current, new):
    allowed = {
        "queued": {"sending", "sent", "delivered", "read", "failed"},
        "sending": {"sent", "delivered", "read", "failed"},
        "sent": {"delivered", "read", "failed"},
        "delivered": {"read"},
        "read": set(),
        "failed": {"queued", "sending"},
    }
    story, conversation = with_outbound_in(current)
    version = conversation.version

    decision = when(conversation, story.status("out-1", new, reason="error 551" if new == "failed" else ""))

    if new in allowed[current]:
        assert only_event(decision).previous_status == current
        assert decision.aggregate.recent["out-1"] == new and decision.version == version + 1
    elif new == "sending":
        # A second attempt learns what became of the first instead of a bare refusal.
        then_rejected(decision, "DeliveryOutcomeUnknown" if current == "sending" else "AlreadySent")
        assert conversation.recent["out-1"] == current
    else:
        then_rejected(decision, "InvalidStatusTransition")
        assert f"from {current} to {new}" in str(decision.rejection)
        assert conversation.recent["out-1"] == current


def test_a_failed_message_retried_goes_back_to_queued_and_on_to_delivered():
    story = Story()
    conversation = given(
        story.started(),
        story.outbound_recorded("out-1", 1),
        story.status_updated("out-1", "failed", "queued", reason="(#613) rate limit"),
        story.status_updated("out-1", "queued", "failed"),
    )

    assert when(conversation, story.status("out-1", "sent")).accepted
    assert conversation.recent["out-1"] == "sent"


def test_failed_needs_a_reason():
    story = Story()
    conversation = given(story.started(), story.outbound_recorded("out-1", 1))

    then_rejected(when(conversation, story.status("out-1", "failed")), "InvalidCommand")
    then_rejected(when(conversation, story.status("out-1", "failed", reason="x" * 501)), "InvalidCommand")


@pytest.mark.parametrize("status", ["received", "bounced", "SENT", ""])
def test_a_status_outside_the_state_machine_is_invalid(status):
    story = Story()
    conversation = given(story.started(), story.outbound_recorded("out-1", 1))

    then_rejected(when(conversation, story.status("out-1", status)), "InvalidCommand")


def test_a_status_for_an_unknown_message_is_refused_as_unknown():
    story, conversation = started()

    then_rejected(when(conversation, story.status("never-sent", "sent")), "UnknownMessage")


def test_an_inbound_message_has_no_delivery_status():
    story = Story()
    conversation = given(story.started(), story.inbound_recorded("mid.1", 1))

    then_rejected(when(conversation, story.status("mid.1", "read")), "NotAnOutboundMessage")


def test_late_delivery_receipts_are_still_recorded_on_a_closed_conversation():
    story = Story()
    conversation = given(
        story.started(), story.outbound_recorded("out-1", 1), story.status_updated("out-1", "sent", "queued"), story.closed()
    )

    assert event_names(when(conversation, story.status("out-1", "read"))) == ["DeliveryStatusUpdated"]


# -- closing -----------------------------------------------------------------------


def test_closing_records_conversation_closed_with_its_reason():
    story, conversation = started()

    event = only_event(when(conversation, story.close(reason="resolved by agent")))

    assert HUB.event_name(event) == "poseidon.message.ConversationClosed"
    assert event.reason == "resolved by agent"
    assert conversation.status == "closed"


def test_closing_a_closed_conversation_is_refused():
    story = Story()
    conversation = given(story.started(), story.closed())

    then_rejected(when(conversation, story.close()), "ConversationClosed")


def test_a_close_reason_longer_than_the_limit_is_invalid():
    story, conversation = started()

    then_rejected(when(conversation, story.close(reason="x" * 501)), "InvalidCommand")


# -- the bounded window --------------------------------------------------------------


def test_the_conversation_remembers_only_the_last_window_of_message_ids_and_forgets_the_oldest():
    story = Story()
    extra = 5
    conversation = given(
        story.started(),
        story.outbound_recorded("out-0", 1),
        [story.inbound_recorded(f"mid.{i}", i + 1) for i in range(1, MESSAGE_WINDOW + extra)],
    )

    assert len(conversation.recent) == MESSAGE_WINDOW
    assert conversation.message_count == MESSAGE_WINDOW + extra
    assert list(conversation.recent)[0] == f"mid.{extra}" and list(conversation.recent)[-1] == f"mid.{MESSAGE_WINDOW + extra - 1}"
    # Inside the window: still a duplicate. Beyond it: forgotten (the documented limit).
    then_rejected(when(conversation, story.inbound(f"mid.{extra}")), "DuplicateMessage")
    then_rejected(when(conversation, story.status("out-0", "sent")), "UnknownMessage")
    assert when(conversation, story.inbound("mid.1")).accepted


def test_a_status_change_does_not_move_a_message_in_the_window():
    story = Story()
    conversation = given(
        story.started(),
        story.outbound_recorded("out-1", 1),
        story.inbound_recorded("mid.1", 2),
        story.status_updated("out-1", "sent", "queued"),
    )

    assert list(conversation.recent.items()) == [("out-1", "sent"), ("mid.1", "received")]


def test_a_restored_snapshot_keeps_state_window_order_and_goes_on_enforcing_the_rules():
    story = Story()
    conversation = given(
        story.started(),
        story.outbound_recorded("out-1", 1),
        story.inbound_recorded("mid.1", 2),
        story.status_updated("out-1", "delivered", "queued"),
        story.closed(),
    )
    codec = SnapshotCodec()

    restored, last_hash = codec.loads(codec.dumps(conversation, "abc"))

    assert last_hash == "abc"
    assert (restored.tenant_id, restored.channel, restored.channel_account_id, restored.contact_id) == (
        TENANT,
        "facebook",
        "page-1",
        story.contact,
    )
    assert (restored.status, restored.message_count, restored.version) == ("closed", 2, 5)
    assert list(restored.recent.items()) == [("out-1", "delivered"), ("mid.1", "received")]
    then_rejected(when(restored, story.status("out-1", "sent")), "InvalidStatusTransition")
    then_rejected(when(restored, story.inbound("mid.1")), "DuplicateMessage")
    decision = when(restored, story.inbound("mid.2"))
    assert [e.originator_version for e in decision.events] == [6, 7]


# -- no message text in rejections (they are logged) ---------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda s: s.inbound("mid.1", text=SECRET),  # duplicate
        lambda s: s.inbound("mid.x", text=SECRET + "x" * MAX_TEXT),  # too long
        lambda s: s.inbound("has space", text=SECRET),
        lambda s: s.outbound("out-1", text=SECRET),  # duplicate
        lambda s: s.inbound("mid.y", text=SECRET, attachments=[{"kind": "image", "key": "k", "data": SECRET}]),
        lambda s: s.status("out-1", SECRET),
        lambda s: s.status("out-1", "failed", reason=SECRET * 40),
    ],
)
def test_a_rejection_reason_never_repeats_message_text(build):
    story = Story()
    conversation = given(
        story.started(), story.inbound_recorded("mid.1", 1), story.outbound_recorded("out-1", 2, last_inbound_at=AT)
    )

    decision = when(conversation, build(story))

    assert not decision.accepted
    assert "card" not in str(decision.rejection) and "4111" not in str(decision.rejection)


# -- commands travel through the real codec ------------------------------------------


CODEC = Codec(Catalog.load())
COMMAND_SAMPLES = [
    Story(contact="psid-1").start(),
    Story(contact="psid-1").inbound(
        "mid.1", text="hi", attachments=[{"kind": "image", "key": "k/1", "content_type": "image/png", "size_bytes": 3}]
    ),
    Story(contact="psid-1").inbound("mid.2", text="no attachments"),
    Story(contact="psid-1").outbound("out-1", text="hello", in_reply_to="mid.1"),
    Story(contact="psid-1").status("out-1", "failed", reason="(#100) invalid recipient"),
    Story(contact="psid-1").close(reason="resolved"),
    # Routing and receipts: their rules are in tests/unit/test_message_routing_records.py.
    RouteMessage(
        meta(Story(contact="psid-1").id), channel="facebook", channel_account_id="page-1", contact_id="psid-1",
        message_id="mid.3", text="hi", received_at=AT, routed=True, rule="Routed", reason="bot app",
        app_id=str(uuid.UUID(int=7)), spoke="botpress", attachments=[{"type": "image", "url": "https://cdn.example/1.jpg"}],
        facts={"tenant": "tenant-a"},
    ),
    RecordDeliveryReceipt(meta(Story(contact="psid-1").id), receipt="delivery", watermark=AT, platform_message_ids=["m_1"]),
    # The handoff: its rules are in tests/unit/test_message_handoff.py.
    RequestAgent(meta(Story(contact="psid-1").id), reason="the customer asked for a person"),
    TakeConversation(meta(Story(contact="psid-1").id), agent_id="5a0e7c1e-1111-4c4c-9d9d-0123456789ab"),
    HandBackToBot(meta(Story(contact="psid-1").id), reason="solved"),
]  # fmt: skip


def test_the_samples_cover_every_message_command():
    assert {type(c) for c in COMMAND_SAMPLES} == set(HUB.commands)


@pytest.mark.parametrize("command", COMMAND_SAMPLES, ids=lambda c: type(c).__name__)
def test_a_message_command_sent_through_the_avro_codec_comes_back_as_the_same_command(command):
    decoded = CODEC.decode(CODEC.encode(command.avro_name(), command_to_record(command)))

    back = command_from_record(HUB, decoded.name, decoded.record)

    assert back.payload() == command.payload()
    assert back.meta.aggregate_id == command.meta.aggregate_id


# -- wrongly typed fields are refused, never a crash (a crash would dead-letter the command) --


def _wrongly_typed_cases():
    story = Story(contact="psid-typed")
    samples = {
        "start": story.start(),
        "inbound": story.inbound("mid.9", attachments=[{"kind": "image", "key": "k/1"}]),
        "outbound": story.outbound("out-9"),
        "status": story.status("out-1", "sent"),
        "close": story.close(),
    }
    for name, command in samples.items():
        for field_name in command.payload():
            for bad in (None, 7, b"bytes"):
                yield pytest.param(story, command, field_name, bad, id=f"{name}-{field_name}-{type(bad).__name__}")


@pytest.mark.parametrize(("story", "command", "field_name", "bad"), list(_wrongly_typed_cases()))
def test_a_field_of_the_wrong_type_is_refused_as_invalid(story, command, field_name, bad):
    from dataclasses import replace

    conversation = given(
        story.started(), story.inbound_recorded("mid.1", 1), story.outbound_recorded("out-1", 2, last_inbound_at=AT)
    )
    broken = replace(command, **{field_name: bad})

    decision = when(None if isinstance(command, StartConversation) else conversation, broken)

    then_rejected(decision, "InvalidCommand")
