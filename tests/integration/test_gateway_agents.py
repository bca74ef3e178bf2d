"""A tenant's people in a conversation through the REST API, on the real stack: the admin
invites an agent and a viewer, the agent signs in, reads the customer's conversation
and replies — and the Facebook Send API stand-in receives the reply, sent by the
Facebook spoke with the tenant's own page token and the human-agent tag; the viewer
cannot write; another tenant's member sees nothing; a resend is not sent twice. And
the handoff: agents take a conversation from the bot, and hand it back."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from hubs.message.aggregate import conversation_id
from hubs.message.commands import RecordInboundMessage, RouteMessage, StartConversation
from hubs.tenant.commands import ConnectChannel, channel_account_id
from hubs.tenant.proof import page_token_context
from infra.command_client import CommandClient, new_meta
from infra.sealing import Sealer, credential_keys_dir
from poseidon import bootstrap
from tests.harness import eventually, free_port
from tests.integration.test_gateway import Api, _login, _problem
from tests.standins.facebook import PAGE_INBOX_APP_ID, push_inbox, running_facebook

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


async def _tenant_with_people(api: Api, platform, facebook, psid: str, wrote: datetime, roles: dict[str, str]):
    """A tenant whose admin invited one person per `roles` entry (name → role), with the
    page connected under its own sealed token (what the connect flow records) and a
    conversation in which the customer `psid` wrote at `wrote`: (tenant, tokens by name
    incl. admin and a stranger, principal ids by name, conversation id)."""
    settings = platform.settings
    ids, tokens = {}, {}
    for name in ("admin", "stranger", *roles):
        ids[name], tokens[name] = await api.person(_login())
    tenant = f"acme-{uuid.uuid4().hex[:8]}"
    assert (await api.call("POST", "/v1/tenants", tokens["admin"], {"tenant_id": tenant, "name": "Acme"}))[0] == 201
    for name, role in roles.items():
        invite = {"principal_id": ids[name], "role": role}
        assert (await api.call("POST", f"/v1/tenants/{tenant}/invitations", tokens["admin"], invite))[0] == 201
        assert (await api.call("POST", f"/v1/tenants/{tenant}/invitations/accept", tokens[name]))[0] == 200

    conversation = conversation_id(tenant, "facebook", PAGE, psid)
    sealed = Sealer(credential_keys_dir(settings)).seal(PAGE_TOKEN.encode(), page_token_context(tenant, PAGE))
    async with CommandClient(settings, bootstrap.codec(settings), list(bootstrap.hubs().values())) as client:
        meta = new_meta(channel_account_id("facebook", PAGE), tenant, actor="connect-flow")
        connect = ConnectChannel(meta, channel="facebook", account_id=PAGE, proof="facebook_login", sealed_token=sealed)
        assert (await client.send(connect)).accepted
        router = new_meta(conversation, tenant, actor="router")
        assert (await client.send(StartConversation(router, "facebook", PAGE, psid))).accepted
        facebook.state.user_wrote(psid, int(wrote.timestamp() * 1000))
        inbound = RecordInboundMessage(
            new_meta(conversation, tenant, actor="router"), "mid.customer-1", "Where is my order?", wrote, []
        )
        assert (await client.send(inbound)).accepted
    return tenant, tokens, ids, conversation


async def test_an_agent_reads_the_conversation_and_replies_the_send_api_receives_it_and_a_viewer_cannot(people, platform):
    api, facebook = people
    wrote = datetime.now(UTC) - timedelta(hours=30)  # past Messenger's 24 h: only the human-agent tag allows a reply
    tenant, tokens, _, conversation = await _tenant_with_people(
        api, platform, facebook, PSID, wrote, {"agent": "agent", "viewer": "viewer"}
    )
    agent, viewer, stranger = tokens["agent"], tokens["viewer"], tokens["stranger"]

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


async def test_agents_take_a_conversation_from_the_bot_and_hand_it_back_and_routing_follows(people, platform):
    """Take → the bot is no longer asked (the hub turns a decision for the bot into
    HeldByAgent); another agent can neither take nor answer it; hand back → the bot
    answers again; a request puts it in the agents' queue; viewers and strangers cannot."""
    api, facebook = people
    psid = f"24000000{uuid.uuid4().int % 10**8:08d}"
    tenant, tokens, ids, conversation = await _tenant_with_people(
        api, platform, facebook, psid, datetime.now(UTC), {"ann": "agent", "bo": "agent", "viewer": "viewer"}
    )
    ann, bo = tokens["ann"], tokens["bo"]
    path = f"/v1/tenants/{tenant}/conversations/{conversation}"
    listing = f"/v1/tenants/{tenant}/conversations"

    async def handled(expected: str):
        status, body, _ = await api.call("GET", path, ann)
        return body if status == 200 and body.get("handled_by") == expected else None

    assert (await eventually(lambda: handled("bot")))["agent_id"] == ""

    status, taken, headers = await api.call("POST", path + "/take", ann, {}, {"Idempotency-Key": f"take-{uuid.uuid4()}"})
    assert status == 200 and (taken["handled_by"], taken["agent_id"]) == ("agent", ids["ann"]), taken
    token = headers["Poseidon-Consistency-Token"]
    status, read, _ = await api.call("GET", path, ann, headers={"Poseidon-Consistency-Token": token})
    assert status == 200 and (read["handled_by"], read["agent_id"]) == ("agent", ids["ann"])  # read-your-writes
    mine = (await api.call("GET", f"{listing}?handled_by=agent&agent_id={ids['ann']}", ann))[1]
    assert [c["conversation_id"] for c in mine["conversations"]] == [conversation]
    assert (await api.call("GET", f"{listing}?handled_by=bot", ann))[1]["conversations"] == []
    again = await api.call("POST", path + "/take", ann, {})
    assert again[0] == 200 and again[1]["handled_by"] == "agent"  # taking one's own again changes nothing

    # Another agent can neither take it nor answer in it; nothing reaches the customer.
    status, body, headers = await api.call("POST", path + "/take", bo, {})
    assert status == 409 and body["rule"] == "HeldByAnotherAgent" and ids["ann"] in body["detail"], body
    status, body, _ = await api.call("POST", path + "/messages", bo, {"text": "I can help!"})
    assert status == 409 and body["rule"] == "HeldByAnotherAgent"

    # A message the router sends to the bot goes to the people while ann holds the conversation.
    settings = platform.settings
    app = str(uuid.uuid4())
    async with CommandClient(settings, bootstrap.codec(settings), list(bootstrap.hubs().values())) as client:

        async def route(message_id: str):
            command = RouteMessage(
                new_meta(conversation, tenant, actor="message-router"), channel="facebook", channel_account_id=PAGE,
                contact_id=psid, message_id=message_id, text="still there?", received_at=datetime.now(UTC), routed=True,
                rule="Routed", reason="bot app passed its guards", app_id=app, spoke="botpress", facts={"tenant": tenant},
            )  # fmt: skip
            assert (await client.send(command)).accepted

        await route("mid.customer-2")

        async def routing_of(message_id: str):
            status, body, _ = await api.call("GET", f"{path}/messages/{message_id}", ann)
            return body["message"]["routing"] if status == 200 and body["message"].get("routing") else None

        held = await eventually(lambda: routing_of("mid.customer-2"))
        assert (held["rule"], held["spoke"], held["facts"]["handled_by"]) == ("HeldByAgent", "agent", "agent")
        assert f"agent {ids['ann']} took the conversation" in held["reason"]

        # Viewers and strangers cannot hand it back; ann can, and then the bot is asked again.
        assert (await api.call("POST", path + "/hand-back", tokens["viewer"], {}))[0] == 403
        assert (await api.call("POST", path + "/hand-back", tokens["stranger"], {}))[0] == 403
        status, back, _ = await api.call("POST", path + "/hand-back", ann, {"reason": "order found"})
        assert status == 200 and (back["handled_by"], back["agent_id"]) == ("bot", "")
        status, body, _ = await api.call("POST", path + "/hand-back", ann, {})
        assert status == 409 and body["rule"] == "NotWithAgent"
        await route("mid.customer-3")
        assert (await eventually(lambda: routing_of("mid.customer-3")))["spoke"] == "botpress"

    # A request for a person queues it for every agent; bo takes it from the queue.
    status, body, _ = await api.call("POST", path + "/agent-requests", bo, {"reason": " "})
    assert status == 400 and "reason" in body["detail"]
    status, queued, _ = await api.call("POST", path + "/agent-requests", bo, {"reason": "asked for a human"})
    assert status == 200 and queued["handled_by"] == "awaiting_agent"

    async def in_queue():
        body = (await api.call("GET", f"{listing}?handled_by=awaiting_agent", bo))[1]
        return body if [c["conversation_id"] for c in body.get("conversations", [])] == [conversation] else None

    await eventually(in_queue)
    status, taken, _ = await api.call("POST", path + "/take", bo, {})
    assert status == 200 and taken["agent_id"] == ids["bo"]
    assert (await api.call("POST", path + "/take", tokens["viewer"], {}))[0] == 403
    assert facebook.state.sent_to(psid) == []


