"""The Message hub end to end on the real stack: commands → Avro events → the
message read store → gRPC answers, with duplicate message ids, delivery status
moves and their history, no message text in any log, tenant isolation on every
method and unauthenticated callers refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hubs.message.aggregate import conversation_id
from hubs.message.commands import (
    CloseConversation,
    RecordInboundMessage,
    RecordOutboundMessage,
    StartConversation,
    UpdateDeliveryStatus,
)
from infra.command_client import CommandClient, new_meta
from poseidon import bootstrap
from schemas.protos import message_pb2 as pb
from schemas.protos import message_pb2_grpc
from tests.harness import bearer, channel, eventually, mint_token, read_topic
from tests.integration.tenancy import member_of

pytestmark = pytest.mark.integration

TENANT = "tenant-a"
OTHER_TENANT = "tenant-b"
# Distinctive contact text: must reach the read store and never a log line.
SECRET = "Zanzibar-7731 please call me at +41 79 000 00 00"
RECEIVED_AT = datetime(2026, 3, 1, 9, 15, 30, 250000, tzinfo=UTC)


@pytest.fixture
async def running(platform):
    for role in ("processor", "projector", "grpc"):
        platform.start(role, "message", wait=False)
    for role in ("processor", "projector", "grpc"):
        platform.wait_healthy(f"message-{role}")
    codec = bootstrap.codec(platform.settings)
    async with CommandClient(platform.settings, codec, [bootstrap.hub("message")]) as client:
        yield platform, client, codec


def stub(settings, metadata=None):
    ch = channel(settings, "message", metadata)
    return ch, message_pb2_grpc.MessageQueryStub(ch)


class Conversation:
    """Sends one conversation's commands and returns their results."""

    def __init__(self, client: CommandClient, tenant: str = TENANT, channel_name: str = "facebook", contact: str | None = None):
        self.client, self.tenant, self.channel = client, tenant, channel_name
        self.account, self.contact = "page-100", contact or f"psid-{uuid.uuid4().hex[:10]}"
        self.id = conversation_id(tenant, channel_name, self.account, self.contact)

    def meta(self):
        return new_meta(self.id, self.tenant, actor="router", correlation_id=f"corr-{self.id[:8]}")

    async def start(self):
        return await self.client.send(StartConversation(self.meta(), self.channel, self.account, self.contact))

    async def inbound(self, message_id: str, text: str, attachments=()):
        command = RecordInboundMessage(self.meta(), message_id, text, RECEIVED_AT, list(attachments))
        return await self.client.send(command)

    async def outbound(self, message_id: str, text: str, in_reply_to: str = ""):
        return await self.client.send(RecordOutboundMessage(self.meta(), message_id, text, in_reply_to))

    async def status(self, message_id: str, status: str, reason: str = ""):
        return await self.client.send(UpdateDeliveryStatus(self.meta(), message_id, status, reason))

    async def close(self, reason: str = ""):
        return await self.client.send(CloseConversation(self.meta(), reason))


