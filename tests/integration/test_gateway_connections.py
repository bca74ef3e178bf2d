"""A tenant admin connects the tenant's own bot and Odoo through the REST API (the
gateway's transcoding of AppConnections.ConnectBot and TenantChannels.ConnectOdoo), on
the real stack: the secrets go in once and never come back in any answer; a wrong
Odoo key is a problem naming OdooAccessDenied; another tenant's member can do neither."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from hubs.app.commands import RegisterApp, SubscribeApp, subscription_id
from infra.command_client import CommandClient, new_meta
from poseidon import bootstrap
from tests.harness import eventually, free_port
from tests.integration.test_gateway import Api, _login, _problem
from tests.standins.odoo import running_odoo

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(platform):
    for hub in ("identity", "tenant", "app"):
        for role in ("processor", "projector", "grpc"):
            platform.start(role, hub, wait=False)
    for name in list(platform.procs):
        await asyncio.to_thread(platform.wait_healthy, name, 90)
    port = free_port([*platform.settings.grpc_ports.values(), *(p.ops_port for p in platform.procs.values())])
    platform.launch("gateway", "gateway", env={"POSEIDON_GATEWAY_PORT": str(port)})
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
        yield Api(http, platform)


async def test_an_admin_connects_the_tenants_bot_and_odoo_over_rest_and_no_answer_carries_a_secret(api):
    settings = api.platform.settings
    _, admin = await api.person(_login())
    _, stranger = await api.person(_login())
    tenant = f"acme-{uuid.uuid4().hex[:8]}"
    assert (await api.call("POST", "/v1/tenants", admin, {"tenant_id": tenant, "name": "Acme"}))[0] == 201
    app_id = str(uuid.uuid4())
    async with CommandClient(settings, bootstrap.codec(settings), list(bootstrap.hubs().values())) as client:
        register = RegisterApp(new_meta(app_id, "platform"), name="Bot", kind="bot", channels=["messenger"], visibility="public")
        assert (await client.send(register)).accepted
        assert (await client.send(SubscribeApp(new_meta(subscription_id(tenant, app_id), tenant), app_id=app_id))).accepted

    secret = f"whsec-{uuid.uuid4().hex}"
    bot_path = f"/v1/tenants/{tenant}/apps/{app_id}/subscription/bot"

    async def connected_bot():
        status, body, _ = await api.call("PUT", bot_path, admin, {"webhook_id": "bot-acme", "webhook_secret": secret})
        return (status, body) if status == 200 else None  # the subscription reaches the read store first

    status, body = await eventually(connected_bot, timeout=60)
    assert body["webhook_id"] == "bot-acme" and secret not in str(body)
    status, shown, _ = await api.call("GET", f"/v1/tenants/{tenant}/apps/{app_id}/subscription", admin)
    assert status == 200 and shown["bot_webhook_id"] == "bot-acme" and secret not in str(shown)
    status, body, headers = await api.call("PUT", bot_path, stranger, {"webhook_id": "bot-x", "webhook_secret": secret})
    assert status in (403, 404), body
    _problem(status, body, headers)

    async with running_odoo() as odoo:
        key = f"odoo-key-{uuid.uuid4().hex}"
        odoo.state.add_user("bot@acme.example", "unused", api_key=key)
        odoo_path = f"/v1/tenants/{tenant}/odoo"
        fields = {"url": odoo.url, "database": "poseidon", "login": "bot@acme.example", "protocol": "xmlrpc"}
        status, body, headers = await api.call("PUT", odoo_path, admin, {**fields, "api_key": "wrong-key"})
        _problem(status, body, headers, "OdooAccessDenied")  # the rule says what to fix; FAILED_PRECONDITION is a 4xx
        assert 400 <= status < 500 and "wrong-key" not in str(body)
        status, body, _ = await api.call("PUT", odoo_path, admin, {**fields, "api_key": key})
        assert status == 200, body
        assert body["authenticated"].startswith("xmlrpc") and key not in str(body)
        status, shown, _ = await api.call("GET", odoo_path, admin)
        assert status == 200 and shown["url"] == odoo.url and shown["login"] == "bot@acme.example" and key not in str(shown)
        status, body, headers = await api.call("PUT", odoo_path, stranger, {**fields, "api_key": key})
        assert status in (403, 404), body
        status, body, headers = await api.call("GET", odoo_path, stranger)
        assert status in (403, 404), body


async def test_an_admin_subscribes_sets_guards_and_unsubscribes_over_rest_and_a_viewer_cannot(api):
    settings = api.platform.settings
    admin_id, admin = await api.person(_login())
    viewer_id, viewer = await api.person(_login())
    _, stranger = await api.person(_login())
    tenant = f"acme-{uuid.uuid4().hex[:8]}"
    assert (await api.call("POST", "/v1/tenants", admin, {"tenant_id": tenant, "name": "Acme"}))[0] == 201
    assert (await api.call("POST", f"/v1/tenants/{tenant}/invitations", admin, {"principal_id": viewer_id, "role": "viewer"}))[
        0
    ] == 201
    assert (await api.call("POST", f"/v1/tenants/{tenant}/invitations/accept", viewer))[0] == 200
    public, private = str(uuid.uuid4()), str(uuid.uuid4())
    async with CommandClient(settings, bootstrap.codec(settings), list(bootstrap.hubs().values())) as client:
        for app_id, owner, visibility in ((public, "platform", "public"), (private, "globex", "private")):
            register = RegisterApp(new_meta(app_id, owner), name="Bot", kind="bot", channels=["messenger"], visibility=visibility)
            assert (await client.send(register)).accepted
    path = f"/v1/tenants/{tenant}/apps/{public}/subscription"

    async def subscribed():
        status, body, headers = await api.call("PUT", path, admin, {}, {"Idempotency-Key": "subscribe-1"})
        return (body, headers) if status == 200 else None  # the app reaches the read store first

    body, headers = await eventually(subscribed, timeout=60)
    assert body["subscription_id"] == f"{tenant}/{public}" and body["projected"] is True
    status, shown, _ = await api.call(
        "GET", path, viewer, headers={"Poseidon-Consistency-Token": headers["Poseidon-Consistency-Token"]}
    )
    assert status == 200 and shown["active"] is True
    again = await api.call("PUT", path, admin, {}, {"Idempotency-Key": "subscribe-1"})
    assert again[0] == 200 and again[1]["duplicate"] is True  # the resend is answered, not applied twice

    hours = {"timezone": "Europe/Paris", "windows": [{"day": "mon", "opens": "09:00", "closes": "17:00"}]}
    guards = {"channels": ["messenger"], "page_ids": ["104857600123"], "business_hours": hours}
    status, body, _ = await api.call("PUT", path + "/guards", admin, {"guards": guards})
    assert status == 200 and body["projected"] is True, body
    status, shown, _ = await api.call("GET", path, admin)
    assert shown["guards"]["page_ids"] == ["104857600123"] and shown["guards"]["business_hours"]["timezone"] == "Europe/Paris"
    bad = {"guards": {**guards, "business_hours": {"timezone": "Nowhere/Atlantis", "windows": []}}}
    status, body, headers = await api.call("PUT", path + "/guards", admin, bad)
    assert status == 400 and "timezone" in body["detail"], body

    # A viewer cannot write; a stranger is refused as if the tenant did not exist; another tenant's private app looks missing.
    status, body, headers = await api.call("DELETE", path, viewer)
    assert status == 403
    _problem(403, body, headers, "PermissionDenied")
    assert (await api.call("DELETE", path, stranger))[0] in (403, 404)
    status, body, _ = await api.call("PUT", f"/v1/tenants/{tenant}/apps/{private}/subscription", admin, {})
    assert status == 404 and body["rule"] == "NotFound"

    status, body, _ = await api.call("DELETE", path, admin)
    assert status == 200 and body["projected"] is True
    status, shown, _ = await api.call("GET", path, admin)
    assert shown["active"] is False
    status, body, headers = await api.call("DELETE", path, admin)
    assert status == 409
    _problem(409, body, headers)


async def test_an_admin_registers_the_tenants_own_app_and_a_resend_names_the_same_app(api):
    admin_id, admin = await api.person(_login())
    _, stranger = await api.person(_login())
    tenant = f"acme-{uuid.uuid4().hex[:8]}"
    assert (await api.call("POST", "/v1/tenants", admin, {"tenant_id": tenant, "name": "Acme"}))[0] == 201
    body = {"name": "Acme support bot", "kind": "bot", "channels": ["messenger"]}
    key = {"Idempotency-Key": f"app-{uuid.uuid4()}"}
    status, created, headers = await api.call("POST", f"/v1/tenants/{tenant}/apps", admin, body, key)
    assert status == 201 and created["projected"] is True, created
    again = await api.call("POST", f"/v1/tenants/{tenant}/apps", admin, body, key)
    assert again[0] == 201 and again[1]["app_id"] == created["app_id"] and again[1]["duplicate"] is True
    read = {"Poseidon-Consistency-Token": headers["Poseidon-Consistency-Token"]}
    status, app, _ = await api.call("GET", f"/v1/tenants/{tenant}/apps/{created['app_id']}", admin, headers=read)
    assert status == 200 and (app["name"], app["kind"], app["visibility"], app["owned"]) == (
        "Acme support bot", "bot", "private", True,
    )  # fmt: skip
    status, problem, headers = await api.call("POST", f"/v1/tenants/{tenant}/apps", admin, {**body, "kind": "robot"})
    assert status == 400
    _problem(400, problem, headers)
    status, problem, _ = await api.call("POST", f"/v1/tenants/{tenant}/apps", admin, {**body, "channels": []})
    assert status == 400 and "channels" in problem["detail"]
    assert (await api.call("POST", f"/v1/tenants/{tenant}/apps", stranger, body))[0] in (403, 404)
    # The tenant's private app: another tenant does not see it.
    other = f"globex-{uuid.uuid4().hex[:8]}"
    assert (await api.call("POST", "/v1/tenants", stranger, {"tenant_id": other, "name": "Globex"}))[0] == 201
    assert (await api.call("GET", f"/v1/tenants/{other}/apps/{created['app_id']}", stranger))[0] == 404
