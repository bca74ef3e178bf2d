"""The Message hub's declaration to the shared machinery (processor, CLI)."""

from hubs.message.aggregate import Conversation, handle
from hubs.message.commands import (
    COMMANDS,
    CloseConversation,
    HandBackToBot,
    RecordOutboundMessage,
    RequestAgent,
    StartConversation,
    TakeConversation,
    UpdateDeliveryStatus,
)
from infra.hub import HubSpec

HUB = HubSpec(
    name="message",
    grpc_port=50058,
    ops_index=8,
    aggregate=Conversation,
    commands=COMMANDS,
    handle=handle,
    # RecordInboundMessage carries a timestamp and a list of attachments, which
    # the generic CLI cannot spell; inbound messages come from the router anyway.
    cli_verbs={
        "start": StartConversation,
        "reply": RecordOutboundMessage,
        "status": UpdateDeliveryStatus,
        "close": CloseConversation,
        "request-agent": RequestAgent,
        "take": TakeConversation,
        "hand-back": HandBackToBot,
    },
    aggregate_option="conversation",
)
