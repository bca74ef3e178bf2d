"""The Conversation aggregate: decides (public verbs, small named checks) and
evolves (the @event methods only assign state). Pure: no I/O. Rejection reasons
name ids and sizes only, never message text: they end up in logs.

It records what the router decided (`RouteMessage`: the inbound message and its
routing decision in one step, so a re-delivered message id is refused before any
second decision exists) and applies platform receipts to the outbound messages
they cover (`RecordDeliveryReceipt`); it does not decide routes itself."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from eventsourcing.domain import Aggregate, event

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
from hubs.message.delivery import ALREADY_SENT, DELIVERED, FAILED, QUEUED, READ, RECEIVED, SENDING, SENT, STATUSES, can_move
from hubs.message.routing import (
    AGENT,
    AGENT_HANDLES,
    AWAITING_AGENT,
    BOT_HANDLES,
    HANDLER_FACT,
    asks_for_people,
    hand_to_people,
)
from schemas.contracts import AggregateAlreadyExists, AggregateNotFound, Command, InvalidCommand, Rejected

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
_AGENT_ID = re.compile(r"^[\x21-\x7e]{1,200}$")
_ATTACHMENT_FIELDS = ("kind", "key", "content_type", "size_bytes")
_RULE = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")
_FACT_KEY = re.compile(r"^[a-z][a-z0-9_.:-]{0,99}$")
_URL = re.compile(r"^https?://[\x21-\x7e]{1,2000}$")
MAX_FACTS = 50
MAX_FACT_VALUE = 500
MAX_RECEIPT_IDS = 100
RECEIPTS = {"delivery": DELIVERED, "read": READ}
"""Receipt kind → the status it moves covered outbound messages to."""
NEVER = datetime(1970, 1, 1, tzinfo=UTC)
"""`last_inbound_at` of a conversation the contact never wrote in (Avro's 0)."""


class DuplicateMessage(Rejected):
    """The message id is already recorded in this conversation (a re-delivery)."""


class UnknownMessage(Rejected):
    """No message with this id among the conversation's remembered messages."""


class NotAnOutboundMessage(Rejected):
    """Delivery status belongs to outbound messages; an inbound one has none."""


class InvalidStatusTransition(Rejected):
    """The delivery state machine does not allow this move (see hubs.message.delivery)."""


class DeliveryOutcomeUnknown(Rejected):
    """An earlier attempt to send this message recorded its intent and never its
    outcome: the platform may or may not have it (the tenant's delivery policy decides)."""


class AlreadySent(Rejected):
    """The platform already has this message: an attempt to send it again is refused."""


class ConversationClosed(Rejected):
    """The conversation is closed: no replies, and it cannot be closed again."""


class HeldByAnotherAgent(Rejected):
    """Another agent holds the conversation: they hand it back first."""


class NotWithAgent(Rejected):
    """The bot handles the conversation: there is nothing to hand back."""


class NotWithBot(Rejected):
    """The conversation already awaits an agent or is held by one."""


class ConversationAlreadyOpen(AggregateAlreadyExists):
    """StartConversation on a conversation that is open."""


@dataclass(frozen=True)
class RoutingRecord:
    """What the router decided for one inbound message (hubs/message/routing.py
    decides; this is its record as the command carries it)."""

    routed: bool
    rule: str
    reason: str
    app_id: str = ""
    spoke: str = ""
    facts: Mapping[str, str] = field(default_factory=dict)


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
        self.last_inbound_at = NEVER
        """The platform's time of the contact's last message (messaging windows)."""
        self.sent: dict[str, list] = {}
        """Outbound message id → [platform message id, sent at (ms)], for those of
        `recent` that were reported sent: receipts name and date messages so."""
        self.handler = BOT_HANDLES
        """Who answers: bot, awaiting_agent or agent (hubs.message.routing.HANDLERS)."""
        self.agent_id = ""
        """The agent holding the conversation while `handler` is agent."""

    def handled_by(self) -> tuple[str, str]:
        # Conversations restored from snapshots older than the handoff lack both attributes.
        return self.__dict__.get("handler", BOT_HANDLES), self.__dict__.get("agent_id", "")

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

    def route(
        self,
        message_id: str,
        text: str,
        links: list[Mapping[str, Any]],
        received_at: datetime,
        decision: RoutingRecord,
        choice: str = "",
    ) -> None:
        """Record an inbound message and the router's decision about it, together."""
        check_message_id(message_id, "message_id")
        check_text(text, required=not links)
        links = check_links(links)
        check_timestamp(received_at, "received_at")
        check_decision(decision)
        check_choice(choice)
        check_is_new(self, message_id)
        if self.status == CLOSED:
            self._conversation_reopened()
        attachments = [{"kind": a["type"], "key": "", "url": a["url"], "content_type": "", "size_bytes": 0} for a in links]
        self._inbound_message_recorded(message_id, self.message_count + 1, text, attachments, received_at)
        facts = dict(sorted(decision.facts.items()))
        if decision.routed:
            handler, agent_id = self.handled_by()
            spoke, rule, reason = decision.spoke, decision.rule, decision.reason
            if (held := hand_to_people(spoke, reason, handler, agent_id)) is not None:
                spoke, (rule, reason) = AGENT, held
                if len(facts) < MAX_FACTS:
                    facts[HANDLER_FACT] = handler
            self._message_routed(
                message_id, decision.app_id, spoke, rule, reason,
                self.channel, self.channel_account_id, self.contact_id, text, links, received_at, facts, choice,
            )  # fmt: skip
            if asks_for_people(spoke, handler):
                self._agent_requested(f"routed to app {decision.app_id}, which is answered by people", message_id)
        else:
            self._message_rejected(message_id, decision.rule, decision.reason, facts)

    def record_outbound(self, message_id: str, text: str, in_reply_to: str, content: str = "") -> None:
        check_message_id(message_id, "message_id")
        check_text(text, required=True)
        check_content(content)
        if in_reply_to != "":
            check_message_id(in_reply_to, "in_reply_to")
            if in_reply_to == message_id:
                raise InvalidCommand(f"message {message_id} cannot reply to itself")
        check_is_open(self)
        check_is_new(self, message_id)
        self._outbound_message_recorded(
            message_id, self.message_count + 1, text, in_reply_to,
            self.channel, self.channel_account_id, self.contact_id, getattr(self, "last_inbound_at", NEVER), content,
        )  # fmt: skip

    def update_delivery_status(
        self, message_id: str, status: str, reason: str, platform_message_id: str = "", at: datetime = NEVER
    ) -> None:
        """`at`: when the reporter says the status was reached (the command's issue time)."""
        check_message_id(message_id, "message_id")
        if status not in STATUSES:
            raise InvalidCommand(f"status must be one of {', '.join(STATUSES)}")
        check_reason(reason, required=status == FAILED)
        if platform_message_id != "":
            check_message_id(platform_message_id, "platform_message_id")
            if status != SENT:
                raise InvalidCommand("platform_message_id is reported with status sent only")
        current = check_is_outbound(self, message_id)
        if status == SENDING:
            check_not_attempted(message_id, current)
        if not can_move(current, status):
            raise InvalidStatusTransition(f"message {message_id} cannot go from {current} to {status}")
        self._delivery_status_updated(message_id, status, current, reason, platform_message_id, at)

    def record_receipt(self, receipt: str, watermark: datetime, platform_message_ids: list[str], at: datetime) -> None:
        """Move every outbound message the receipt covers forward. Only what the
        conversation knows was sent at or before the watermark counts as covered
        by it, so a receipt never claims more than happened; a message whose sent
        report arrives after the receipt waits for the next one. A receipt that
        covers nothing new changes nothing (receipts repeat)."""
        if not isinstance(receipt, str) or receipt not in RECEIPTS:
            raise InvalidCommand(f"receipt must be one of {', '.join(RECEIPTS)}, not {str(receipt)[:40]!r}")
        check_timestamp(watermark, "watermark")
        named = check_receipt_ids(platform_message_ids, receipt)
        target, limit = RECEIPTS[receipt], millis(watermark)
        sent = getattr(self, "sent", {})
        for message_id, status in list(self.recent.items()):
            if status == RECEIVED or not can_move(status, target):
                continue
            platform_id, sent_at = sent.get(message_id, ("", None))
            by_id = target == DELIVERED and platform_id != "" and platform_id in named
            by_watermark = sent_at is not None and limit > 0 and sent_at <= limit and status in (SENT, DELIVERED)
            if by_id or by_watermark:
                reached_at = watermark if limit > 0 else at
                self._delivery_status_updated(message_id, target, status, f"{receipt} receipt", "", reached_at)

    def close(self, reason: str) -> None:
        check_reason(reason, required=False)
        check_is_open(self)
        if self.handled_by()[0] != BOT_HANDLES:
            # A conversation closed by the people is done with them: the contact's next message reaches the bot.
            self._handed_back(self.handled_by()[1], "the conversation was closed")
        self._conversation_closed(reason)

    def request_agent(self, reason: str) -> None:
        check_reason(reason, required=True)
        check_is_open(self)
        handler, agent_id = self.handled_by()
        if handler != BOT_HANDLES:
            held = f"is held by agent {agent_id}" if handler == AGENT_HANDLES else "already awaits an agent"
            raise NotWithBot(f"conversation {self.id} {held}")
        self._agent_requested(reason, "")

    def take(self, agent_id: str) -> None:
        if not isinstance(agent_id, str) or not _AGENT_ID.match(agent_id):
            raise InvalidCommand("agent_id must be 1 to 200 printable ASCII characters without spaces")
        check_is_open(self)
        handler, holder = self.handled_by()
        if handler == AGENT_HANDLES and holder == agent_id:
            return  # taken again by its holder: nothing changes (a resent or repeated take)
        if handler == AGENT_HANDLES:
            raise HeldByAnotherAgent(f"agent {holder} holds conversation {self.id}: they hand it back first")
        self._conversation_taken(agent_id, handler)

    def hand_back(self, reason: str) -> None:
        check_reason(reason, required=False)
        handler, agent_id = self.handled_by()
        if handler == BOT_HANDLES:
            raise NotWithAgent(f"the bot already handles conversation {self.id}")
        self._handed_back(agent_id, reason)

    def _handed_back(self, agent_id: str, reason: str) -> None:
        # The channel's spoke reads where the conversation is (a thread a platform's inbox held is taken back).
        self._conversation_handed_back(agent_id, reason, self.channel, self.channel_account_id, self.contact_id)

    @event("ConversationReopened")
    def _conversation_reopened(self) -> None:
        self.status = OPEN

    @event("InboundMessageRecorded")
    def _inbound_message_recorded(
        self, message_id: str, sequence: int, text: str, attachments: list[dict[str, Any]], received_at: datetime
    ) -> None:
        self.message_count = sequence
        self.last_inbound_at = received_at
        self._remember(message_id, RECEIVED)

    @event("MessageRouted")
    def _message_routed(
        self,
        message_id: str,
        app_id: str,
        spoke: str,
        rule: str,
        reason: str,
        channel: str,
        channel_account_id: str,
        contact_id: str,
        text: str,
        attachments: list[dict[str, str]],
        received_at: datetime,
        facts: dict[str, str],
        choice: str = "",
    ) -> None:
        pass  # a fact for the spokes and the audit; the conversation's state is unchanged

    @event("MessageRejected")
    def _message_rejected(self, message_id: str, rule: str, reason: str, facts: dict[str, str]) -> None:
        pass

    @event("OutboundMessageRecorded")
    def _outbound_message_recorded(
        self,
        message_id: str,
        sequence: int,
        text: str,
        in_reply_to: str,
        channel: str,
        channel_account_id: str,
        contact_id: str,
        last_inbound_at: datetime,
        content: str = "",
    ) -> None:
        self.message_count = sequence
        self._remember(message_id, QUEUED)

    @event("DeliveryStatusUpdated")
    def _delivery_status_updated(
        self, message_id: str, status: str, previous_status: str, reason: str, platform_message_id: str, status_at: datetime
    ) -> None:
        self.recent[message_id] = status
        if status == SENT:
            # Conversations restored from snapshots older than this attribute lack it.
            self.__dict__.setdefault("sent", {})[message_id] = [platform_message_id, millis(status_at)]

    @event("ConversationClosed")
    def _conversation_closed(self, reason: str) -> None:
        self.status = CLOSED

    @event("AgentRequested")
    def _agent_requested(self, reason: str, message_id: str) -> None:
        self.handler, self.agent_id = AWAITING_AGENT, ""

    @event("ConversationTaken")
    def _conversation_taken(self, agent_id: str, previous_handler: str) -> None:
        self.handler, self.agent_id = AGENT_HANDLES, agent_id

    @event("ConversationHandedBack")
    def _conversation_handed_back(
        self, agent_id: str, reason: str, channel: str, channel_account_id: str, contact_id: str
    ) -> None:
        self.handler, self.agent_id = BOT_HANDLES, ""

    def _remember(self, message_id: str, status: str) -> None:
        self.recent[message_id] = status
        while len(self.recent) > MESSAGE_WINDOW:
            forgotten = next(iter(self.recent))
            del self.recent[forgotten]
            self.__dict__.get("sent", {}).pop(forgotten, None)


def check_conversation_id(meta_aggregate_id: str, tenant_id: str, command: StartConversation | RouteMessage) -> None:
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


MAX_CHOICE = 1000
"""A quick reply's or postback's payload, in characters (Messenger's own limit)."""


def check_choice(choice: str) -> None:
    if not isinstance(choice, str) or len(choice) > MAX_CHOICE:
        raise InvalidCommand(f"choice must be a string of at most {MAX_CHOICE} characters")


MAX_CONTENT = 64_000
"""Rich content's JSON, in characters (ten cards with three buttons each fit many times over)."""


def check_content(content: str) -> None:
    """Rich content is a JSON object naming its type, or empty (plain text)."""
    if not isinstance(content, str) or len(content) > MAX_CONTENT:
        raise InvalidCommand(f"content must be a JSON string of at most {MAX_CONTENT} characters")
    if not content:
        return
    try:
        parsed = json.loads(content)
    except ValueError:
        raise InvalidCommand("content must be JSON") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("type"), str):
        raise InvalidCommand("content must be a JSON object with a type")


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


