"""Message commands: what the router (and operators, and spokes) may record about
a conversation. Text is the contact's or our reply's content; attachments are
metadata with object-storage keys or the platform's URLs, never bytes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from schemas.contracts import Command


@dataclass(frozen=True)
class MessageCommand(Command):
    hub: ClassVar[str] = "message"


@dataclass(frozen=True)
class StartConversation(MessageCommand):
    channel: str
    channel_account_id: str
    contact_id: str


@dataclass(frozen=True)
class RecordInboundMessage(MessageCommand):
    message_id: str
    text: str
    received_at: datetime
    attachments: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class RecordOutboundMessage(MessageCommand):
    message_id: str
    text: str
    in_reply_to: str = ""
    content: str = ""
    """Rich content (choices, cards, media) as channel-neutral JSON; `text` is its text form."""


@dataclass(frozen=True)
class RouteMessage(MessageCommand):
    """The router's one command per inbound message: record it (starting or
    reopening the conversation as needed) together with the routing decision, in
    one step — a re-delivered message id is refused (DuplicateMessage) and then no
    decision is recorded. Aggregate id: `conversation_id(tenant, channel,
    channel_account_id, contact_id)`; the tenant is the one the channel account
    resolved to, or `platform` when it resolved to none (the rejection is kept
    under the platform)."""

    channel: str
    channel_account_id: str
    contact_id: str
    message_id: str
    text: str
    received_at: datetime
    routed: bool
    rule: str
    reason: str
    app_id: str = ""
    spoke: str = ""
    attachments: list[dict[str, Any]] = field(default_factory=list)
    """The platform's attachments as `{"type": "image", "url": "https://…"}`."""
    facts: dict[str, str] = field(default_factory=dict)
    """What the decision was taken on, for the operator who asks why."""
    choice: str = ""
    """The value of the option the contact picked (quick reply, button); `text` is its title."""


@dataclass(frozen=True)
class UpdateDeliveryStatus(MessageCommand):
    message_id: str
    status: str
    reason: str = ""
    platform_message_id: str = ""
    """The platform's id of the sent message (Facebook mid), reported with `sent`:
    delivery receipts name messages by it."""


@dataclass(frozen=True)
class RecordDeliveryReceipt(MessageCommand):
    """A platform's delivery or read receipt for the conversation: moves every
    outbound message it covers to delivered / read, as the state machine allows.
    Delivery: the messages named in `platform_message_ids`, and those sent at or
    before `watermark`; read: those sent at or before `watermark`."""

    receipt: str
    watermark: datetime
    platform_message_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CloseConversation(MessageCommand):
    reason: str = ""


@dataclass(frozen=True)
class RequestAgent(MessageCommand):
    """The conversation needs a person (the bot asked for one, or an operator or
    agent says so): it waits for an agent, and the bot is no longer asked."""

    reason: str


@dataclass(frozen=True)
class TakeConversation(MessageCommand):
    """An agent takes the conversation: the bot is no longer asked; messages go to
    the people until it is handed back. `agent_id` is the taker (a principal id,
    or a platform's own inbox such as `facebook:page_inbox`)."""

    agent_id: str


@dataclass(frozen=True)
class HandBackToBot(MessageCommand):
    """The people are done: the bot answers the conversation's next message again."""

    reason: str = ""


COMMANDS = (
    StartConversation,
    RecordInboundMessage,
    RouteMessage,
    RecordOutboundMessage,
    UpdateDeliveryStatus,
    RecordDeliveryReceipt,
    CloseConversation,
    RequestAgent,
    TakeConversation,
    HandBackToBot,
)
