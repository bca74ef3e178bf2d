"""The Conversation aggregate: decides (public verbs, small named checks) and
evolves (the @event methods only assign state). Pure: no I/O. Rejection reasons
name ids and sizes only, never message text: they end up in logs."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate, event

from hubs.domain import AggregateAlreadyExists, AggregateNotFound, Command, InvalidCommand, Rejected
from hubs.message.commands import (
    CloseConversation,
    RecordInboundMessage,
    RecordOutboundMessage,
    StartConversation,
    UpdateDeliveryStatus,
)
from hubs.message.delivery import FAILED, QUEUED, RECEIVED, STATUSES, can_move

CONVERSATION_NAMESPACE = uuid.UUID("86ebb7cc-09fb-4f9d-8781-6db27f108fb1")
"""uuid5 namespace of conversation ids. Never change it: every id derives from it."""
MESSAGE_WINDOW = 200
"""Messages whose ids and statuses a conversation remembers (the most recently
recorded ones). Older ids are forgotten: a re-delivery of one is not detected
here, and its status can no longer change (UnknownMessage)."""
MAX_TEXT = 20_000
MAX_ATTACHMENTS = 20
MAX_REASON = 500
OPEN, CLOSED = "open", "closed"

_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# Platform ids (pages, contacts, messages): printable ASCII, no space; no "/" where
# the id is part of the conversation id's name, so the name splits one way only.
_PLATFORM_ID = re.compile(r"^[\x21-\x2e\x30-\x7e]{1,200}$")
_MESSAGE_ID = re.compile(r"^[\x21-\x7e]{1,300}$")
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_ATTACHMENT_FIELDS = ("kind", "key", "content_type", "size_bytes")


class DuplicateMessage(Rejected):
    """The message id is already recorded in this conversation (a re-delivery)."""


class UnknownMessage(Rejected):
    """No message with this id among the conversation's remembered messages."""


class NotAnOutboundMessage(Rejected):
    """Delivery status belongs to outbound messages; an inbound one has none."""


class InvalidStatusTransition(Rejected):
    """The delivery state machine does not allow this move (see hubs.message.delivery)."""


class ConversationClosed(Rejected):
    """The conversation is closed: no replies, and it cannot be closed again."""


class ConversationAlreadyOpen(AggregateAlreadyExists):
    """StartConversation on a conversation that is open."""


def conversation_id(tenant_id: str, channel: str, channel_account_id: str, contact_id: str) -> str:
    """The one id of the conversation of a tenant's channel account with a contact."""
    return str(uuid.uuid5(CONVERSATION_NAMESPACE, f"{tenant_id}/{channel}/{channel_account_id}/{contact_id}"))