async def projected(settings, tenant: str, conversation: str, version: int) -> pb.Conversation:
    ch, query = stub(settings)
    async with ch:

        async def check():
            try:
                reply = await query.GetConversation(pb.GetConversationRequest(tenant_id=tenant, conversation_id=conversation))
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return None
                raise
            return reply if reply.version >= version else None

        return await eventually(check)


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def test_a_conversation_travels_to_events_the_read_store_and_grpc_answers_without_text_in_any_log(running):
    platform, client, codec = running
    settings = platform.settings
    talk = Conversation(client)
    attachment = {"kind": "image", "key": f"{TENANT}/attachments/1.jpg", "content_type": "image/jpeg", "size_bytes": 5120}

    assert (await talk.start()).accepted
    first = await talk.inbound("mid.1", SECRET, [attachment])
    again = await talk.inbound("mid.1", SECRET)  # the platform re-delivers the webhook
    reply = await talk.outbound("out-1", "Thanks, an agent will call you.", in_reply_to="mid.1")
    moves = [await talk.status("out-1", s) for s in ("sent", "delivered", "read")]
    backwards = await talk.status("out-1", "sent")
    assert first.accepted and reply.accepted and all(m.accepted for m in moves)
    assert (again.accepted, again.rejection) == (False, "DuplicateMessage")
    assert (backwards.accepted, backwards.rejection) == (False, "InvalidStatusTransition")
    failing = await talk.outbound("out-2", "Are you still there?")
    failed = await talk.status("out-2", "failed", reason="(#10) outside the 24 hour window")
    assert failing.accepted and failed.accepted and failed.version == 8
    other_channel = Conversation(client, channel_name="instagram")
    assert (await other_channel.start()).accepted
    assert (await other_channel.close("spam")).accepted

    # The log: the events in order, the contact's text in the value only.
    records = [r for r in await read_topic(settings, settings.topic("message.events")) if r.key == talk.id.encode()]
    decoded = [codec.decode(r.value) for r in records]
    assert [d.name.rsplit(".", 1)[1] for d in decoded] == [
        "ConversationStarted", "InboundMessageRecorded", "OutboundMessageRecorded",
        "DeliveryStatusUpdated", "DeliveryStatusUpdated", "DeliveryStatusUpdated",
        "OutboundMessageRecorded", "DeliveryStatusUpdated",
    ]  # fmt: skip
    assert [d.record["envelope"]["aggregate_version"] for d in decoded] == list(range(1, 9))
    # InboundMessageRecorded v2 reads every attachment with a `url` (empty: the platform gave none).
    assert decoded[1].record["text"] == SECRET and decoded[1].record["attachments"] == [{**attachment, "url": ""}]
    assert all(SECRET.encode() not in b"".join(v for _, v in r.headers) for r in records)

    conversation = await projected(settings, TENANT, talk.id, 8)
    assert (conversation.channel, conversation.channel_account_id, conversation.contact_id) == (
        "facebook",
        "page-100",
        talk.contact,
    )
    assert (conversation.status, conversation.message_count, conversation.tenant_id) == ("open", 3, TENANT)
    assert conversation.HasField("last_message_at")
    await projected(settings, TENANT, other_channel.id, 2)

    ch, query = stub(settings)
    async with ch:
        everything = await query.ListConversations(pb.ListConversationsRequest(tenant_id=TENANT))
        assert {c.conversation_id for c in everything.conversations} == {talk.id, other_channel.id}
        # Most recently active first: the instagram one started after the last facebook message.
        assert [c.conversation_id for c in everything.conversations] == [other_channel.id, talk.id]
        page1 = await query.ListConversations(pb.ListConversationsRequest(tenant_id=TENANT, page_size=1))
        page2 = await query.ListConversations(
            pb.ListConversationsRequest(tenant_id=TENANT, page_size=1, page_token=page1.next_page_token)
        )
        assert [c.conversation_id for c in (*page1.conversations, *page2.conversations)] == [other_channel.id, talk.id]
        assert page2.next_page_token == ""
        closed = await query.ListConversations(pb.ListConversationsRequest(tenant_id=TENANT, channel="instagram"))
        assert [(c.conversation_id, c.status) for c in closed.conversations] == [(other_channel.id, "closed")]

        # Search: by contact, by a message's text in any case; LIKE's wildcards are literal.
        def search(**by):
            return query.ListConversations(pb.ListConversationsRequest(tenant_id=TENANT, **by))

        assert [c.conversation_id for c in (await search(contact_id=talk.contact)).conversations] == [talk.id]
        assert [c.conversation_id for c in (await search(text="AGENT WILL")).conversations] == [talk.id]
        assert [c.conversation_id for c in (await search(text="still there", channel="facebook")).conversations] == [talk.id]
        assert (await search(text="%%")).conversations == [] and (await search(text="a_ agent")).conversations == []
        assert (await search(text="still there", channel="instagram")).conversations == []
        with pytest.raises(grpc.aio.AioRpcError, match="text must be"):
            await search(text="x")

        messages = await query.ListMessages(pb.ListMessagesRequest(tenant_id=TENANT, conversation_id=talk.id, page_size=2))
        rest = await query.ListMessages(
            pb.ListMessagesRequest(tenant_id=TENANT, conversation_id=talk.id, page_token=messages.next_page_token)
        )
        listed = [*messages.messages, *rest.messages]
        assert [(m.sequence, m.message_id, m.direction, m.status) for m in listed] == [
            (1, "mid.1", "inbound", "received"),
            (2, "out-1", "outbound", "read"),
            (3, "out-2", "outbound", "failed"),
        ]
        assert rest.next_page_token == ""
        inbound = listed[0]
        assert inbound.text == SECRET
        assert [(a.kind, a.key, a.content_type, a.size_bytes) for a in inbound.attachments] == [
            ("image", attachment["key"], "image/jpeg", 5120)
        ]
        assert inbound.received_at.ToDatetime(tzinfo=UTC) == RECEIVED_AT
        assert listed[2].status_reason == "(#10) outside the 24 hour window"

        detail = await query.GetMessage(pb.GetMessageRequest(tenant_id=TENANT, conversation_id=talk.id, message_id="out-1"))
        assert (detail.message.in_reply_to, detail.message.status, detail.message.HasField("received_at")) == (
            "mid.1",
            "read",
            False,
        )
        assert [(h.previous_status, h.status, h.version) for h in detail.history] == [
            ("", "queued", 3),
            ("queued", "sent", 4),
            ("sent", "delivered", 5),
            ("delivered", "read", 6),
        ]
        received = await query.GetMessage(pb.GetMessageRequest(tenant_id=TENANT, conversation_id=talk.id, message_id="mid.1"))
        assert [h.status for h in received.history] == ["received"]

        missing = await refused(
            query.GetMessage(pb.GetMessageRequest(tenant_id=TENANT, conversation_id=talk.id, message_id="nope"))
        )
        assert missing.code() == grpc.StatusCode.NOT_FOUND

        health = health_pb2_grpc.HealthStub(ch)
        reply = await health.Check(health_pb2.HealthCheckRequest(service="poseidon.message.v1.MessageQuery"))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(ch)
        async for response in reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])):
            assert "poseidon.message.v1.MessageQuery" in {s.name for s in response.list_services_response.service}
            break

    logs = {name: platform.procs[name].log.read_text(errors="replace") for name in platform.procs}
    assert "command accepted" in logs["message-processor"] and "DuplicateMessage" in logs["message-processor"]
    for name, log in logs.items():
        assert "Zanzibar" not in log and "+41 79" not in log, f"message text in the {name} log"


