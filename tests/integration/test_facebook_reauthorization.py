"""A tenant's page token invalidated on Facebook's side, on the real stack: two tenants'
pages connected with proof and their own sealed tokens (Tenant hub processor and
projector as processes), the Facebook spoke's send path in this process (its one
runtime: SpokeContext with the spoke's resources, a command client to the hubs) and
the Graph stand-in. Each tenant's reply goes out with its own page token; when the
stand-in answers 190 for one of them, that channel records "needs reauthorization"
once (an event), only that tenant's breaker opens, the other tenant keeps sending,
the dashboard lists it — and no clear token is in any event, log line or that page."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import pytest
import structlog

from hubs.tenant.commands import ConnectChannel, CreateTenant, channel_account_id
from hubs.tenant.proof import page_token_context
from infra.command_client import CommandClient, new_meta
from infra.sealing import Sealer, credential_keys_dir
from infra.spoke import BreakerOpen, ReauthorizationRequired, SpokeContext
from poseidon import bootstrap
from projections.tenant.queries import channels_needing_reauthorization
from sagas.dashboard import pages
from spokes.facebook.actions import send_reply
from spokes.facebook.spoke import SPOKE, opened_resources
from tests.harness import eventually, fetch, read_topic
from tests.standins.facebook import running_facebook

pytestmark = pytest.mark.integration

ACME_PAGE, GLOBEX_PAGE = "104857600911", "104857600922"
ACME_TOKEN, GLOBEX_TOKEN = "EAAPacme-own-page-token-" + "a" * 40, "EAAPglobex-own-page-token-" + "b" * 40
PSID = "2400000000000001"


@pytest.fixture
async def facebook():
    async with running_facebook() as running:
        running.state.add_page(ACME_PAGE, ACME_TOKEN)
        running.state.add_page(GLOBEX_PAGE, GLOBEX_TOKEN)
        yield running


async def connect_with_proof(client: CommandClient, sealer: Sealer, tenant_id: str, page_id: str, token: str) -> None:
    """What CompleteFacebookConnect sends once the Graph calls proved control (tested in test_facebook_connect.py)."""
    sealed = sealer.seal(token.encode(), page_token_context(tenant_id, page_id))
    results = [
        await client.send(CreateTenant(new_meta(tenant_id, tenant_id, actor="operator"), name=tenant_id, owner_id="o")),
        await client.send(
            ConnectChannel(
                new_meta(channel_account_id("facebook", page_id), tenant_id, actor=f"{tenant_id}-admin"),
                channel="facebook",
                account_id=page_id,
                proof="facebook_login",
                sealed_token=sealed,
            )
        ),
    ]
    assert all(r.accepted for r in results), [(r.rejection, r.reason) for r in results]


async def test_an_invalidated_page_token_needs_reauthorization_and_opens_only_that_tenants_breaker(platform, facebook):
    settings = platform.settings.with_(
        facebook_graph_url=facebook.url, breaker_fail_max=2, breaker_reset_s=60, spoke_max_attempts=1
    )
    acme, globex = f"acme-{uuid.uuid4().hex[:6]}", f"globex-{uuid.uuid4().hex[:6]}"
    for role in ("processor", "projector"):
        platform.start(role, "tenant", wait=False)
    for role in ("processor", "projector"):
        platform.wait_healthy(f"tenant-{role}")
    tenant_schema = settings.pg_schema("tenant")
    sealer = Sealer(credential_keys_dir(settings))

    async with CommandClient(settings, bootstrap.codec(settings), list(bootstrap.hubs().values())) as client:
        await connect_with_proof(client, sealer, acme, ACME_PAGE, ACME_TOKEN)
        await connect_with_proof(client, sealer, globex, GLOBEX_PAGE, GLOBEX_TOKEN)
        await eventually(
            lambda: fetch(settings, tenant_schema, "SELECT 1 FROM channel_accounts WHERE sealed_token <> '' HAVING count(*) = 2")
        )
        ctx = SpokeContext(SPOKE, settings, bootstrap.codec(settings), client)

        async def reply(tenant_id: str, page_id: str, text: str):
            return await send_reply(
                ctx,
                tenant_id=tenant_id,
                page_id=page_id,
                psid=PSID,
                text=text,
                last_inbound_at=datetime.now(UTC),
                now=datetime.now(UTC),
            )

        with structlog.testing.capture_logs() as logs:
            std, root = _Collect(), logging.getLogger()
            level = root.level
            root.addHandler(std)
            root.setLevel(logging.DEBUG)
            try:
                async with opened_resources(ctx) as resources:
                    ctx.resources = resources
                    # Each tenant's reply goes out with its own page token, never the shared setting.
                    assert (await reply(acme, ACME_PAGE, "hello from acme")).succeeded
                    assert (await reply(globex, GLOBEX_PAGE, "hello from globex")).succeeded
                    by_token = {r.token for r in facebook.state.message_requests()}
                    assert by_token == {ACME_TOKEN, GLOBEX_TOKEN}

                    facebook.state.fail("invalid_token", token=ACME_TOKEN)
                    with pytest.raises(ReauthorizationRequired):
                        await reply(acme, ACME_PAGE, "lost")
                    with pytest.raises(BreakerOpen):  # the second refusal opens acme's breaker (fail max 2)
                        await reply(acme, ACME_PAGE, "lost again")
                    with pytest.raises(BreakerOpen):  # open: not even called
                        await reply(acme, ACME_PAGE, "not called")
                    assert (await reply(globex, GLOBEX_PAGE, "globex carries on")).succeeded
            finally:
                root.removeHandler(std)
                root.setLevel(level)
        await ctx.http.aclose()

    assert ctx.breaker(acme).current_state == "open"
    assert ctx.breaker(globex).current_state == "closed"
    assert len(facebook.state.message_requests(ACME_TOKEN)) == 3  # two sent, one refused; none while open

    async def flagged():
        rows = await fetch(settings, tenant_schema, "SELECT * FROM channel_accounts WHERE needs_reauthorization")
        return rows or None

    [row] = await eventually(flagged)
    assert (row["tenant_id"], row["account_id"], row["connected"]) == (acme, ACME_PAGE, True)
    assert "190" in row["reauthorization_reason"] and ACME_TOKEN not in row["reauthorization_reason"]

    codec = bootstrap.codec(settings)
    records = [codec.decode(r.value).record for r in await read_topic(settings, settings.topic("tenant.events"))]
    needed = [r for r in records if r["envelope"]["event_type"].endswith("ChannelReauthorizationRequired")]
    assert [(r["envelope"]["tenant_id"], r["account_id"], r["envelope"]["actor"]) for r in needed] == [
        (acme, ACME_PAGE, "spoke:facebook")
    ]

    # The operators' dashboard lists it (from the same read store), without any token.
    listed = await channels_needing_reauthorization_rows(settings)
    html = pages.channels_page(listed, operator="olga", csrf="c")
    assert acme in html and ACME_PAGE in html and globex not in html

    raw = b"".join(r.value for r in await read_topic(settings, settings.topic("tenant.events")))
    raw += b"".join(r.value for r in await read_topic(settings, settings.topic("tenant.commands")))
    seen_logs = repr(logs) + "\n".join(std.lines) + "".join(p.log.read_text() for p in platform.procs.values())
    for token in (ACME_TOKEN, GLOBEX_TOKEN):
        assert token.encode() not in raw
        assert token not in seen_logs
        assert token not in html


async def channels_needing_reauthorization_rows(settings):
    import asyncpg

    conn = await asyncpg.connect(settings.pg_dsn)
    try:
        return await channels_needing_reauthorization(conn, settings.pg_schema("tenant"), 50)
    finally:
        await conn.close()


class _Collect(logging.Handler):
    """Every stdlib log line (httpx, aiokafka…) as formatted text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
