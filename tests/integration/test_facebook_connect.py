"""Connecting a Facebook page with proof of control (Facebook Login for Business) on
the real stack: the Tenant hub's processor, projector and gRPC server as processes,
the Graph API and Login dialog spoken by the Facebook stand-in. An admin starts the
flow, follows the dialog, completes it: the page is connected only if the user who
logged in manages it, our app is subscribed to its webhooks, its token is stored
sealed and rotated on reconnect; a page another tenant holds moves with proof,
recorded under both tenants; a third tenant that cannot prove control is refused;
every error of the flow gets its answer; no clear token is in any event or log line.
Token invalidation on send (the spoke's side) is tests/integration/test_facebook_reauthorization.py."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlsplit

import grpc
import httpx
import pytest

from hubs.tenant.commands import channel_account_id
from hubs.tenant.proof import page_token_context
from infra.sealing import Sealer, credential_keys_dir
from poseidon import bootstrap
from schemas.protos import tenant_pb2 as pb
from schemas.protos import tenant_pb2_grpc
from tests.harness import bearer, channel, fetch, mint_token, read_topic
from tests.integration.tenancy import member_of
from tests.standins.facebook import RunningFacebook, running_facebook

pytestmark = pytest.mark.integration

PAGE, OTHER_PAGE = "104857600901", "104857600902"
REDIRECT = "https://app.example.com/facebook/callback"


@pytest.fixture
async def facebook():
    async with running_facebook() as running:
        yield running


@pytest.fixture
async def running(platform, facebook):
    # The Login dialog is www.facebook.com's; the stand-in serves it too.
    urls = {"POSEIDON_FACEBOOK_GRAPH_URL": facebook.url, "POSEIDON_FACEBOOK_LOGIN_URL": facebook.url}
    for role in ("processor", "projector"):
        platform.start(role, "tenant", wait=False)
    platform.launch("tenant-grpc", "grpc", "tenant", wait=False, env=urls)
    for role in ("processor", "projector", "grpc"):
        platform.wait_healthy(f"tenant-{role}")
    return platform


class Admin:
    """A tenant admin's client: the TenantChannels and TenantQuery stubs, as that principal."""

    def __init__(self, settings, tenant_id: str, principal: str):
        self.tenant_id = tenant_id
        self.channel = channel(settings, "tenant", bearer(mint_token(settings, principal)))
        self.channels = tenant_pb2_grpc.TenantChannelsStub(self.channel)
        self.query = tenant_pb2_grpc.TenantQueryStub(self.channel)

    async def start(self, redirect_uri: str = REDIRECT) -> pb.FacebookConnectStart:
        return await self.channels.StartFacebookConnect(
            pb.StartFacebookConnectRequest(tenant_id=self.tenant_id, redirect_uri=redirect_uri)
        )

    async def complete(self, code: str, state: str, page_id: str = PAGE, **more) -> pb.FacebookConnectReply:
        return await self.channels.CompleteFacebookConnect(
            pb.CompleteFacebookConnectRequest(tenant_id=self.tenant_id, code=code, state=state, page_id=page_id, **more)
        )

    async def close(self) -> None:
        await self.channel.close()


async def admin(platform, tenant_id: str, principal: str) -> Admin:
    await member_of(platform, tenant_id, principal, "admin")
    return Admin(platform.settings, tenant_id, principal)


async def log_in(facebook: RunningFacebook, start: pb.FacebookConnectStart, user_id: str) -> tuple[str, str]:
    """The admin's browser: opens the dialog URL as `user_id`, lands on redirect_uri; (code, state)."""
    facebook.state.logged_in = user_id
    async with httpx.AsyncClient() as http:
        answer = await http.get(start.dialog_url, follow_redirects=False)
    assert answer.status_code == 302, answer.text
    landed = urlsplit(answer.headers["location"])
    assert f"{landed.scheme}://{landed.netloc}{landed.path}" == REDIRECT
    query = parse_qs(landed.query)
    return query["code"][0], query["state"][0]