class Conversation(Aggregate):
    @staticmethod
    def create_id(conversation_id: str, **_: object) -> uuid.UUID:
        return uuid.UUID(conversation_id)

    @event("ConversationStarted")
    def __init__(self, conversation_id: str, tenant_id: str, channel: str, channel_account_id: str, contact_id: str):
        self.tenant_id = tenant_id
        self.channel = channel
        self.channel_account_id = channel_account_id
        self.contact_id = contact_id
        self.status = OPEN
        self.message_count = 0
        self.recent: dict[str, str] = {}
        """message id → status of the last MESSAGE_WINDOW messages, oldest first."""

    def reopen(self) -> None:
        if self.status == OPEN:
            raise ConversationAlreadyOpen(f"conversation {self.id} is already open")
        self._conversation_reopened()

    def record_inbound(self, message_id: str, text: str, attachments: list[Mapping[str, Any]], received_at: datetime) -> None:
        check_message_id(message_id, "message_id")
        check_text(text, required=not attachments)
        cleaned = check_attachments(attachments)
        check_timestamp(received_at, "received_at")
        check_is_new(self, message_id)
        if self.status == CLOSED:
            # The contact wrote again: the conversation is live again, whoever closed it.
            self._conversation_reopened()
        self._inbound_message_recorded(message_id, self.message_count + 1, text, cleaned, received_at)

    def record_outbound(self, message_id: str, text: str, in_reply_to: str) -> None:
        check_message_id(message_id, "message_id")
        check_text(text, required=True)
        if in_reply_to != "":
            check_message_id(in_reply_to, "in_reply_to")
            if in_reply_to == message_id:
                raise InvalidCommand(f"message {message_id} cannot reply to itself")
        check_is_open(self)
        check_is_new(self, message_id)
        self._outbound_message_recorded(message_id, self.message_count + 1, text, in_reply_to)

    def update_delivery_status(self, message_id: str, status: str, reason: str) -> None:
        check_message_id(message_id, "message_id")
        if status not in STATUSES:
            raise InvalidCommand(f"status must be one of {', '.join(STATUSES)}")
        check_reason(reason, required=status == FAILED)
        current = check_is_outbound(self, message_id)
        if not can_move(current, status):
            raise InvalidStatusTransition(f"message {message_id} cannot go from {current} to {status}")
        self._delivery_status_updated(message_id, status, current, reason)

    def close(self, reason: str) -> None:
        check_reason(reason, required=False)
        check_is_open(self)
        self._conversation_closed(reason)

    @event("ConversationReopened")
    def _conversation_reopened(self) -> None:
        self.status = OPEN

    @event("InboundMessageRecorded")
    def _inbound_message_recorded(
        self, message_id: str, sequence: int, text: str, attachments: list[dict[str, Any]], received_at: datetime
    ) -> None:
        self.message_count = sequence
        self._remember(message_id, RECEIVED)

    @event("OutboundMessageRecorded")
    def _outbound_message_recorded(self, message_id: str, sequence: int, text: str, in_reply_to: str) -> None:
        self.message_count = sequence
        self._remember(message_id, QUEUED)

    @event("DeliveryStatusUpdated")
    def _delivery_status_updated(self, message_id: str, status: str, previous_status: str, reason: str) -> None:
        self.recent[message_id] = status

    @event("ConversationClosed")
    def _conversation_closed(self, reason: str) -> None:
        self.status = CLOSED

    def _remember(self, message_id: str, status: str) -> None:
        self.recent[message_id] = status
        while len(self.recent) > MESSAGE_WINDOW:
            del self.recent[next(iter(self.recent))]


def check_conversation_id(meta_aggregate_id: str, tenant_id: str, command: StartConversation) -> None:
    # One spelling only: the id is the Kafka key and the table key, and deriving it
    # from the tenant means one tenant can never start another tenant's conversation.
    expected = conversation_id(tenant_id, command.channel, command.channel_account_id, command.contact_id)
    if meta_aggregate_id != expected:
        raise InvalidCommand(
            f"conversation id must be {expected} (uuid5 of tenant/channel/channel_account_id/contact_id), "
            f"not {meta_aggregate_id[:80]!r}"
        )


def check_channel(channel: str) -> None:
    if not isinstance(channel, str) or not _CHANNEL.match(channel):
        raise InvalidCommand("channel must be a lower-case name like facebook (a-z, 0-9, _; at most 32)")


def check_platform_id(value: str, name: str) -> None:
    if not isinstance(value, str) or not _PLATFORM_ID.match(value):
        raise InvalidCommand(f"{name} must be 1 to 200 printable ASCII characters without spaces or '/'")


def check_message_id(value: str, name: str) -> None:
    if not isinstance(value, str) or not _MESSAGE_ID.match(value):
        raise InvalidCommand(f"{name} must be 1 to 300 printable ASCII characters without spaces")


def check_text(text: str, *, required: bool) -> None:
    if not isinstance(text, str):
        raise InvalidCommand("text must be a string")
    if required and not text.strip():
        raise InvalidCommand("text must not be empty (an inbound message needs text or attachments)")
    if len(text) > MAX_TEXT:
        raise InvalidCommand(f"text must be at most {MAX_TEXT} characters, not {len(text)}")


