"""A tenant's people in a conversation through the REST API, on the real stack: the admin
invites an agent and a viewer, the agent signs in, reads the customer's conversation
and replies — and the Facebook Send API stand-in receives the reply, sent by the
Facebook spoke with the tenant's own page token and the human-agent tag; the viewer
cannot write; another tenant's member sees nothing; a resend is not sent twice."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from hubs.message.aggregate import conversation_id
from hubs.message.commands import RecordInboundMessage, StartConversation
from hubs.tenant.commands import ConnectChannel, channel_account_id
from hubs.tenant.proof import page_token_context
from infra.command_client import CommandClient, new_meta
from infra.sealing import Sealer, credential_keys_dir
from poseidon import bootstrap
from tests.harness import eventually, free_port
from tests.integration.test_gateway import Api, _login, _problem
from tests.standins.facebook import running_facebook

pytestmark = pytest.mark.integration

PAGE, PAGE_TOKEN, PSID = "104857600777", "acme-own-page-token", "2400000000000777"


@pytest.fixture
async def people(platform):
    async with running_facebook() as facebook:
        facebook.state.add_page(PAGE, PAGE_TOKEN)
        for hub in ("identity", "tenant", "message"):
            for role in ("processor", "projector", "grpc"):
                platform.start(role, hub, wait=False)
        graph = {"POSEIDON_FACEBOOK_GRAPH_URL": facebook.url}
        platform.launch("spoke-facebook", "spoke", "facebook", env=graph, wait=False)
        for name in list(platform.procs):
            await asyncio.to_thread(platform.wait_healthy, name, 90)
        port = free_port([*platform.settings.grpc_ports.values(), *(p.ops_port for p in platform.procs.values())])
        platform.launch("gateway", "gateway", env={"POSEIDON_GATEWAY_PORT": str(port)})
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            yield Api(http, platform), facebook


async def test_an_agent_reads_the_conversation_and_replies_the_send_api_receives_it_and_a_viewer_cannot(people, platform):
    api, facebook = people
    settings = platform.settings
    _, admin = await api.person(_login())
    agent_id, agent = await api.person(_login())
    viewer_id, viewer = await api.person(_login())
    _, stranger = await api.person(_login())
    tenant = f"acme-{uuid.uuid4().hex[:8]}"
    assert (await api.call("POST", "/v1/tenants", admin, {"tenant_id": tenant, "name": "Acme"}))[0] == 201
    for person, token, role in ((agent_id, agent, "agent"), (viewer_id, viewer, "viewer")):
        assert (await api.call("POST", f"/v1/tenants/{tenant}/invitations", admin, {"principal_id": person, "role": role}))[
            0
        ] == 201
        assert (await api.call("POST", f"/v1/tenants/{tenant}/invitations/accept", token))[0] == 200

    # The page is acme's, with its own sealed token (what the connect flow records), and a customer wrote.
    conversation = conversation_id(tenant, "facebook", PAGE, PSID)
    sealed = Sealer(credential_keys_dir(settings)).seal(PAGE_TOKEN.encode(), page_token_context(tenant, PAGE))
    async with CommandClient(settings, bootstrap.codec(settings), list(bootstrap.hubs().values())) as client:
        meta = new_meta(channel_account_id("facebook", PAGE), tenant, actor="connect-flow")
        connect = ConnectChannel(meta, channel="facebook", account_id=PAGE, proof="facebook_login", sealed_token=sealed)
        assert (await client.send(connect)).accepted
        router = new_meta(conversation, tenant, actor="router")
        assert (await client.send(StartConversation(router, "facebook", PAGE, PSID))).accepted
        wrote = datetime.now(UTC) - timedelta(hours=30)  # past Messenger's 24 h: only the human-agent tag allows a reply
        facebook.state.user_wrote(PSID, int(wrote.timestamp() * 1000))
        inbound = RecordInboundMessage(
            new_meta(conversation, tenant, actor="router"), "mid.customer-1", "Where is my order?", wrote, []
        )
        assert (await client.send(inbound)).accepted

    path = f"/v1/tenants/{tenant}/conversations/{conversation}"

    async def projected():
        status, body, _ = await api.call("GET", path + "/messages", agent)
        return body if status == 200 and body["messages"] else None

    listed = await eventually(projected)
    assert [m["text"] for m in listed["messages"]] == ["Where is my order?"]

    key = f"reply-{uuid.uuid4()}"
    status, reply, headers = await api.call(
        "POST", path + "/messages", agent, {"text": "It ships today."}, {"Idempotency-Key": key}
    )
    assert status == 201 and reply["conversation_id"] == conversation and reply["message_id"], reply
    again = await api.call("POST", path + "/messages", agent, {"text": "It ships today."}, {"Idempotency-Key": key})
    assert again[0] == 201 and again[1]["message_id"] == reply["message_id"] and again[1]["duplicate"] is True

    async def delivered():
        sent = facebook.state.sent_to(PSID)
        return sent or None

    [sent] = await eventually(delivered)
    assert sent.message == {"text": "It ships today."} and sent.token == PAGE_TOKEN
    assert (sent.messaging_type, sent.tag) == ("MESSAGE_TAG", "HUMAN_AGENT")

    async def marked_sent():
        status, body, _ = await api.call("GET", f"{path}/messages/{reply['message_id']}", agent)
        return body if status == 200 and body["message"]["status"] == "sent" else None

    detail = await eventually(marked_sent)
    assert detail["message"]["direction"] == "outbound"
    await asyncio.sleep(1)
    assert len(facebook.state.sent_to(PSID)) == 1  # the resend was answered, never sent again

    # A viewer reads but cannot write; another tenant's member is refused as if the tenant did not exist.
    assert (await api.call("GET", path, viewer))[0] == 200
    status, body, headers = await api.call("POST", path + "/messages", viewer, {"text": "me too"})
    assert status == 403
    _problem(403, body, headers, "PermissionDenied")
    status, body, _ = await api.call("POST", path + "/messages", stranger, {"text": "hello"})
    assert status == 403
    status, body, _ = await api.call("POST", f"/v1/tenants/{tenant}/conversations/{uuid.uuid4()}/messages", agent, {"text": "x"})
    assert status == 404 and body["rule"] == "NotFound"
    status, body, _ = await api.call("POST", path + "/messages", agent, {"text": "  "})
    assert status == 400 and "text" in body["detail"]
    assert len(facebook.state.sent_to(PSID)) == 1
