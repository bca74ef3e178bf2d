"""Message commands: what the router (and operators) may record about a
conversation. Text is the contact's or our reply's content; attachments are
metadata with object-storage keys, never bytes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from hubs.domain import Command


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


@dataclass(frozen=True)
class UpdateDeliveryStatus(MessageCommand):
    message_id: str
    status: str
    reason: str = ""


@dataclass(frozen=True)
class CloseConversation(MessageCommand):
    reason: str = ""


COMMANDS = (StartConversation, RecordInboundMessage, RecordOutboundMessage, UpdateDeliveryStatus, CloseConversation)