def check_links(links: list[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The platform's attachments as `{type, url}` records (a URL or nothing, never bytes)."""
    if not isinstance(links, list | tuple):
        raise InvalidCommand("attachments must be a list")
    if len(links) > MAX_ATTACHMENTS:
        raise InvalidCommand(f"at most {MAX_ATTACHMENTS} attachments, not {len(links)}")
    cleaned = []
    for i, a in enumerate(links):
        if not isinstance(a, Mapping) or set(a) - {"type", "url"}:
            raise InvalidCommand(f"attachments[{i}] must be a record of type and url")
        kind, url = a.get("type"), a.get("url", "")
        if not isinstance(kind, str) or not _KIND.match(kind):
            raise InvalidCommand(f"attachments[{i}].type must be a lower-case name like image")
        if not isinstance(url, str) or (url != "" and not _URL.match(url)):
            raise InvalidCommand(f"attachments[{i}].url must be an http(s) URL of at most 2000 characters, or empty")
        cleaned.append({"type": kind, "url": url})
    return cleaned


def check_decision(decision: RoutingRecord) -> None:
    # A decision must explain itself: the rule that decided and why, in words.
    if not isinstance(decision.routed, bool):
        raise InvalidCommand("routed must be true or false")
    if not isinstance(decision.rule, str) or not _RULE.match(decision.rule):
        raise InvalidCommand(f"rule must be a rule name like Routed or UnknownChannelAccount, not {str(decision.rule)[:80]!r}")
    if not isinstance(decision.reason, str) or not decision.reason.strip() or len(decision.reason) > MAX_REASON:
        raise InvalidCommand(f"reason is required: 1 to {MAX_REASON} characters saying why")
    if decision.routed:
        check_uuid(decision.app_id, "app_id")
        if not isinstance(decision.spoke, str) or not _KIND.match(decision.spoke):
            raise InvalidCommand("a routed message names the spoke that acts next (a lower-case name like botpress)")
    elif decision.app_id != "" or decision.spoke != "":
        raise InvalidCommand("a rejected message goes to no app and no spoke: app_id and spoke must be empty")
    facts = decision.facts
    if not isinstance(facts, Mapping) or len(facts) > MAX_FACTS:
        raise InvalidCommand(f"facts must be a map of at most {MAX_FACTS} entries")
    for key, value in facts.items():
        if not isinstance(key, str) or not _FACT_KEY.match(key):
            raise InvalidCommand(f"fact name {str(key)[:80]!r} must be 1 to 100 of a-z 0-9 _ . : - starting with a letter")
        if not isinstance(value, str) or len(value) > MAX_FACT_VALUE:
            raise InvalidCommand(f"fact {key} must be text of at most {MAX_FACT_VALUE} characters")


def check_uuid(value: str, name: str) -> None:
    try:
        canonical = str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise InvalidCommand(f"{name} must be a UUID, not {str(value)[:80]!r}") from None
    if canonical != value:
        raise InvalidCommand(f"{name} must be a lower-case hyphenated UUID ({canonical}), not {value!r}")


def check_receipt_ids(platform_message_ids: list[str], receipt: str) -> set[str]:
    if not isinstance(platform_message_ids, list | tuple) or len(platform_message_ids) > MAX_RECEIPT_IDS:
        raise InvalidCommand(f"platform_message_ids must be a list of at most {MAX_RECEIPT_IDS} message ids")
    for value in platform_message_ids:
        check_message_id(value, "platform_message_ids[]")
    if platform_message_ids and receipt != "delivery":
        raise InvalidCommand("only a delivery receipt names messages; a read receipt has a watermark only")
    return set(platform_message_ids)


def millis(at: datetime) -> int:
    return int(at.timestamp() * 1000)


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
    if isinstance(command, RouteMessage):
        check_channel(command.channel)
        check_platform_id(command.channel_account_id, "channel_account_id")
        check_platform_id(command.contact_id, "contact_id")
        check_conversation_id(meta.aggregate_id, meta.tenant_id, command)
        decision = RoutingRecord(command.routed, command.rule, command.reason, command.app_id, command.spoke, command.facts)
        if conversation is None:
            # The first message of a contact starts the conversation; a refusal
            # below discards it with everything else (nothing is emitted).
            conversation = Conversation(
                conversation_id=meta.aggregate_id,
                tenant_id=meta.tenant_id,
                channel=command.channel,
                channel_account_id=command.channel_account_id,
                contact_id=command.contact_id,
            )
        conversation.route(command.message_id, command.text, command.attachments, command.received_at, decision, command.choice)
        return conversation
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
        conversation.record_outbound(command.message_id, command.text, command.in_reply_to, command.content)
    elif isinstance(command, UpdateDeliveryStatus):
        conversation.update_delivery_status(
            command.message_id, command.status, command.reason, command.platform_message_id, meta.issued_at
        )
    elif isinstance(command, RecordDeliveryReceipt):
        conversation.record_receipt(command.receipt, command.watermark, command.platform_message_ids, meta.issued_at)
    elif isinstance(command, CloseConversation):
        conversation.close(command.reason)
    elif isinstance(command, RequestAgent):
        conversation.request_agent(command.reason)
    elif isinstance(command, TakeConversation):
        conversation.take(command.agent_id)
    elif isinstance(command, HandBackToBot):
        conversation.hand_back(command.reason)
    else:
        raise InvalidCommand(f"the message hub has no handler for {type(command).__name__}")
    return conversation


def check_not_attempted(message_id: str, current: str) -> None:
    if current == SENDING:
        raise DeliveryOutcomeUnknown(f"message {message_id} has an attempt whose outcome is unknown")
    if current in ALREADY_SENT:
        raise AlreadySent(f"message {message_id} is already {current}")
