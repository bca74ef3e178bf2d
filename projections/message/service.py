"""Message gRPC queries (ListConversations, GetConversation, ListMessages,
GetMessage) over the message read store. Parsing and answering only; SQL lives in
projections/message/queries.py. Never logs message text."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import grpc

from hubs.message.commands import HandBackToBot, MessageCommand, RecordOutboundMessage, RequestAgent, TakeConversation
from hubs.message.routing import AGENT_HANDLES, AWAITING_AGENT, BOT_HANDLES, HANDLERS
from infra.arguments import tenant, uuid_of
from infra.command_client import new_meta
from infra.grpc_server import InvalidArgument, NotFound, QueryService, ServiceDeps, refusal, to_timestamp
from infra.paging import page_size, paginate, parse_token
from infra.rest import UUID_FIELD, Route, methods
from infra.security import current_principal
from projections.message import PROJECTION, queries
from schemas.protos import message_pb2, message_pb2_grpc

# Page tokens keep the prefixes they had before infra.paging, so tokens already handed out still work.
CONVERSATION_TOKEN = "c1"
MESSAGE_TOKEN = "m1"
_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


MAX_CONTACT = 300
MAX_AGENT_ID = 200
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
        if request.handled_by and request.handled_by not in HANDLERS:
            raise InvalidArgument(f"handled_by must be one of {', '.join(HANDLERS)}, or empty for all")
        if len(request.agent_id) > MAX_AGENT_ID:
            raise InvalidArgument(f"agent_id must be at most {MAX_AGENT_ID} characters")
        size = page_size(request.page_size)
        before = parse_token(request.page_token, _conversation_cursor, queries.FIRST_CURSOR, CONVERSATION_TOKEN)
        await self.authorizer.require(tenant_id, "viewer")
        rows = await queries.conversations_page(
            self.pool, tenant_id, request.channel or None, before, size + 1, request.contact_id, request.text,
            request.handled_by, request.agent_id,
        )  # fmt: skip
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
        handled_by=r["handled_by"],
        agent_id=r["agent_id"],
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


MAX_REASON = 500
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
        await self._exists(tenant_id, conversation_id)
        caller = current_principal()
        command_id = request.command_id or str(uuid.uuid4())
        # The message id follows from the command: a resend names the same message.
        key = f"{caller.id}\n{command_id}"
        message_id = f"agent-{uuid.uuid5(REPLY_NAMESPACE, key)}"
        # A person answering takes the conversation first, so the bot stops answering it
        # (taking one's own again changes nothing; one another agent holds is refused).
        take_id = str(uuid.uuid5(REPLY_NAMESPACE, f"{key}\ntake"))
        await self._decide(TakeConversation(self._meta(conversation_id, tenant_id, take_id), agent_id=caller.id))
        meta = self._meta(conversation_id, tenant_id, command_id)
        result = await self._decide(RecordOutboundMessage(meta, message_id=message_id, text=request.text, in_reply_to=""))
        return message_pb2.AgentReply(
            tenant_id=tenant_id,
            conversation_id=str(conversation_id),
            message_id=message_id,
            version=result.version,
            duplicate=result.duplicate,
        )

    async def TakeConversation(
        self, request: message_pb2.TakeConversationRequest, context: grpc.aio.ServicerContext
    ) -> message_pb2.Handoff:
        tenant_id, conversation_id = await self._handoff_target(request)
        caller = current_principal()
        meta = self._meta(conversation_id, tenant_id, _command_id(request.command_id))
        result = await self._decide(TakeConversation(meta, agent_id=caller.id))
        return _handoff(tenant_id, conversation_id, AGENT_HANDLES, caller.id, result)

    async def HandBackToBot(
        self, request: message_pb2.HandBackToBotRequest, context: grpc.aio.ServicerContext
    ) -> message_pb2.Handoff:
        tenant_id, conversation_id = await self._handoff_target(request)
        _check_reason(request.reason, required=False)
        meta = self._meta(conversation_id, tenant_id, _command_id(request.command_id))
        result = await self._decide(HandBackToBot(meta, reason=request.reason))
        return _handoff(tenant_id, conversation_id, BOT_HANDLES, "", result)

    async def RequestAgent(
        self, request: message_pb2.RequestAgentRequest, context: grpc.aio.ServicerContext
    ) -> message_pb2.Handoff:
        tenant_id, conversation_id = await self._handoff_target(request)
        _check_reason(request.reason, required=True)
        meta = self._meta(conversation_id, tenant_id, _command_id(request.command_id))
        result = await self._decide(RequestAgent(meta, reason=request.reason))
        return _handoff(tenant_id, conversation_id, AWAITING_AGENT, "", result)

    async def _handoff_target(self, request) -> tuple[str, uuid.UUID]:
        tenant_id, conversation_id = tenant(request.tenant_id), _conversation_id(request.conversation_id)
        await self.authorizer.require(tenant_id, "agent")  # first: a stranger learns nothing, not even what is wrong
        await self._exists(tenant_id, conversation_id)
        return tenant_id, conversation_id

    async def _exists(self, tenant_id: str, conversation_id: uuid.UUID) -> None:
        if await queries.conversation(self.pool, tenant_id, conversation_id) is None:
            raise _conversation_not_found(tenant_id, conversation_id)

    @staticmethod
    def _meta(conversation_id: uuid.UUID, tenant_id: str, command_id: str):
        return new_meta(str(conversation_id), tenant_id, actor=current_principal().id, command_id=command_id)

    async def _decide(self, command: MessageCommand):
        """Send the command and wait for the hub's decision; a refusal becomes the gRPC error that names its rule."""
        result = await self.commands.send(command, timeout=COMMAND_TIMEOUT_S)
        if not result.accepted:
            raise refusal(result)
        return result