def check_attachments(attachments: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The attachments as complete metadata records; refuses anything else (bytes above all)."""
    if not isinstance(attachments, list | tuple):
        raise InvalidCommand("attachments must be a list")
    if len(attachments) > MAX_ATTACHMENTS:
        raise InvalidCommand(f"at most {MAX_ATTACHMENTS} attachments, not {len(attachments)}")
    cleaned = []
    for i, a in enumerate(attachments):
        if not isinstance(a, Mapping):
            raise InvalidCommand(f"attachments[{i}] must be a record of {', '.join(_ATTACHMENT_FIELDS)}")
        extra = sorted(set(a) - set(_ATTACHMENT_FIELDS))
        if extra:
            raise InvalidCommand(f"attachments[{i}] has fields {extra}: only metadata ({', '.join(_ATTACHMENT_FIELDS)})")
        kind, key = a.get("kind"), a.get("key")
        content_type, size = a.get("content_type", ""), a.get("size_bytes", 0)
        if not isinstance(kind, str) or not _KIND.match(kind):
            raise InvalidCommand(f"attachments[{i}].kind must be a lower-case name like image")
        if not isinstance(key, str) or not 1 <= len(key) <= 500 or not key.isprintable():
            raise InvalidCommand(f"attachments[{i}].key must be an object-storage key of 1 to 500 printable characters")
        if not isinstance(content_type, str) or len(content_type) > 200:
            raise InvalidCommand(f"attachments[{i}].content_type must be at most 200 characters")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidCommand(f"attachments[{i}].size_bytes must be a non-negative integer")
        cleaned.append({"kind": kind, "key": key, "content_type": content_type, "size_bytes": size})
    return cleaned


def check_timestamp(value: datetime, name: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidCommand(f"{name} must be a timezone-aware timestamp")


def check_reason(reason: str, *, required: bool) -> None:
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise InvalidCommand(f"reason must be at most {MAX_REASON} characters")
    if required and not reason.strip():
        raise InvalidCommand("reason is required when a message failed")


def check_is_new(conversation: Conversation, message_id: str) -> None:
    if message_id in conversation.recent:
        raise DuplicateMessage(f"message {message_id} is already recorded in conversation {conversation.id}")


def check_is_open(conversation: Conversation) -> None:
    if conversation.status == CLOSED:
        raise ConversationClosed(f"conversation {conversation.id} is closed")


def check_is_outbound(conversation: Conversation, message_id: str) -> str:
    try:
        status = conversation.recent[message_id]
    except KeyError:
        raise UnknownMessage(
            f"no message {message_id} among the last {MESSAGE_WINDOW} messages of conversation {conversation.id}"
        ) from None
    if status == RECEIVED:
        raise NotAnOutboundMessage(f"message {message_id} is inbound: it has no delivery status")
    return status


def handle(conversation: Conversation | None, command: Command) -> Conversation:
    """The one handler of every message command: returns the conversation with its
    new pending events, or raises a Rejected subclass before changing anything."""
    meta = command.meta
    if isinstance(command, StartConversation):
        check_channel(command.channel)
        check_platform_id(command.channel_account_id, "channel_account_id")
        check_platform_id(command.contact_id, "contact_id")
        check_conversation_id(meta.aggregate_id, meta.tenant_id, command)
        if conversation is not None:
            conversation.reopen()
            return conversation
        return Conversation(
            conversation_id=meta.aggregate_id,
            tenant_id=meta.tenant_id,
            channel=command.channel,
            channel_account_id=command.channel_account_id,
            contact_id=command.contact_id,
        )
    if conversation is None:
        raise AggregateNotFound(f"conversation {meta.aggregate_id[:80]} does not exist")
    if isinstance(command, RecordInboundMessage):
        conversation.record_inbound(command.message_id, command.text, command.attachments, command.received_at)
    elif isinstance(command, RecordOutboundMessage):
        conversation.record_outbound(command.message_id, command.text, command.in_reply_to)
    elif isinstance(command, UpdateDeliveryStatus):
        conversation.update_delivery_status(command.message_id, command.status, command.reason)
    elif isinstance(command, CloseConversation):
        conversation.close(command.reason)
    else:
        raise InvalidCommand(f"the message hub has no handler for {type(command).__name__}")
    return conversation
