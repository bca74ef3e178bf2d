"""Message gRPC queries (ListConversations, GetConversation, ListMessages,
GetMessage) over the message read store. Parsing and answering only; SQL lives in
projections/message/queries.py. Never logs message text."""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import grpc

from infra.grpc_server import InvalidArgument, NotFound, QueryService, ServiceDeps, to_timestamp
from projections.message import PROJECTION, queries
from schemas.protos import message_pb2, message_pb2_grpc

MAX_PAGE = 500
DEFAULT_PAGE = 50
_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MessageQueries(message_pb2_grpc.MessageQueryServicer):
    def __init__(self, deps: ServiceDeps):
        self.pool, self.authorizer = deps.pool, deps.authorizer

    async def ListConversations(
        self, request: message_pb2.ListConversationsRequest, context: grpc.aio.ServicerContext
    ) -> message_pb2.ConversationPage:
        tenant_id = _tenant(request.tenant_id)
        if request.channel and not _CHANNEL.match(request.channel):
            raise InvalidArgument("channel must be a lower-case name like facebook, or empty for every channel")
        size = _page_size(request.page_size)
        before = _decode_conversation_token(request.page_token)
        await self.authorizer.require(tenant_id, "viewer")
        rows = await queries.conversations_page(self.pool, tenant_id, request.channel or None, before, size + 1)
        page, more = rows[:size], len(rows) > size
        return message_pb2.ConversationPage(
            conversations=[_conversation(r) for r in page],
            next_page_token=_encode_conversation_token(page[-1]) if more else "",
        )

    async def GetConversation(
        self, request: message_pb2.GetConversationRequest, context: grpc.aio.ServicerContext
    ) -> message_pb2.Conversation:
        tenant_id, conversation_id = _tenant(request.tenant_id), _conversation_id(request.conversation_id)
        await self.authorizer.require(tenant_id, "viewer")
        row = await queries.conversation(self.pool, tenant_id, conversation_id)
        if row is None:
            raise _conversation_not_found(tenant_id, conversation_id)
        return _conversation(row)

    async def ListMessages(
        self, request: message_pb2.ListMessagesRequest, context: grpc.aio.ServicerContext
    ) -> message_pb2.MessagePage:
        tenant_id, conversation_id = _tenant(request.tenant_id), _conversation_id(request.conversation_id)
        size = _page_size(request.page_size)
        after = _decode_message_token(request.page_token)
        await self.authorizer.require(tenant_id, "viewer")
        rows = await queries.messages_page(self.pool, tenant_id, conversation_id, after, size + 1)
        if not rows and await queries.conversation(self.pool, tenant_id, conversation_id) is None:
            raise _conversation_not_found(tenant_id, conversation_id)
        page, more = rows[:size], len(rows) > size
        return message_pb2.MessagePage(
            messages=[_message(r) for r in page],
            next_page_token=_encode_message_token(page[-1]["sequence"]) if more else "",
        )

    async def GetMessage(
        self, request: message_pb2.GetMessageRequest, context: grpc.aio.ServicerContext
    ) -> message_pb2.MessageDetail:
        tenant_id, conversation_id = _tenant(request.tenant_id), _conversation_id(request.conversation_id)
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


def _tenant(value: str) -> str:
    if not value:
        raise InvalidArgument("tenant_id is required")
    return value


def _conversation_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidArgument(f"conversation_id must be a UUID, not {value[:80]!r}") from None


def _conversation_not_found(tenant_id: str, conversation_id: uuid.UUID) -> NotFound:
    return NotFound(f"conversation {conversation_id} not found for tenant {tenant_id}")


def _page_size(requested: int) -> int:
    size = requested or DEFAULT_PAGE
    if not 1 <= size <= MAX_PAGE:
        raise InvalidArgument(f"page_size must be between 1 and {MAX_PAGE}, not {size}")
    return size


# Page tokens are opaque to callers; the prefix versions their format.
def _encode_conversation_token(row) -> str:
    micros = (row["last_activity_at"] - _EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(f"c1:{micros}:{row['conversation_id']}".encode()).decode()


def _decode_conversation_token(token: str) -> tuple[datetime, uuid.UUID]:
    if not token:
        return queries.FIRST_CURSOR
    try:
        prefix, micros, conversation_id = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        if prefix != "c1":
            raise ValueError(prefix)
        return _EPOCH + timedelta(microseconds=int(micros)), uuid.UUID(conversation_id)
    except (ValueError, UnicodeDecodeError, OverflowError):
        raise InvalidArgument("page_token is not a token this service issued") from None


def _encode_message_token(sequence: int) -> str:
    return base64.urlsafe_b64encode(f"m1:{sequence}".encode()).decode()


def _decode_message_token(token: str) -> int:
    if not token:
        return 0
    try:
        prefix, sequence = base64.urlsafe_b64decode(token.encode()).decode().split(":")
        if prefix != "m1":
            raise ValueError(prefix)
        return int(sequence)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("page_token is not a token this service issued") from None


def _add_to_server(server: grpc.aio.Server, deps: ServiceDeps) -> None:
    message_pb2_grpc.add_MessageQueryServicer_to_server(MessageQueries(deps), server)


SERVICE = QueryService(
    hub="message",
    read_model=PROJECTION,
    service_names=(message_pb2.DESCRIPTOR.services_by_name["MessageQuery"].full_name,),
    add_to_server=_add_to_server,
)
