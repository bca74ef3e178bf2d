"""Two tenants at once, each with its own Facebook page, bot and Odoo, connected the
way a tenant admin does it (the product's gRPC commands, not the test harness): the
page through the connect flow (Facebook Login, proof of control), the bot with
AppConnections.ConnectBot (webhook id and secret on its subscription), Odoo with
TenantChannels.ConnectOdoo (checked by authenticating against that Odoo, with a clear
answer for a wrong URL, database or key). Messages to both pages at once: each is
answered by its own bot (its own webhook id on the Botpress stand-in, which Botpress
Cloud serves all bots from) through its own page token, each partner lands in its own
Odoo stand-in, nothing crosses; the development defaults (shared bot, Odoo, page
token) point nowhere useful, so a fallback would show. A third tenant's claim of a page
it cannot prove is refused. Finally no bot secret, Odoo key or page token appears in
any topic of the run (raw records, commands included) nor in any log line."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import uuid
from contextlib import AsyncExitStack

import aiohttp
import asyncpg
import grpc
import pytest
from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient

from hubs.tenant.aggregate import PLATFORM_ACTOR
from hubs.tenant.commands import CreateTenant
from infra.command_client import CommandClient, new_meta
from infra.ingress import Ingress
from infra.projector import Projector
from infra.spoke import SpokeRunner
from poseidon import bootstrap, roles
from sagas.dashboard.app import build_app
from sagas.dashboard.rules import OPERATOR_TENANT
from sagas.dashboard.server import deps_for
from sagas.inbound_message.definition import saga_id_of
from schemas.protos import app_pb2, app_pb2_grpc, identity_pb2, identity_pb2_grpc, tenant_pb2, tenant_pb2_grpc
from spokes.botpress.translate import DEFAULT_WEBHOOK_ID
from tests.harness import (
    POSEIDON,
    bearer,
    channel,
    connect_page_with_proof,
    env_for,
    eventually,
    free_port,
    mint_token,
    provision_tenant,
    read_topic,
)
from tests.standins.botpress import running_botpress
from tests.standins.facebook import message_event, running_facebook, signed_webhook, webhook_body
from tests.standins.odoo import running_odoo

pytestmark = pytest.mark.integration

APP_SECRET = "two-tenants-app-secret"
ACME, GLOBEX, INITECH = "acme", "globex", "initech"
PAGES = {ACME: "104857601001", GLOBEX: "104857601002"}
HUBS = ("tenant", "app", "billing", "message", "wallet", "saga", "identity")
PASSWORD = "correct horse battery staple"
REDIRECT = "https://app.example.com/facebook/callback"


def owner(tenant: str) -> str:
    return f"{tenant}-owner"


async def test_two_tenants_are_each_answered_by_their_own_bot_page_token_and_odoo_and_nothing_crosses(platform, capfd):
    base = platform.settings
    for hub in HUBS:
        platform.start("processor", hub, wait=False)
    run = uuid.uuid4().hex[:8]
    bots = {ACME: f"bot-acme-{run}", GLOBEX: f"bot-globex-{run}"}
    bot_secrets = {t: f"whsec-{t}-{uuid.uuid4().hex}" for t in bots}
    odoo_keys = {t: f"odoo-key-{t}-{uuid.uuid4().hex}" for t in bots}
    async with AsyncExitStack() as stack:
        fb = await stack.enter_async_context(running_facebook(app_secret=APP_SECRET))
        bp = await stack.enter_async_context(running_botpress())
        odoos = {t: await stack.enter_async_context(running_odoo()) for t in bots}
        # Botpress Cloud serves every bot at chat.botpress.cloud/<webhook id>: one stand-in, one id per tenant's bot.
        bp.state.webhook_ids.discard(DEFAULT_WEBHOOK_ID)  # the development default bot answers nobody here
        for webhook_id in bots.values():
            bp.state.add_webhook(webhook_id)
        for tenant, odoo in odoos.items():
            odoo.state.databases = {f"{tenant}-db"}
            odoo.state.add_user(f"bot@{tenant}.example", "unused-password", api_key=odoo_keys[tenant])
        nowhere = f"http://127.0.0.1:{free_port()}"  # the development default Odoo: nothing listens there
        ingress_port = free_port()
        settings = base.with_(
            facebook_graph_url=fb.url,
            facebook_app_secret=APP_SECRET,
            botpress_url=bp.url,
            odoo_url=nowhere,
            ingress_port=ingress_port,
            ops_port=0,
            spoke_max_attempts=2,
            http_timeout_s=5.0,
        )
        codec = bootstrap.codec(settings)
        tasks = [asyncio.create_task(Projector(bootstrap.projection(h), settings, codec).run()) for h in HUBS]
        servers = [await roles.start_grpc(h, settings) for h in HUBS]
        ingress_runner = web.AppRunner(roles.ingress_app(Ingress(settings, codec)), access_log=None)
        await ingress_runner.setup()
        stack.push_async_callback(ingress_runner.cleanup)
        await web.TCPSite(ingress_runner, "127.0.0.1", ingress_port).start()
        router = roles.message_router(settings, codec)
        await router.start()
        tasks.append(asyncio.create_task(router.run()))
        driver = roles.saga_driver_for(settings, codec)
        await driver.start()
        tasks.append(asyncio.create_task(driver.run()))
        runners = [SpokeRunner(spec, settings, codec, list(bootstrap.hubs().values())) for spec in bootstrap.spokes().values()]
        tasks += [asyncio.create_task(r.run()) for r in runners]
        try:
            for hub in HUBS:
                await asyncio.to_thread(platform.wait_healthy, f"{hub}-processor")
            await asyncio.wait_for(asyncio.gather(*(r.assigned.wait() for r in runners)), 60)
            client = await stack.enter_async_context(CommandClient(settings, codec, list(bootstrap.hubs().values())))

            # -- provisioning: tenants, a shared first-party bot app each subscribes to, wallets --
            app_id = await provision_tenant(
                settings, client, ACME, PAGES[ACME], wallet_id=str(uuid.uuid4()), funds=1000, quota=1000
            )
            await provision_tenant(
                settings, client, GLOBEX, PAGES[GLOBEX], app_id=app_id, wallet_id=str(uuid.uuid4()), funds=1000, quota=1000
            )

            # -- each admin connects its page (proof of control), its bot and its Odoo --
            for tenant in bots:
                page = PAGES[tenant]
                connected = await connect_page_with_proof(settings, fb, tenant, page, owner(tenant), redirect_uri=REDIRECT)
                assert connected.projected and not connected.moved
            page_tokens = {t: fb.state.page_token_of(PAGES[t]) for t in bots}
            assert len(set(page_tokens.values())) == 2 and settings.facebook_page_token not in page_tokens.values()

            await connect_bot_refusals(settings, app_id, bots[ACME])
            reply = await connect_bot(settings, ACME, app_id, bots[ACME], bot_secrets[ACME])
            assert reply.projected and reply.webhook_id == bots[ACME]
            # Globex's admin uses the operator CLI (the same gRPC command), the secret from the environment.
            cli = await run_cli(
                settings,
                GLOBEX,
                {"POSEIDON_CONNECT_WEBHOOK_SECRET": bot_secrets[GLOBEX]},
                ["connect", "bot", "--tenant", GLOBEX, "--app", app_id, "--webhook-id", bots[GLOBEX]],
            )
            assert cli.returncode == 0, cli.stderr[-2000:]
            assert '"projected": true' in cli.stdout and bot_secrets[GLOBEX] not in cli.stdout + cli.stderr
            async with channel(settings, "app", bearer(mint_token(settings, owner(GLOBEX)))) as ch:
                shown = await app_pb2_grpc.AppQueryStub(ch).GetSubscription(
                    app_pb2.GetSubscriptionRequest(tenant_id=GLOBEX, app_id=app_id), timeout=10
                )
            assert shown.bot_webhook_id == bots[GLOBEX]

            # The bots' pushes: a tenant with its own bot is pushed to with that bot's secret only.
            push_url = f"http://127.0.0.1:{ingress_port}/webhooks/botpress"
            assert await push(f"{push_url}/{ACME}", bot_secrets[ACME]) == 200
            assert await push(f"{push_url}/{ACME}", bot_secrets[GLOBEX]) == 403
            assert await push(f"{push_url}/{ACME}", settings.botpress_webhook_secret) == 403
            assert await push(f"{push_url}/{GLOBEX}", bot_secrets[GLOBEX]) == 200
            assert await push(f"{push_url}/tenant-without-a-bot", settings.botpress_webhook_secret) == 200  # the dev bot's

            await connect_odoo_refusals(settings, odoos[ACME], odoo_keys[ACME], nowhere)
            reply = await connect_odoo(settings, ACME, odoos[ACME].url, "acme-db", odoo_keys[ACME], "xmlrpc")
            assert reply.projected and reply.authenticated.startswith("xmlrpc")
            # Globex's admin uses the operator CLI (the same gRPC command), the key from the environment.
            cli = await connect_odoo_with_cli(settings, GLOBEX, odoos[GLOBEX].url, "globex-db", odoo_keys[GLOBEX], "json2")
            assert cli.returncode == 0, cli.stderr[-2000:]
            assert '"authenticated": "json2' in cli.stdout and odoo_keys[GLOBEX] not in cli.stdout + cli.stderr
            shown = await odoo_connection_of(settings, ACME)
            assert (shown.url, shown.database, shown.protocol) == (odoos[ACME].url, "acme-db", "xmlrpc")

            # -- a third tenant cannot claim a page it does not manage --
            await third_tenant_claim_is_refused(settings, client, fb, PAGES[ACME])

            # -- messages to both pages at once --
            psids = {ACME: "24000000000001001", GLOBEX: "24000000000001002"}
            texts = {ACME: "Hello Acme, call me on +33 6 11 11 11 11", GLOBEX: "Hi Globex, my number is +33 6 22 22 22 22"}
            posts, mids = [], {}
            for tenant in bots:
                fb.state.user_wrote(psids[tenant])
                event = message_event(PAGES[tenant], psids[tenant], texts[tenant])
                mids[tenant] = event["message"]["mid"]
                body, headers = signed_webhook(webhook_body(event), APP_SECRET)
                posts.append(post(f"http://127.0.0.1:{ingress_port}/webhooks/facebook", body, headers))
            assert await asyncio.gather(*posts) == [200, 200]

            for tenant in bots:
                sent = await eventually(lambda t=tenant: _sent(fb, psids[t]), timeout=120)
                assert sent[0].message["text"] == f"echo: {texts[tenant]}"
                assert sent[0].token == page_tokens[tenant]  # its own page token
                partners = await eventually(lambda t=tenant: _async(odoos[t].state.find(x_facebook_psid=psids[t])), timeout=90)
                assert len(partners) == 1 and partners[0]["phone"]
            # Nothing crossed: each Odoo holds only its tenant's partner; each bot heard only its tenant's text.
            for tenant, other in ((ACME, GLOBEX), (GLOBEX, ACME)):
                assert odoos[tenant].state.find(x_facebook_psid=psids[other]) == []
                said = [
                    r.body["payload"]["text"]
                    for r in bp.state.requests
                    if r.operation == "createMessage" and r.webhook_id == bots[tenant] and isinstance(r.body, dict)
                ]
                assert said == [texts[tenant]], said
                assert len(fb.state.sent_to(psids[tenant])) == 1
            assert not [r for r in bp.state.requests if r.webhook_id == DEFAULT_WEBHOOK_ID]  # no fallback to the shared bot
            assert {c.method for c in odoos[ACME].state.calls} >= {"authenticate"}  # XML-RPC for acme
            assert any(c.method == "search_read" for c in odoos[GLOBEX].state.calls)

            # -- no secret anywhere: every topic of this run (raw bytes), every log line, the dashboard's pages --
            secrets = [*bot_secrets.values(), *odoo_keys.values(), *page_tokens.values()]
            saga_ids = [saga_id_of({"envelope": {"tenant_id": t}, "message_id": mids[t]}) for t in bots]
            pages = await dashboard_pages(settings, client, stack, saga_ids)
            assert all(saga_id in pages for saga_id in saga_ids)  # the pages are these messages' sagas' (never their text)
            assert not [s for s in secrets if s in pages]
            topics = await topics_of(settings)
            assert any(t.endswith("app.events") for t in topics) and any(t.endswith("tenant.commands") for t in topics)
            for topic in topics:
                for record in await read_topic(settings, topic, timeout=30):
                    raw = (record.value or b"") + (record.key or b"")
                    leaked = [s for s in secrets if s.encode() in raw]
                    assert not leaked, (topic, record.offset)
            logs = capfd.readouterr()
            for name in (f"{hub}-processor" for hub in HUBS):
                logs_of_process = platform.tail(name, lines=100_000)
                assert not [s for s in secrets if s in logs_of_process], name
            assert not [s for s in secrets if s in logs.out + logs.err]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await router.stop()
            await driver.stop()
            for server in servers:
                await server.stop(grace=0)


async def dashboard_pages(settings, client: CommandClient, stack: AsyncExitStack, saga_ids: list[str]) -> str:
    """Every page an operator opens about these sagas and the platform, as one text."""
    login = f"ops-{uuid.uuid4().hex[:8]}@platform.example"
    async with channel(settings, "identity", ()) as ch:
        registered = await identity_pb2_grpc.IdentityStub(ch).Register(
            identity_pb2.RegisterRequest(login=login, password=PASSWORD), timeout=90
        )
    team = CreateTenant(
        new_meta(OPERATOR_TENANT, OPERATOR_TENANT, actor=PLATFORM_ACTOR), name="Operators", owner_id=registered.principal_id
    )
    assert (await client.send(team, timeout=90)).accepted
    pool = await asyncpg.create_pool(settings.pg_dsn, min_size=1, max_size=4)
    stack.push_async_callback(pool.close)
    runner = web.AppRunner(build_app(deps_for(settings, pool, client)), access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    paths = ["/", "/channels", "/dead-letters", "/stats", *(f"/sagas/{s}" for s in saga_ids)]
    paths += [f"/sagas/{s}/timeline" for s in saga_ids]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=url)) as session:

        async def logged_in():  # the operator's membership reaches the read store first
            async with session.get(f"{url}/login") as form:
                csrf = re.search(r'name="csrf_token" value="([^"]+)"', await form.text())[1]
            data = {"login": login, "password": PASSWORD, "csrf_token": csrf}
            async with session.post(f"{url}/login", data=data, allow_redirects=False) as reply:
                return reply.status == 303 or None

        await eventually(logged_in, timeout=60)
        texts = []
        for path in paths:
            async with session.get(url + path) as page:
                assert page.status == 200, (path, page.status)
                texts.append(await page.text())
    return "\n".join(texts)


# -- the product's commands, as a tenant admin calls them ------------------------------------


async def connect_bot(settings, tenant: str, app_id: str, webhook_id: str, secret: str, *, as_principal: str | None = None):
    async with channel(settings, "app", bearer(mint_token(settings, as_principal or owner(tenant)))) as ch:
        request = app_pb2.ConnectBotRequest(tenant_id=tenant, app_id=app_id, webhook_id=webhook_id, webhook_secret=secret)
        return await app_pb2_grpc.AppConnectionsStub(ch).ConnectBot(request, timeout=30)


async def connect_odoo(settings, tenant: str, url: str, database: str, key: str, protocol: str, *, as_principal=None):
    async with channel(settings, "tenant", bearer(mint_token(settings, as_principal or owner(tenant)))) as ch:
        request = tenant_pb2.ConnectOdooRequest(
            tenant_id=tenant, url=url, database=database, login=f"bot@{tenant}.example", api_key=key, protocol=protocol
        )
        return await tenant_pb2_grpc.TenantChannelsStub(ch).ConnectOdoo(request, timeout=30)


async def connect_odoo_with_cli(settings, tenant: str, url: str, database: str, key: str, protocol: str):
    args = ["connect", "odoo", "--tenant", tenant, "--url", url, "--database", database, "--login", f"bot@{tenant}.example"]
    return await run_cli(settings, tenant, {"POSEIDON_CONNECT_ODOO_API_KEY": key}, [*args, "--protocol", protocol])


async def run_cli(settings, tenant: str, secrets: dict[str, str], args: list[str]):
    """`poseidon <args>` as the tenant's owner (POSEIDON_TOKEN), secrets from the environment."""
    env = env_for(settings, POSEIDON_TOKEN=mint_token(settings, owner(tenant)), **secrets)
    return await asyncio.to_thread(
        subprocess.run,
        [*POSEIDON, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


async def odoo_connection_of(settings, tenant: str):
    async with channel(settings, "tenant", bearer(mint_token(settings, owner(tenant)))) as ch:
        return await tenant_pb2_grpc.TenantQueryStub(ch).GetOdooConnection(
            tenant_pb2.GetOdooConnectionRequest(tenant_id=tenant), timeout=10
        )


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def connect_bot_refusals(settings, app_id: str, webhook_id: str) -> None:
    # Another tenant's admin cannot connect acme's subscription; a bad webhook id or short secret is refused.
    error = await refused(connect_bot(settings, ACME, app_id, webhook_id, "x" * 20, as_principal=owner(GLOBEX)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await refused(connect_bot(settings, ACME, app_id, "not/an-id", "x" * 20))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "webhook_id" in error.details()
    error = await refused(connect_bot(settings, ACME, app_id, webhook_id, "short"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "webhook_secret" in error.details()
    error = await refused(connect_bot(settings, ACME, str(uuid.uuid4()), webhook_id, "x" * 20))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def connect_odoo_refusals(settings, odoo, key: str, nowhere: str) -> None:
    """Each wrong setting gets its own clear answer, and nothing is saved."""
    cases = [
        (dict(url=nowhere, database="acme-db", key=key), "OdooUnreachable"),
        (dict(url=odoo.url + "/not-odoo", database="acme-db", key=key), "OdooNotFound"),
        (dict(url=odoo.url, database="no-such-db", key=key), "OdooDatabaseNotFound"),
        (dict(url=odoo.url, database="acme-db", key="wrong-key"), "OdooAccessDenied"),
    ]
    for fields, rule in cases:
        error = await refused(connect_odoo(settings, ACME, fields["url"], fields["database"], fields["key"], "xmlrpc"))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and error.details().startswith(rule), error.details()
        assert key not in error.details()
    error = await refused(connect_odoo(settings, ACME, odoo.url, "acme-db", "wrong-key", "json2"))
    assert error.details().startswith("OdooAccessDenied"), error.details()
    error = await refused(connect_odoo(settings, ACME, "ftp://odoo.example", "acme-db", key, "xmlrpc"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = await refused(connect_odoo(settings, ACME, odoo.url, "acme-db", key, "xmlrpc", as_principal=owner(GLOBEX)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    error = await refused(odoo_connection_of(settings, ACME))
    assert error.code() == grpc.StatusCode.NOT_FOUND  # none of the refused ones was saved


async def third_tenant_claim_is_refused(settings, client: CommandClient, fb, page_id: str) -> None:
    create = CreateTenant(new_meta(INITECH, INITECH, actor="operator"), name="Initech", owner_id=owner(INITECH))
    result = await client.send(create)
    assert result.accepted, result.reason
    fb.state.add_user("fb-user-of-initech", {"104857601999": "Initech's own page"})
    async with channel(settings, "tenant", bearer(mint_token(settings, owner(INITECH)))) as ch:
        stub = tenant_pb2_grpc.TenantChannelsStub(ch)
        start = await eventually(lambda: _start(stub), timeout=60)
        code = fb.state.authorize("fb-user-of-initech", REDIRECT)
        error = await refused(
            stub.CompleteFacebookConnect(
                tenant_pb2.CompleteFacebookConnectRequest(tenant_id=INITECH, code=code, state=start.state, page_id=page_id),
                timeout=30,
            )
        )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and error.details().startswith("PageNotManaged")


async def _start(stub):
    try:
        return await stub.StartFacebookConnect(
            tenant_pb2.StartFacebookConnectRequest(tenant_id=INITECH, redirect_uri=REDIRECT), timeout=10
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.PERMISSION_DENIED:  # the owner's membership is not projected yet
            return None
        raise


async def topics_of(settings) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        return sorted(t for t in await admin.list_topics() if t.startswith(settings.topic("")))
    finally:
        await admin.close()


async def post(url: str, body: bytes, headers: dict) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body, headers=headers) as reply:
            return reply.status


async def push(url: str, secret: str) -> int:
    """A Chat integration's push of a signal (our own user's message: accepted, nothing stored)."""
    signal = {"type": "message_created", "data": {"id": "m1", "conversationId": "c1", "userId": "u1", "isBot": False}}
    return await post(url, json.dumps(signal).encode(), {"Content-Type": "application/json", "x-bp-secret": secret})


async def _sent(fb, psid: str):
    return fb.state.sent_to(psid) or None


async def _async(value):
    return value
