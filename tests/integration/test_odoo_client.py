"""The Odoo spoke against the Odoo stand-in, over XML-RPC and JSON-2 alike: a customer is
found or created once and its phone kept, every kind of Odoo answer becomes the right
failure, retries go through the shared policy, and the breaker opens per tenant and closes
again. No Kafka needed: the context is built without a command client."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from prometheus_client import REGISTRY

from base.settings import Settings
from infra.spoke import BreakerOpen, Outcome, PermanentError, ReauthorizationRequired, RetryableError, SpokeContext, SpokeSpec
from spokes.odoo import PER_TENANT_BREAKER, SYSTEM
from spokes.odoo.actions import odoo_client, record_customer
from spokes.odoo.client import OdooClient, OdooConnection
from tests.standins.odoo import running_odoo

PROTOCOLS = ["xmlrpc", "json2"]


@pytest.fixture(params=PROTOCOLS)
def protocol(request) -> str:
    return request.param


@pytest.fixture
async def odoo():
    async with running_odoo() as running:
        yield running


def make_context(odoo, protocol: str, **overrides) -> SpokeContext:
    # The stand-in listens on loopback: a development machine (outside development mode a
    # tenant's own Odoo is called at public addresses only; the last test shows it).
    policy = {"spoke_max_attempts": 3, "breaker_fail_max": 3, "breaker_reset_s": 1, "http_timeout_s": 2, "dev_mode": True}
    settings = Settings(**{**policy, **overrides}, odoo_url=odoo.url, odoo_protocol=protocol)

    async def handle(ctx, event_type, record):
        return Outcome("noop")

    spec = SpokeSpec("odoo", SYSTEM, (), lambda event_type, record: False, handle, per_tenant_breaker=PER_TENANT_BREAKER)
    return SpokeContext(spec, settings, codec=None, commands=None)


@pytest.fixture
async def ctx(odoo, protocol):
    context = make_context(odoo, protocol)
    yield context
    await context.http.aclose()


def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


def breaker_metrics() -> tuple[float | None, float | None]:
    """(the worst of the per-tenant breakers' states, how many breakers are open) for Odoo:
    the metrics never name a tenant; a tenant's own breaker is on the context."""
    return (
        REGISTRY.get_sample_value("poseidon_breaker_state", {"system": SYSTEM, "scope": "tenant"}),
        REGISTRY.get_sample_value("poseidon_breakers_open", {"system": SYSTEM}),
    )


async def record(ctx, tenant_id: str, psid: str = "2584019", name: str = "Ana Silva", phone: str | None = None, **kw):
    return await record_customer(
        ctx, tenant_id=tenant_id, channel="facebook", contact_id=psid, display_name=name, phone=phone, **kw
    )


def odoo_calls(odoo) -> list[str]:
    return [c.method for c in odoo.state.calls if c.protocol != "web"]


# --- happy paths ---------------------------------------------------------------------------


async def test_records_a_new_customer_with_name_contact_id_and_phone(ctx, odoo, protocol):
    outcome = await record(ctx, tenant(), phone="+351 912 345 678")
    [partner] = odoo.state.find(x_facebook_psid="2584019")
    assert outcome.succeeded and outcome.operation == "odoo.record_customer"
    assert outcome.external_id == str(partner["id"])
    assert outcome.data == {"created": "true", "phone_updated": "false", "phone_recorded": "true", "protocol": protocol}
    assert (partner["name"], partner["phone"]) == ("Ana Silva", "+351 912 345 678")


async def test_recording_the_same_customer_twice_creates_one_partner(ctx, odoo):
    t = tenant()
    first = await record(ctx, t, phone="+351912345678")
    second = await record(ctx, t, phone="+351 912 345 678")
    assert len(odoo.state.find(x_facebook_psid="2584019")) == 1
    assert first.external_id == second.external_id
    assert second.data["created"] == "false" and second.data["phone_updated"] == "false"
    assert odoo_calls(odoo).count("create") == 1 and "write" not in odoo_calls(odoo)


async def test_a_new_phone_number_is_written_to_the_existing_partner(ctx, odoo):
    t = tenant()
    await record(ctx, t)
    outcome = await record(ctx, t, phone="+32 470 12 34 56")
    [partner] = odoo.state.find(x_facebook_psid="2584019")
    assert partner["phone"] == "+32 470 12 34 56" and outcome.data["phone_updated"] == "true"
    await record(ctx, t, phone="+32 470 99 99 99")
    assert odoo.state.partners[partner["id"]]["phone"] == "+32 470 99 99 99"


async def test_no_phone_given_keeps_the_phone_odoo_has(ctx, odoo):
    t = tenant()
    await record(ctx, t, phone="+32470123456")
    outcome = await record(ctx, t, phone=None)
    assert odoo.state.find(x_facebook_psid="2584019")[0]["phone"] == "+32470123456"
    assert outcome.detail == "customer already up to date"


async def test_a_partner_staff_already_created_is_found_not_duplicated(ctx, odoo):
    odoo.state.partners[50] = {**odoo.state.partners[3], "id": 50, "name": "Ana (from the shop)", "x_facebook_psid": "777"}
    outcome = await record(ctx, tenant(), psid="777", name="Ana Silva")
    assert outcome.external_id == "50" and odoo.state.partners[50]["name"] == "Ana (from the shop)"


async def test_both_protocols_answer_the_server_version(ctx):
    version = await odoo_client(ctx).version()
    assert "19.0" in (version.get("server_version"), version.get("version"))


async def test_xmlrpc_logs_in_once_and_reuses_the_uid(odoo):
    ctx = make_context(odoo, "xmlrpc")
    try:
        t = tenant()
        for psid in ("1", "2", "3"):
            await record(ctx, t, psid=psid)
        assert odoo_calls(odoo).count("authenticate") == 1
    finally:
        await ctx.http.aclose()


async def test_json2_sends_the_key_as_bearer_and_the_database_header(odoo):
    ctx = make_context(odoo, "json2")
    try:
        await record(ctx, tenant())
        calls = [c for c in odoo.state.calls if c.protocol == "json2"]
        assert [c.path for c in calls] == ["/json/2/res.partner/search_read", "/json/2/res.partner/create"]
        assert calls[0].params == {
            "domain": [["x_facebook_psid", "=", "2584019"]],
            "fields": ["name", "phone", "x_facebook_psid"],
            "limit": 1,
            "order": "id",
        }
        assert calls[1].params == {"vals_list": [{"name": "Ana Silva", "x_facebook_psid": "2584019"}]}
    finally:
        await ctx.http.aclose()


# --- failures that are not retried ---------------------------------------------------------


async def test_a_bad_api_key_requires_reauthorization_and_is_not_retried(ctx, odoo, protocol):
    bad = OdooConnection(odoo.url, "poseidon", "admin", "revoked-key", protocol)
    with pytest.raises(ReauthorizationRequired) as raised:
        await record(ctx, tenant(), connection=bad)
    assert raised.value.code == "odoo_access_denied"
    assert ctx.attempts == 1 and len(odoo_calls(odoo)) == 1


async def test_a_key_revoked_after_login_requires_reauthorization_then_logs_in_again(ctx, odoo, protocol):
    t = tenant()
    await record(ctx, t, psid="1")
    odoo.state.revoke_key("dev-odoo-key")
    with pytest.raises(ReauthorizationRequired):
        await record(ctx, t, psid="2")
    assert ctx.attempts == 1
    odoo.state.add_key("admin", "dev-odoo-key")
    await record(ctx, t, psid="2")
    if protocol == "xmlrpc":  # the refused uid was forgotten: a fresh login
        assert odoo_calls(odoo).count("authenticate") == 2


async def test_a_validation_error_is_permanent_and_leaves_the_breaker_closed(ctx, odoo):
    t = tenant()
    odoo.state.fail("validation", None, method="create")
    for _ in range(4):
        with pytest.raises(PermanentError) as raised:
            await record(ctx, t)
        assert raised.value.code == "odoo_user_error" and ctx.attempts == 1
    assert ctx.breaker(t).current_state == "closed"


async def test_a_missing_record_is_permanent(ctx, odoo):
    odoo.state.fail("missing", method="search_read")
    with pytest.raises(PermanentError) as raised:
        await record(ctx, tenant())
    assert raised.value.code == "odoo_missing" and ctx.attempts == 1


async def test_a_database_without_the_psid_field_is_a_permanent_bad_request(ctx, odoo):
    odoo.state.partner_fields.discard("x_facebook_psid")
    with pytest.raises(PermanentError) as raised:
        await record(ctx, tenant())
    assert raised.value.code == "odoo_bad_request" and ctx.attempts == 1


async def test_an_unknown_database_is_permanent(ctx, odoo, protocol):
    wrong = OdooConnection(odoo.url, "acme-prod", "admin", "dev-odoo-key", protocol)
    with pytest.raises(PermanentError) as raised:
        await record(ctx, tenant(), connection=wrong)
    # XML-RPC names the missing database; JSON-2 only finds no /json/2 route without one.
    assert raised.value.code == {"xmlrpc": "odoo_unknown_database", "json2": "odoo_not_found"}[protocol]


@pytest.mark.parametrize(("channel", "contact_id"), [("telegram", "1"), ("facebook", "")])
async def test_an_unsupported_channel_or_missing_contact_is_permanent_without_calling_odoo(ctx, odoo, channel, contact_id):
    with pytest.raises(PermanentError) as raised:
        await record_customer(ctx, tenant_id=tenant(), channel=channel, contact_id=contact_id, display_name="x")
    assert raised.value.code == "invalid_customer" and odoo.state.calls == []


# --- failures that are retried -------------------------------------------------------------


@pytest.mark.parametrize("mode", ["server_error", "500", "502", "503", "504", "429"])
async def test_transient_failures_are_retried_until_the_customer_is_recorded(ctx, odoo, mode):
    odoo.state.fail(mode, 2)
    outcome = await record(ctx, tenant())
    assert outcome.succeeded and ctx.attempts == 3
    assert len(odoo.state.find(x_facebook_psid="2584019")) == 1


async def test_records_locked_by_another_transaction_are_retried_on_json2_only(ctx, odoo, protocol):
    odoo.state.fail("lock", 1, method="search_read")
    if protocol == "json2":  # LockError answers 409
        assert (await record(ctx, tenant())).succeeded and ctx.attempts == 2
    else:  # XML-RPC folds every UserError, LockError included, into fault 2
        with pytest.raises(PermanentError):
            await record(ctx, tenant())


async def test_the_retry_after_of_a_503_is_honoured(ctx, odoo):
    odoo.state.fail("503", 1, retry_after=0.6)
    started = asyncio.get_running_loop().time()
    await record(ctx, tenant())
    assert asyncio.get_running_loop().time() - started >= 0.6 and ctx.attempts == 2


async def test_a_create_whose_answer_is_lost_is_found_on_retry_not_repeated(odoo, protocol):
    ctx = make_context(odoo, protocol, http_timeout_s=0.5)
    try:
        odoo.state.fail("timeout", 1, method="create", delay_s=1.5)
        outcome = await record(ctx, tenant())
        [partner] = odoo.state.find(x_facebook_psid="2584019")
        assert outcome.external_id == str(partner["id"]) and ctx.attempts == 2
        assert odoo_calls(odoo).count("create") == 1
    finally:
        await ctx.http.aclose()


async def test_an_unreachable_odoo_is_retryable(protocol):
    async with running_odoo() as gone:
        url = gone.url
    ctx = make_context(type("Gone", (), {"url": url})(), protocol)
    try:
        with pytest.raises(RetryableError):
            await record(ctx, tenant())
        assert ctx.attempts == 3
    finally:
        await ctx.http.aclose()


# --- the breaker ---------------------------------------------------------------------------


async def test_repeated_failures_open_the_breaker_and_recovery_closes_it(ctx, odoo):
    t = tenant()
    odoo.state.fail("server_error", None)
    with pytest.raises(BreakerOpen):
        await record(ctx, t)
    assert ctx.breaker(t).current_state == "open" and breaker_metrics() == (2, 1)
    calls_before = len(odoo.state.calls)
    with pytest.raises(BreakerOpen):
        await record(ctx, t)
    assert len(odoo.state.calls) == calls_before  # an open breaker makes no call

    odoo.state.clear()
    await asyncio.sleep(1.1)
    outcome = await record(ctx, t)
    assert outcome.succeeded and ctx.breaker(t).current_state == "closed" and breaker_metrics() == (0, 0)
    assert [(change[-2], change[-1]) for change in ctx.breaker_changes if t in change] == [
        ("closed", "open"),
        ("open", "half-open"),
        ("half-open", "closed"),
    ]


async def test_one_tenants_bad_key_opens_only_that_tenants_breaker(ctx, odoo, protocol):
    bad_tenant, good_tenant = tenant(), tenant()
    bad = OdooConnection(odoo.url, "poseidon", "admin", "revoked-key", protocol)
    for _ in range(3):
        with pytest.raises((ReauthorizationRequired, BreakerOpen)):
            await record(ctx, bad_tenant, connection=bad)
    assert ctx.breaker(bad_tenant).current_state == "open" and breaker_metrics() == (2, 1)
    outcome = await record(ctx, good_tenant)
    assert outcome.succeeded and ctx.breaker(good_tenant).current_state == "closed"
    assert ctx.breaker(bad_tenant).current_state == "open" and breaker_metrics() == (2, 1)


async def test_the_client_alone_raises_spoke_errors_too(odoo, protocol):
    import httpx

    async with httpx.AsyncClient(timeout=2) as http:
        client = OdooClient(http, OdooConnection(odoo.url, "poseidon", "admin", "dev-odoo-key", protocol))
        assert await client.find_partner("facebook", "nobody") is None
        partner_id = await client.create_partner({"name": "Ana", "x_facebook_psid": "9"})
        await client.write_partner(partner_id, {"phone": "+1 555 0100"})
        assert (await client.find_partner("facebook", "9"))["phone"] == "+1 555 0100"
        with pytest.raises(PermanentError):
            await client.write_partner(9999, {"phone": "1"})


async def test_outside_development_a_tenants_odoo_on_a_private_address_is_never_called(odoo, protocol):
    # A tenant admin cannot make the platform call inside its own network: loopback here.
    context = make_context(odoo, protocol, dev_mode=False)
    try:
        own = OdooConnection(odoo.url, "poseidon", "admin", "any-key", protocol)
        with pytest.raises(PermanentError, match="loopback address: not called"):
            await record(context, tenant(), connection=own)
        assert odoo.state.calls == []
    finally:
        await context.http.aclose()