async def test_every_method_refuses_other_tenants_and_unauthenticated_callers(running):
    platform, client, _ = running
    settings = platform.settings
    alice, bob = f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"
    ours, theirs = Conversation(client, TENANT), Conversation(client, OTHER_TENANT)
    for talk in (ours, theirs):
        assert (await talk.start()).accepted
        assert (await talk.inbound("mid.1", SECRET)).accepted
    # A tenant cannot write into another tenant's conversation either.
    stolen = await client.send(RecordOutboundMessage(new_meta(ours.id, OTHER_TENANT), "mid.2", "hi", ""))
    assert (stolen.accepted, stolen.rejection) == (False, "TenantMismatch")
    await member_of(platform, TENANT, alice, "viewer")
    await member_of(platform, OTHER_TENANT, bob, "viewer")
    await projected(settings, TENANT, ours.id, 2)
    await projected(settings, OTHER_TENANT, theirs.id, 2)

    def calls(query, tenant: str, conversation: str):
        return {
            "ListConversations": lambda: query.ListConversations(pb.ListConversationsRequest(tenant_id=tenant)),
            "GetConversation": lambda: query.GetConversation(
                pb.GetConversationRequest(tenant_id=tenant, conversation_id=conversation)
            ),
            "ListMessages": lambda: query.ListMessages(pb.ListMessagesRequest(tenant_id=tenant, conversation_id=conversation)),
            "GetMessage": lambda: query.GetMessage(
                pb.GetMessageRequest(tenant_id=tenant, conversation_id=conversation, message_id="mid.1")
            ),
        }

    # A viewer reads its own tenant on every method.
    ch, query = stub(settings, bearer(mint_token(settings, alice)))
    async with ch:
        for method, call in calls(query, TENANT, ours.id).items():
            assert await call(), method
        conversations = await query.ListConversations(pb.ListConversationsRequest(tenant_id=TENANT))
        assert [c.conversation_id for c in conversations.conversations] == [ours.id]

    ch, query = stub(settings, bearer(mint_token(settings, bob)))
    async with ch:
        # Asking about tenant A as a member of B only: refused, whatever the ids.
        for method, call in calls(query, TENANT, ours.id).items():
            error = await refused(call())
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED, method
        # Asking in B for A's conversation: it is simply not there, like a missing one.
        for method, call in calls(query, OTHER_TENANT, ours.id).items():
            if method == "ListConversations":
                listed = await call()
                assert [c.conversation_id for c in listed.conversations] == [theirs.id]
                continue
            error = await refused(call())
            assert error.code() == grpc.StatusCode.NOT_FOUND, method
            unknown = str(uuid.uuid4())
            missing = await refused(calls(query, OTHER_TENANT, unknown)[method]())
            assert missing.code() == error.code(), method
            assert missing.details().replace(unknown, "X") == error.details().replace(ours.id, "X"), method

    # A platform principal asking in the wrong tenant: not found either.
    ch, query = stub(settings)
    async with ch:
        for method, call in calls(query, OTHER_TENANT, ours.id).items():
            if method != "ListConversations":
                assert (await refused(call())).code() == grpc.StatusCode.NOT_FOUND, method

        for request_call, field in (
            (
                lambda: query.GetConversation(pb.GetConversationRequest(tenant_id=TENANT, conversation_id="nope")),
                "conversation_id",
            ),
            (lambda: query.GetConversation(pb.GetConversationRequest(conversation_id=ours.id)), "tenant_id"),
            (lambda: query.ListConversations(pb.ListConversationsRequest(tenant_id=TENANT, channel="Face Book")), "channel"),
            (lambda: query.ListConversations(pb.ListConversationsRequest(tenant_id=TENANT, page_token="garbage")), "page_token"),
            (
                lambda: query.ListMessages(pb.ListMessagesRequest(tenant_id=TENANT, conversation_id=ours.id, page_size=501)),
                "page_size",
            ),
            (
                lambda: query.ListMessages(pb.ListMessagesRequest(tenant_id=TENANT, conversation_id=ours.id, page_token="x")),
                "page_token",
            ),
            (lambda: query.GetMessage(pb.GetMessageRequest(tenant_id=TENANT, conversation_id=ours.id)), "message_id"),
        ):
            error = await refused(request_call())
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and field in error.details(), (field, error.details())

    # No token, a forged one, an expired one: UNAUTHENTICATED on every method.
    for metadata in ((), bearer(mint_token(settings, alice)[:-4] + "AAAA"), bearer(mint_token(settings, alice, ttl_s=-60))):
        ch, query = stub(settings, metadata)
        async with ch:
            for method, call in calls(query, TENANT, ours.id).items():
                assert (await refused(call())).code() == grpc.StatusCode.UNAUTHENTICATED, method