async def refused(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


def tenant(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


async def channel_row(settings, page_id: str = PAGE):
    rows = await fetch(
        settings,
        settings.pg_schema("tenant"),
        "SELECT * FROM channel_accounts WHERE channel = 'facebook' AND account_id = $1",
        page_id,
    )
    return rows[0] if rows else None


async def page_events(settings, page_id: str = PAGE) -> list[tuple[str, str, dict]]:
    """(event type, the envelope's tenant, the decoded record) of the page's channel account, in order."""
    codec = bootstrap.codec(settings)
    key = channel_account_id("facebook", page_id).encode()
    out = []
    for r in await read_topic(settings, settings.topic("tenant.events")):
        if r.key == key:
            record = codec.decode(r.value).record
            out.append((record["envelope"]["event_type"].rsplit(".", 1)[-1], record["envelope"]["tenant_id"], record))
    return out


def every_token(facebook: RunningFacebook) -> list[str]:
    """Every secret the stand-in ever handed out: page tokens, user tokens and OAuth codes."""
    return [*facebook.state.pages, *facebook.state.user_tokens, *facebook.state.codes]


async def test_a_page_is_connected_with_proof_rotated_on_reconnect_moved_with_proof_and_never_taken_without(running, facebook):
    settings = running.settings
    acme, globex, initech = tenant("acme"), tenant("globex"), tenant("initech")
    facebook.state.add_user("u-alice", {PAGE: "Acme Shop"})
    facebook.state.add_user("u-mallory", {OTHER_PAGE: "Mallory's page"})
    facebook.state.add_user("u-carol", {PAGE: "Acme Shop", OTHER_PAGE: "Mallory's page"})
    alice = await admin(running, acme, "alice-admin")
    mallory = await admin(running, globex, "mallory-admin")
    carol = await admin(running, initech, "carol-admin")
    try:
        start = await alice.start()
        dialog = parse_qs(urlsplit(start.dialog_url).query)
        assert start.dialog_url.startswith(f"{facebook.url}/v")
        assert dialog["client_id"] == [settings.facebook_app_id] and dialog["redirect_uri"] == [REDIRECT]
        assert dialog["state"] == [start.state] and "pages_messaging" in dialog["scope"][0]
        code, state = await log_in(facebook, start, "u-alice")

        connected = await alice.complete(code, state)

        assert (connected.tenant_id, connected.page_id, connected.page_name) == (acme, PAGE, "Acme Shop")
        assert (connected.version, connected.projected, connected.moved) == (1, True, False)
        assert facebook.state.subscriptions[PAGE] == ["messages", "messaging_postbacks", "messaging_handovers"]
        row = await channel_row(settings)
        assert (row["tenant_id"], row["connected"], row["proof"], row["needs_reauthorization"]) == (
            acme,
            True,
            "facebook_login",
            False,
        )
        first_token = facebook.state.page_token_of(PAGE)
        sealer = Sealer(credential_keys_dir(settings))
        assert sealer.unseal(row["sealed_token"], page_token_context(acme, PAGE)).decode() == first_token
        [listed] = (await alice.query.ListChannels(pb.ListChannelsRequest(tenant_id=acme))).channels
        assert (listed.proof, listed.needs_reauthorization) == ("facebook_login", False)

        # Connecting again with a new login rotates the stored token.
        code, state = await log_in(facebook, await alice.start(), "u-alice")
        rotated = await alice.complete(code, state)
        assert (rotated.version, rotated.moved) == (2, False)
        row = await channel_row(settings)
        second_token = facebook.state.page_token_of(PAGE)
        assert second_token != first_token
        assert sealer.unseal(row["sealed_token"], page_token_context(acme, PAGE)).decode() == second_token

        # A tenant whose Facebook user does not manage the page cannot take it: no proof, no change.
        code, state = await log_in(facebook, await mallory.start(), "u-mallory")
        not_managed = await refused(mallory.complete(code, state))
        assert not_managed.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert not_managed.details().startswith("PageNotManaged") and acme not in not_managed.details()
        assert (await channel_row(settings))["tenant_id"] == acme
        # …nor through the plain ConnectChannel, nor with another admin's state.
        plain = await refused(
            mallory.channels.ConnectChannel(pb.ConnectChannelRequest(tenant_id=globex, channel="facebook", account_id=PAGE))
        )
        assert plain.details().startswith("ProofRequired")
        alices_state = (await alice.start()).state
        stolen = await refused(mallory.complete("AQanything", alices_state))
        assert stolen.code() == grpc.StatusCode.INVALID_ARGUMENT and "state" in stolen.details()

        # A tenant whose user does manage it moves it, recorded under both tenants.
        code, state = await log_in(facebook, await carol.start(), "u-carol")
        moved = await carol.complete(code, state)
        assert (moved.tenant_id, moved.moved, moved.projected) == (initech, True, True)
        row = await channel_row(settings)
        assert (row["tenant_id"], row["connected"], row["proof"]) == (initech, True, "facebook_login")
        assert sealer.unseal(row["sealed_token"], page_token_context(initech, PAGE)).decode() == facebook.state.page_token_of(
            PAGE
        )
        assert (await alice.query.ListChannels(pb.ListChannelsRequest(tenant_id=acme))).channels == []
    finally:
        for a in (alice, mallory, carol):
            await a.close()

    events = await page_events(settings)
    assert [(kind, owner) for kind, owner, _ in events] == [
        ("ChannelConnected", acme),
        ("ChannelReconnected", acme),
        ("ChannelMoved", acme),
        ("ChannelReconnected", initech),
    ]
    moved_record = events[2][2]
    assert (moved_record["from_tenant_id"], moved_record["to_tenant_id"], moved_record["proof"]) == (
        acme,
        initech,
        "facebook_login",
    )
    assert moved_record["envelope"]["actor"] == "carol-admin"
    proven = [record for _, _, record in events if record.get("proof") and "sealed_token" in record]
    assert len(proven) == 3 and all(record["sealed_token"].startswith("sealed.v1.") for record in proven)

    # No clear token (page or user) in any event of the topic, in any log line of the processes.
    raw = b"".join(r.value for r in await read_topic(settings, settings.topic("tenant.events")))
    raw += b"".join(r.value for r in await read_topic(settings, settings.topic("tenant.commands")))
    logs = b"".join(p.log.read_bytes() for p in running.procs.values() if p.log.exists())
    tokens = every_token(facebook)
    assert len(tokens) >= 6
    assert settings.facebook_app_secret.encode() not in logs, "the app secret is in a log"
    for token in tokens:
        assert token.encode() not in raw, "a clear token is in the tenant topics"
        assert token.encode() not in logs, "a clear token is in a log"


async def test_every_error_of_the_connect_flow_gets_its_answer_and_connects_nothing(running, facebook):
    settings = running.settings
    acme = tenant("acme")
    facebook.state.add_user("u-alice", {PAGE: "Acme Shop"})
    facebook.state.add_user("u-no-list", {PAGE: "Acme Shop"}, permissions=("pages_messaging", "pages_manage_metadata"))
    facebook.state.add_user("u-no-meta", {PAGE: "Acme Shop"}, permissions=("pages_show_list", "pages_messaging"))
    alice = await admin(running, acme, "alice-admin")
    viewer = Admin(settings, acme, "vera-viewer")
    await member_of(running, acme, "vera-viewer", "viewer")

    async def answer(user: str = "u-alice", code: str | None = None) -> grpc.aio.AioRpcError:
        start = await alice.start()
        logged_code, state = await log_in(facebook, start, user)
        return await refused(alice.complete(code or logged_code, state))

    try:
        invalid = await answer(code="AQnot-a-code-facebook-gave")
        assert invalid.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert invalid.details().startswith("InvalidCode") and "Invalid verification code format" in invalid.details()

        start = await alice.start()
        code, state = await log_in(facebook, start, "u-alice")
        facebook.state.codes[code].used = True  # e.g. the browser's second submit
        used = await refused(alice.complete(code, state))
        assert used.details().startswith("InvalidCode") and "has been used" in used.details()

        facebook.state.short_lived_s = -1  # the short-lived token expired before it was made long-lived
        expired = await answer()
        facebook.state.short_lived_s = 3600
        assert expired.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert expired.details().startswith("LoginExpired") and "Session has expired" in expired.details()

        no_list = await answer("u-no-list")
        assert no_list.details().startswith("MissingPermission") and "pages_show_list" in no_list.details()
        no_meta = await answer("u-no-meta")
        assert no_meta.details().startswith("MissingPermission") and "pages_manage_metadata" in no_meta.details()

        facebook.state.add_user("u-elsewhere", {OTHER_PAGE: "Another page"})
        not_managed = await answer("u-elsewhere")
        assert not_managed.details().startswith("PageNotManaged")

        facebook.state.fail("429", count=1, retry_after=7)
        limited = await answer()
        assert limited.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert limited.details().startswith("RateLimited") and "retry in 7 s" in limited.details()

        facebook.state.fail("500", count=1)
        down = await answer()
        assert down.code() == grpc.StatusCode.UNAVAILABLE and down.details().startswith("FacebookUnavailable")

        bad_state = await refused(alice.complete("AQx", "sealed.v1.forged.AAAA"))
        assert bad_state.code() == grpc.StatusCode.INVALID_ARGUMENT
        bad_redirect = await refused(alice.start("http://app.example.com/callback"))
        assert bad_redirect.code() == grpc.StatusCode.INVALID_ARGUMENT and "redirect_uri" in bad_redirect.details()
        not_admin = await refused(viewer.start())
        assert not_admin.code() == grpc.StatusCode.PERMISSION_DENIED

        assert await channel_row(settings) is None
        assert PAGE not in facebook.state.subscriptions
        # After all that, the flow still works (no breaker opened by a person's failed logins).
        code, state = await log_in(facebook, await alice.start(), "u-alice")
        assert (await alice.complete(code, state)).version == 1
    finally:
        await alice.close()
        await viewer.close()