def _command_id(given: str) -> str:
    if len(given) > 200:
        raise InvalidArgument("command_id must be at most 200 characters")
    return given or str(uuid.uuid4())


def _check_reason(reason: str, *, required: bool) -> None:
    if required and not reason.strip():
        raise InvalidArgument(f"reason is required: 1 to {MAX_REASON} characters, not blank")
    if len(reason) > MAX_REASON:
        raise InvalidArgument(f"reason must be at most {MAX_REASON} characters")


def _handoff(tenant_id: str, conversation_id: uuid.UUID, handled_by: str, agent_id: str, result) -> message_pb2.Handoff:
    return message_pb2.Handoff(
        tenant_id=tenant_id,
        conversation_id=str(conversation_id),
        handled_by=handled_by,
        agent_id=agent_id,
        version=result.version,
        duplicate=result.duplicate,
    )


def _add_to_server(server: grpc.aio.Server, deps: ServiceDeps) -> None:
    message_pb2_grpc.add_MessageQueryServicer_to_server(MessageQueries(deps), server)
    message_pb2_grpc.add_MessageAgentsServicer_to_server(MessageAgents(deps), server)


CONVERSATION_PATH = "/v1/tenants/{tenant_id}/conversations/{conversation_id}"


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
        Route("GET", CONVERSATION_PATH, m.GetConversation, "One conversation (handled_by: who answers it)."),
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
        Route(
            "POST",
            "/v1/tenants/{tenant_id}/conversations/{conversation_id}/take",
            agents.TakeConversation,
            "The caller takes the conversation: its messages go to the people, not the bot, until handed back.",
            idempotency_field="command_id",
            affects=CONVERSATION_PATH,
        ),
        Route(
            "POST",
            "/v1/tenants/{tenant_id}/conversations/{conversation_id}/hand-back",
            agents.HandBackToBot,
            "Hand the conversation back to the bot: it answers the next message again.",
            idempotency_field="command_id",
            affects=CONVERSATION_PATH,
            fields={"reason": {"maxLength": MAX_REASON}},
        ),
        Route(
            "POST",
            "/v1/tenants/{tenant_id}/conversations/{conversation_id}/agent-requests",
            agents.RequestAgent,
            "Put the conversation in the agents' queue (handled_by awaiting_agent): the bot is no longer asked.",
            idempotency_field="command_id",
            affects=CONVERSATION_PATH,
            fields={"reason": {"minLength": 1, "maxLength": MAX_REASON}},
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
        "handled_by": {"enum": list(HANDLERS), "description": "bot, awaiting_agent (the agents' queue) or agent"},
        "agent_id": {"maxLength": MAX_AGENT_ID},
        "text": {
            "maxLength": 200,
            "description": "Only conversations with a message containing it (any case), 2..200 characters",
        },
    },
)
