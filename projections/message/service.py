"""Message gRPC queries (ListConversations, GetConversation, ListMessages,
GetMessage) over the message read store. Parsing and answering only; SQL lives in
projections/message/queries.py. Never logs message text."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import grpc

from hubs.message.commands import RecordOutboundMessage
from infra.arguments import tenant, uuid_of
from infra.command_client import new_meta
from infra.grpc_server import FailedPrecondition, InvalidArgument, NotFound, QueryService, ServiceDeps, to_timestamp
from infra.paging import page_size, paginate, parse_token
from infra.rest import UUID_FIELD, Route, methods
from infra.security import current_principal
from projections.message import PROJECTION, queries
from schemas.contracts import InvalidCommand
from schemas.protos import message_pb2, message_pb2_grpc

# Page tokens keep the prefixes they had before infra.paging, so tokens already handed out still work.
CONVERSATION_TOKEN = "c1"
MESSAGE_TOKEN = "m1"
_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


MAX_CONTACT = 300
MIN_SEARCH, MAX_SEARCH = 2, 200


class MessageQueries(message_pb2_grpc.MessageQueryServicer):
    def __init__(self, deps: ServiceDeps):
        self.pool, self.authorizer = deps.pool, deps.authorizer

    async def ListConversations(
        self, request: message_pb2.ListConversationsRequest, context: grpc.aio.ServicerContext
    ) -> message_pb2.ConversationPage:
        tenant_id = tenant(request.tenant_id)
        if request.channel and not _CHANNEL.match(request.channel):
            raise InvalidArgument("channel must be a lower-case name like facebook, or empty for every channel")
        if len(request.contact_id) > MAX_CONTACT:
            raise InvalidArgument(f"contact_id must be at most {MAX_CONTACT} characters")
        if request.text and not MIN_SEARCH <= len(request.text) <= MAX_SEARCH:
            raise InvalidArgument(f"text must be {MIN_SEARCH}..{MAX_SEARCH} characters, or empty")
        size = page_size(request.page_size)
        before = parse_token(request.page_token, _conversation_cursor, queries.FIRST_CURSOR, CONVERSATION_TOKEN)
        await self.authorizer.require(tenant_id, "viewer")
        rows = await queries.conversations_page(
            self.pool, tenant_id, request.channel or None, before, size + 1, request.contact_id, request.text
        )
        page, next_token = paginate(rows, size, _conversation_key, CONVERSATION_TOKEN)
        return message_pb2.ConversationPage(conversations=[_conversation(r) for r in page], next_page_token=next_token)

    async def GetConversation(
        self, request: message_pb2.GetConversationRequest, context: grpc.aio.ServicerContext
    ) -> message_pb2.Conversation:
        tenant_id, conversation_id = tenant(request.tenant_id), _conversation_id(request.conversation_id)
        await self.authorizer.require(tenant_id, "viewer")
        row = await queries.conversation(self.pool, tenant_id, conversation_id)
        if row is None:
            raise _conversation_not_found(tenant_id, conversation_id)
        return _conversation(row)

    async def ListMessages(
        self, request: message_pb2.ListMessagesRequest, context: grpc.aio.ServicerContext
    ) -> message_pb2.MessagePage:
        tenant_id, conversation_id = tenant(request.tenant_id), _conversation_id(request.conversation_id)
        size = page_size(request.page_size)
        after = parse_token(request.page_token, int, 0, MESSAGE_TOKEN)
        await self.authorizer.require(tenant_id, "viewer")
        rows = await queries.messages_page(self.pool, tenant_id, conversation_id, after, size + 1)
        if not rows and await queries.conversation(self.pool, tenant_id, conversation_id) is None:
            raise _conversation_not_found(tenant_id, conversation_id)
        page, next_token = paginate(rows, size, "sequence", MESSAGE_TOKEN)
        return message_pb2.MessagePage(messages=[_message(r) for r in page], next_page_token=next_token)

    async def GetMessage(
        self, request: message_pb2.GetMessageRequest, context: grpc.aio.ServicerContext
    ) -> message_pb2.MessageDetail:
        tenant_id, conversation_id = tenant(request.tenant_id), _conversation_id(request.conversation_id)
        message_id = request.message_id
        if not message_id or len(message_id) > 300:
            raise InvalidArgument("message_id is required (at most 300 characters)")
        await self.authorizer.require(tenant_id, "viewer")
        row = await queries.message(self.pool, tenant_id, conversation_id, message_id)
        if row is None:
            raise NotFound(f"message {message_id} not found in conversation {conversation_id} for tenant {tenant_id}")
        history = await queries.history(self.pool, tenant_id, conversation_id, message_id)
        return message_pb2.MessageDetail(
            message=_message(row),
            history=[
                message_pb2.StatusChange(
                    status=h["status"],
                    previous_status=h["previous_status"],
                    reason=h["reason"],
                    version=h["version"],
                    event_id=str(h["event_id"]),
                    occurred_at=to_timestamp(h["occurred_at"]),
                )
                for h in history
            ],
        )


def _conversation(r) -> message_pb2.Conversation:
    return message_pb2.Conversation(
        conversation_id=str(r["conversation_id"]),
        tenant_id=r["tenant_id"],
        channel=r["channel"],
        channel_account_id=r["channel_account_id"],
        contact_id=r["contact_id"],
        status=r["status"],
        message_count=r["message_count"],
        started_at=to_timestamp(r["started_at"]),
        last_message_at=to_timestamp(r["last_message_at"]) if r["last_message_at"] is not None else None,
        version=r["version"],
        updated_at=to_timestamp(r["updated_at"]),
    )


def _message(r) -> message_pb2.Message:
    return message_pb2.Message(
        message_id=r["message_id"],
        conversation_id=str(r["conversation_id"]),
        sequence=r["sequence"],
        direction=r["direction"],
        text=r["text"],
        attachments=[message_pb2.Attachment(**a) for a in json.loads(r["attachments"])],
        in_reply_to=r["in_reply_to"],
        status=r["status"],
        status_reason=r["status_reason"],
        received_at=to_timestamp(r["received_at"]) if r["received_at"] is not None else None,
        created_at=to_timestamp(r["created_at"]),
        updated_at=to_timestamp(r["updated_at"]),
        routing=_routing(r) if r["routing_rule"] else None,
    )


def _routing(r) -> message_pb2.Routing:
    return message_pb2.Routing(
        rule=r["routing_rule"],
        reason=r["routing_reason"],
        app_id=r["routed_app_id"],
        spoke=r["routed_spoke"],
        facts=json.loads(r["routing_facts"]),
    )


def _conversation_id(value: str) -> uuid.UUID:
    return uuid_of(value, "conversation_id", shown=80)


def _conversation_not_found(tenant_id: str, conversation_id: uuid.UUID) -> NotFound:
    return NotFound(f"conversation {conversation_id} not found for tenant {tenant_id}")


# Conversations page newest activity first: the key is (last activity in epoch microseconds, id).
def _conversation_key(row) -> str:
    micros = (row["last_activity_at"] - _EPOCH) // timedelta(microseconds=1)
    return f"{micros}:{row['conversation_id']}"


def _conversation_cursor(key: str) -> tuple[datetime, uuid.UUID]:
    micros, conversation_id = key.split(":")
    return _EPOCH + timedelta(microseconds=int(micros)), uuid.UUID(conversation_id)


MAX_REPLY = 2000
"""Characters of an agent's reply: Messenger's limit for a text message."""
COMMAND_TIMEOUT_S = 15.0
REPLY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:poseidon:message:agent-reply")


class MessageAgents(message_pb2_grpc.MessageAgentsServicer):
    def __init__(self, deps: ServiceDeps):
        self.pool, self.authorizer, self.commands = deps.pool, deps.authorizer, deps.commands

    async def ReplyToConversation(
        self, request: message_pb2.ReplyToConversationRequest, context: grpc.aio.ServicerContext
    ) -> message_pb2.AgentReply:
        tenant_id, conversation_id = tenant(request.tenant_id), _conversation_id(request.conversation_id)
        await self.authorizer.require(tenant_id, "agent")  # first: a stranger learns nothing, not even what is wrong
        if not request.text.strip() or len(request.text) > MAX_REPLY:
            raise InvalidArgument(f"text must be 1 to {MAX_REPLY} characters and not blank")
        if len(request.command_id) > 200:
            raise InvalidArgument("command_id must be at most 200 characters")
        if await queries.conversation(self.pool, tenant_id, conversation_id) is None:
            raise _conversation_not_found(tenant_id, conversation_id)
        caller = current_principal()
        command_id = request.command_id or str(uuid.uuid4())
        # The message id follows from the command: a resend names the same message.
        key = f"{caller.id}\n{command_id}"
        message_id = f"agent-{uuid.uuid5(REPLY_NAMESPACE, key)}"
        meta = new_meta(str(conversation_id), tenant_id, actor=caller.id, command_id=command_id)
        command = RecordOutboundMessage(meta, message_id=message_id, text=request.text, in_reply_to="")
        result = await self.commands.send(command, timeout=COMMAND_TIMEOUT_S)
        if not result.accepted:
            if result.rejection == InvalidCommand.__name__:
                raise InvalidArgument(result.reason)
            raise FailedPrecondition(f"{result.rejection}: {result.reason}")
        return message_pb2.AgentReply(
            tenant_id=tenant_id,
            conversation_id=str(conversation_id),
            message_id=message_id,
            version=result.version,
            duplicate=result.duplicate,
        )


def _add_to_server(server: grpc.aio.Server, deps: ServiceDeps) -> None:
    message_pb2_grpc.add_MessageQueryServicer_to_server(MessageQueries(deps), server)
    message_pb2_grpc.add_MessageAgentsServicer_to_server(MessageAgents(deps), server)


def _routes() -> tuple[Route, ...]:
    """The REST operations of this service (the API gateway answers them with these methods)."""
    m, agents = methods(message_pb2, "MessageQuery"), methods(message_pb2, "MessageAgents")
    return (
        Route(
            "GET",
            "/v1/tenants/{tenant_id}/conversations",
            m.ListConversations,
            "The tenant's conversations, newest first; by channel, contact or text.",
        ),
        Route("GET", "/v1/tenants/{tenant_id}/conversations/{conversation_id}", m.GetConversation, "One conversation."),
        Route(
            "GET",
            "/v1/tenants/{tenant_id}/conversations/{conversation_id}/messages",
            m.ListMessages,
            "A conversation's messages.",
        ),
        Route(
            "GET",
            "/v1/tenants/{tenant_id}/conversations/{conversation_id}/messages/{message_id}",
            m.GetMessage,
            "One message with its routing and delivery.",
        ),
        Route(
            "POST",
            "/v1/tenants/{tenant_id}/conversations/{conversation_id}/messages",
            agents.ReplyToConversation,
            "An agent's reply: recorded, then sent on the conversation's channel (delivery on the message).",
            201,
            idempotency_field="command_id",
            fields={"text": {"minLength": 1, "maxLength": MAX_REPLY}},
        ),
    )


SERVICE = QueryService(
    hub="message",
    read_model=PROJECTION,
    service_names=(
        message_pb2.DESCRIPTOR.services_by_name["MessageQuery"].full_name,
        message_pb2.DESCRIPTOR.services_by_name["MessageAgents"].full_name,
    ),
    add_to_server=_add_to_server,
    sends_commands=True,
    http_routes=_routes(),
    http_fields={
        "conversation_id": UUID_FIELD,
        "message_id": {"maxLength": 300},
        "contact_id": {"maxLength": 300},
        "text": {
            "maxLength": 200,
            "description": "Only conversations with a message containing it (any case), 2..200 characters",
        },
    },
)
