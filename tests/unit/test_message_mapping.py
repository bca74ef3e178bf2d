"""The message read model's pure event → statements mapping, fed realistic records:
events the aggregate really emitted, wrapped in the envelope the processor builds
and passed through the real Avro codec, as the projector receives them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from hubs.message.aggregate import conversation_id
from hubs.message.commands import (
    CloseConversation,
    RecordInboundMessage,
    RecordOutboundMessage,
    RouteMessage,
    StartConversation,
    TakeConversation,
    UpdateDeliveryStatus,
)
from hubs.message.hub import HUB
from infra.hub import decide, event_record
from infra.projection import Statement
from projections.message import PROJECTION
from projections.message.mapping import (
    CONVERSATION,
    CONVERSATION_UPDATED,
    HISTORY,
    HISTORY_ROW,
    MESSAGE,
    MESSAGE_UPDATED,
    RECORDED,
    START,
    STARTED,
    STATUS,
    apply,
)
from schemas.codec import Catalog, Codec
from schemas.contracts import CommandMeta

CODEC = Codec(Catalog.load())
TENANT = "tenant-a"
AT = datetime(2026, 3, 1, 12, 30, 15, 123000, tzinfo=UTC)
EVENT_FIELDS = {
    name: [f["name"] for f in CODEC.catalog.latest(name).parsed["fields"] if f["name"] != "envelope"]
    for name in CODEC.catalog.names()
    if name.startswith("poseidon.message.") and ".commands." not in name
}
MESSAGE_COLUMNS = (
    "tenant_id", "conversation_id", "message_id", "sequence", "direction", "text", "attachments",
    "in_reply_to", "status", "received_at", "created_at", "version",
)  # fmt: skip
HISTORY_COLUMNS = (
    "tenant_id", "conversation_id", "version", "message_id", "status", "previous_status", "reason",
    "event_id", "correlation_id", "occurred_at",
)  # fmt: skip
CONVERSATION_COLUMNS = (
    "tenant_id", "conversation_id", "status", "message_count", "message_at", "version", "updated_at", "handled_by", "agent_id",
)  # fmt: skip


class Story:
    """Runs commands against one conversation and keeps the event records the
    processor would have published, in order."""

    def __init__(self):
        self.contact = f"psid-{uuid.uuid4().hex[:8]}"
        self.id = conversation_id(TENANT, "facebook", "page-1", self.contact)
        self.uuid = uuid.UUID(self.id)
        self.conversation = None
        self.records: list[tuple[str, dict]] = []

    def meta(self) -> CommandMeta:
        command_id = str(uuid.uuid4())
        return CommandMeta(command_id, self.id, TENANT, f"corr-{command_id}", command_id, "test")

    def do(self, cls, **payload) -> list[tuple[str, dict]]:
        command = cls(self.meta(), **payload)
        decision = decide(HUB, self.conversation, command)
        assert decision.accepted, decision.rejection
        self.conversation = decision.aggregate
        new = []
        for domain_event in decision.events:
            name = HUB.event_name(domain_event)
            record = event_record(command.meta, name, domain_event, EVENT_FIELDS[name], event_id=str(uuid.uuid4()))
            decoded = CODEC.decode(CODEC.encode(name, record))
            new.append((decoded.name, decoded.record))
        self.records.extend(new)
        return new

    def only(self, cls, **payload) -> tuple[str, dict]:
        new = self.do(cls, **payload)
        assert len(new) == 1, f"{cls.__name__} emitted {len(new)} events"
        return new[0]

    def start(self):
        return self.only(StartConversation, channel="facebook", channel_account_id="page-1", contact_id=self.contact)


def started() -> Story:
    story = Story()
    story.start()
    return story


def row(statement: Statement, sql: str, columns: tuple[str, ...]) -> dict:
    assert statement.sql == sql
    return dict(zip(columns, statement.args, strict=True))


def test_conversation_started_inserts_an_open_conversation_with_no_messages():
    story = Story()
    event_type, record = story.start()

    statements = apply(event_type, record)

    at = record["envelope"]["occurred_at"]
    assert statements == [
        Statement(START, (TENANT, story.uuid, "facebook", "page-1", story.contact, at, 1), phase=STARTED),
    ]


def test_an_inbound_message_inserts_the_message_received_its_first_history_row_and_counts_it():
    story = started()
    attachment = {"kind": "image", "key": "tenant-a/att/1.jpg", "content_type": "image/jpeg", "size_bytes": 2048}
    event_type, record = story.only(
        RecordInboundMessage, message_id="mid.1", text="where is my parcel?", received_at=AT, attachments=[attachment]
    )

    message, history, conversation = apply(event_type, record)

    env = record["envelope"]
    assert message.phase == RECORDED and history.phase == HISTORY and conversation.phase == CONVERSATION_UPDATED
    m = row(message, MESSAGE, MESSAGE_COLUMNS)
    assert m == {
        "tenant_id": TENANT, "conversation_id": story.uuid, "message_id": "mid.1", "sequence": 1, "direction": "inbound",
        "text": "where is my parcel?", "attachments": m["attachments"], "in_reply_to": "", "status": "received",
        "received_at": AT, "created_at": env["occurred_at"], "version": 2,
    }  # fmt: skip
    assert json.loads(m["attachments"]) == [attachment]
    assert row(history, HISTORY_ROW, HISTORY_COLUMNS) == {
        "tenant_id": TENANT, "conversation_id": story.uuid, "version": 2, "message_id": "mid.1", "status": "received",
        "previous_status": "", "reason": "", "event_id": uuid.UUID(env["event_id"]), "correlation_id": env["correlation_id"],
        "occurred_at": env["occurred_at"],
    }  # fmt: skip
    assert row(conversation, CONVERSATION, CONVERSATION_COLUMNS) == {
        "tenant_id": TENANT, "conversation_id": story.uuid, "status": None, "message_count": 1,
        "message_at": env["occurred_at"], "version": 2, "updated_at": env["occurred_at"], "handled_by": None,
        "agent_id": None,
    }  # fmt: skip


def test_an_outbound_message_inserts_the_message_queued_with_what_it_replies_to():
    story = started()
    story.only(RecordInboundMessage, message_id="mid.1", text="hi", received_at=AT)
    event_type, record = story.only(RecordOutboundMessage, message_id="out-1", text="hello!", in_reply_to="mid.1")

    message, history, conversation = apply(event_type, record)

    m = row(message, MESSAGE, MESSAGE_COLUMNS)
    assert (m["direction"], m["status"], m["sequence"], m["in_reply_to"], m["received_at"], m["version"]) == (
        "outbound", "queued", 2, "mid.1", None, 3,
    )  # fmt: skip
    assert json.loads(m["attachments"]) == []
    assert row(history, HISTORY_ROW, HISTORY_COLUMNS)["status"] == "queued"
    assert row(conversation, CONVERSATION, CONVERSATION_COLUMNS)["message_count"] == 2


def test_a_delivery_status_update_adds_history_moves_the_message_status_and_only_the_conversation_version():
    story = started()
    story.only(RecordOutboundMessage, message_id="out-1", text="hello!", in_reply_to="")
    story.only(UpdateDeliveryStatus, message_id="out-1", status="failed", reason="(#613) calls limit")
    event_type, record = story.only(UpdateDeliveryStatus, message_id="out-1", status="queued", reason="retry 1")

    history, status, conversation = apply(event_type, record)

    at = record["envelope"]["occurred_at"]
    h = row(history, HISTORY_ROW, HISTORY_COLUMNS)
    assert h | {"event_id": None, "correlation_id": None, "occurred_at": None} == {
        "tenant_id": TENANT, "conversation_id": story.uuid, "version": 4, "message_id": "out-1", "status": "queued",
        "previous_status": "failed", "reason": "retry 1", "event_id": None, "correlation_id": None, "occurred_at": None,
    }  # fmt: skip
    assert status == Statement(STATUS, (TENANT, story.uuid, "out-1", "queued", "retry 1", at, 4), phase=MESSAGE_UPDATED)
    assert conversation == Statement(
        CONVERSATION, (TENANT, story.uuid, None, None, None, 4, at, None, None), phase=CONVERSATION_UPDATED
    )


def test_closing_and_reopening_only_set_the_conversation_status():
    story = started()
    story.only(RecordInboundMessage, message_id="mid.1", text="hi", received_at=AT)
    closed = story.only(CloseConversation, reason="resolved")
    reopened, inbound = story.do(RecordInboundMessage, message_id="mid.2", text="one more thing", received_at=AT)

    [close] = apply(*closed)
    [reopen] = apply(*reopened)

    assert row(close, CONVERSATION, CONVERSATION_COLUMNS)["status"] == "closed"
    assert row(reopen, CONVERSATION, CONVERSATION_COLUMNS)["status"] == "open"
    assert (close.args[3], reopen.args[3]) == (None, None)  # the message count is left alone
    assert [row(s, CONVERSATION, CONVERSATION_COLUMNS)["version"] for s in (close, reopen)] == [3, 4]
    assert row(apply(*inbound)[0], MESSAGE, MESSAGE_COLUMNS)["sequence"] == 2


def test_every_statement_of_every_event_is_scoped_by_the_tenant_and_the_conversation():
    story = started()
    story.only(RecordInboundMessage, message_id="mid.1", text="hi", received_at=AT)
    story.only(RecordOutboundMessage, message_id="out-1", text="hello", in_reply_to="mid.1")
    story.only(UpdateDeliveryStatus, message_id="out-1", status="sent", reason="")
    route = {"channel": "facebook", "channel_account_id": "page-1", "contact_id": story.contact, "text": "hi", "received_at": AT}
    story.do(
        RouteMessage,
        **route,
        message_id="mid.2",
        routed=True,
        rule="Routed",
        reason="r",
        app_id=str(uuid.UUID(int=1)),
        spoke="agent",
    )
    story.do(RouteMessage, **route, message_id="mid.3", routed=False, rule="NoActiveSubscription", reason="none")
    story.only(TakeConversation, agent_id="agent-1")  # routing to a people's app queued it; an agent takes it
    assert [name.rsplit(".", 1)[1] for name, _ in story.do(CloseConversation, reason="")] == [
        "ConversationHandedBack", "ConversationClosed",
    ]  # fmt: skip
    story.do(StartConversation, channel="facebook", channel_account_id="page-1", contact_id=story.contact)

    kinds = set()
    for event_type, record in story.records:
        kinds.add(event_type.rsplit(".", 1)[1])
        for statement in apply(event_type, record):
            assert statement.args[:2] == (TENANT, story.uuid), statement.sql
            assert "tenant_id = $1" in statement.sql or statement.sql.startswith("INSERT")
    assert kinds == {name.rsplit(".", 1)[1] for name in EVENT_FIELDS}


def test_every_insert_ignores_a_replay_and_every_update_is_guarded_by_version():
    for sql in (START, MESSAGE, HISTORY_ROW):
        assert sql.rstrip().endswith("ON CONFLICT DO NOTHING")
    for sql in (STATUS, CONVERSATION):
        assert "version < $" in sql


def test_phases_put_the_rows_others_update_first():
    assert STARTED < RECORDED < MESSAGE_UPDATED < CONVERSATION_UPDATED
    assert RECORDED < HISTORY


def test_an_event_the_read_model_does_not_know_is_a_value_error_naming_it():
    story = Story()
    _, record = story.start()

    with pytest.raises(ValueError, match="poseidon.message.Unheard"):
        apply("poseidon.message.Unheard", record)


def test_the_projection_reads_the_message_events_into_its_own_tables():
    assert PROJECTION.name == "message"
    assert tuple(PROJECTION.topics) == ("message.events",)
    assert set(PROJECTION.tables) == {"conversations", "messages", "message_status_history"}
    assert PROJECTION.apply is apply