async def test_the_page_inbox_takes_a_thread_over_messenger_handover_and_handing_it_back_here_takes_it_back(people, platform):
    """Messenger's Handover Protocol through real ingress and router: a page admin takes
    the thread in the Page Inbox (our app gets take_thread_control) → the conversation is
    held by that app and the bot is not asked; our agent hands it back → the Facebook
    spoke calls take_thread_control with the tenant's page token; the Page Inbox passing
    a thread back (pass_thread_control) returns it to the bot with no call."""
    api, facebook = people
    psid = f"25000000{uuid.uuid4().int % 10**8:08d}"
    tenant, tokens, ids, conversation = await _tenant_with_people(
        api, platform, facebook, psid, datetime.now(UTC), {"ann": "agent"}
    )
    port = free_port([*platform.settings.grpc_ports.values(), *(p.ops_port for p in platform.procs.values())])
    platform.launch("ingress", "ingress", env={"POSEIDON_INGRESS_PORT": str(port)}, wait=False)
    platform.launch("router", "router", env={"POSEIDON_FACEBOOK_APP_ID": facebook.state.app_id}, wait=False)
    for name in ("ingress", "router"):
        await asyncio.to_thread(platform.wait_healthy, name, 90)
    facebook.state.webhook_url = f"http://127.0.0.1:{port}/webhooks/facebook"
    path = f"/v1/tenants/{tenant}/conversations/{conversation}"
    inbox = f"facebook-app:{PAGE_INBOX_APP_ID}"

    async def handled_by(expected: tuple[str, str]):
        status, body, _ = await api.call("GET", path, tokens["ann"])
        return body if status == 200 and (body.get("handled_by"), body.get("agent_id")) == expected else None

    await eventually(lambda: handled_by(("bot", "")))
    assert await push_inbox(facebook.app, PAGE, psid, True) == 200
    await eventually(lambda: handled_by(("agent", inbox)))
    assert facebook.state.handovers == []  # Facebook told us; nothing to call

    # Our agent cannot take it while the Page Inbox has it; handing it back takes the thread back.
    status, body, _ = await api.call("POST", path + "/take", tokens["ann"], {})
    assert status == 409 and body["rule"] == "HeldByAnotherAgent" and PAGE_INBOX_APP_ID in body["detail"]
    status, back, _ = await api.call("POST", path + "/hand-back", tokens["ann"], {"reason": "the bot knows this one"})
    assert status == 200 and back["handled_by"] == "bot"

    async def taken_back():
        return facebook.state.handovers or None

    [(action, to, owner, metadata)] = await eventually(taken_back)
    assert (action, to, owner) == ("take_thread_control", psid, facebook.state.app_id)
    assert "the bot knows this one" in metadata
    take = [r for r in facebook.state.requests if r.path.endswith("/me/take_thread_control")]
    assert [r.token for r in take] == [PAGE_TOKEN] and take[0].status == 200

    # The Page Inbox takes it again and then passes it back itself: the bot has it, no call of ours.
    assert await push_inbox(facebook.app, PAGE, psid, True) == 200
    await eventually(lambda: handled_by(("agent", inbox)))
    assert await push_inbox(facebook.app, PAGE, psid, False) == 200
    await eventually(lambda: handled_by(("bot", "")))
    await asyncio.sleep(1)
    assert len(facebook.state.handovers) == 1 and facebook.state.sent_to(psid) == []
