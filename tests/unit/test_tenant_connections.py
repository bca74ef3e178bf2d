"""The tenants' own bot and Odoo connections, without a broker or database: the
Odoo check's answer for each failure, the credential cache, and that a sealed
secret opens only for the tenant and app it was sealed for."""

from __future__ import annotations

import uuid

import pytest

from hubs.app.bot import webhook_secret_context
from hubs.tenant.erp import (
    ODOO_ACCESS_DENIED,
    ODOO_NOT_ODOO,
    ODOO_UNAVAILABLE,
    ODOO_UNKNOWN_DATABASE,
    ODOO_UNREACHABLE,
    odoo_key_context,
)
from infra.credentials import CredentialCache
from infra.sealing import Sealer
from infra.spoke import PermanentError, ReauthorizationRequired, RetryableError
from spokes.botpress.bots import DEV_DEFAULT, BotConnections
from spokes.odoo.connect import refusal
from spokes.odoo.connections import OdooConnections


@pytest.mark.parametrize(
    ("error", "rule"),
    [
        (RetryableError("common.authenticate: Odoo unreachable (ConnectError)", code="odoo_unreachable"), ODOO_UNREACHABLE),
        (RetryableError("Odoo did not answer in time", code="odoo_timeout"), ODOO_UNREACHABLE),
        (PermanentError("no such endpoint", code="odoo_not_found"), ODOO_NOT_ODOO),
        (PermanentError("the configured database does not exist", code="odoo_unknown_database"), ODOO_UNKNOWN_DATABASE),
        (ReauthorizationRequired("the login or API key was refused", code="odoo_access_denied"), ODOO_ACCESS_DENIED),
        (RetryableError("Odoo failed", code="odoo_server_error"), ODOO_UNAVAILABLE),
    ],
)
def test_each_failed_odoo_check_is_answered_with_the_rule_that_says_what_to_fix(error, rule):
    refused = refusal(error)
    assert refused.rule == rule and error.reason in refused.message


async def test_a_credential_is_read_once_per_key_until_forgotten():
    reads: list[str] = []

    async def load(key: str) -> str:
        reads.append(key)
        return f"value of {key}"

    cache = CredentialCache(load, ttl_s=60)
    assert [await cache.get("acme"), await cache.get("acme"), await cache.get("globex")] == [
        "value of acme",
        "value of acme",
        "value of globex",
    ]
    cache.forget("acme")
    await cache.get("acme")
    assert reads == ["acme", "globex", "acme"]


async def test_without_a_store_the_development_defaults_answer(tmp_path):
    from base.settings import Settings
    from spokes.odoo.client import OdooConnection

    fallback = OdooConnection.from_settings(Settings())
    assert await OdooConnections(None, Sealer(tmp_path), fallback).of("acme") == fallback
    bots = BotConnections(None, Sealer(tmp_path))
    assert await bots.of("acme", str(uuid.uuid4())) == DEV_DEFAULT and not DEV_DEFAULT.own
    assert await bots.push_secrets("acme") is None  # the platform's development secret applies


async def test_outside_development_a_tenant_without_its_own_bot_or_odoo_is_refused_never_given_a_default(tmp_path):
    with pytest.raises(PermanentError) as no_odoo:
        await OdooConnections(None, Sealer(tmp_path), None).of("acme")
    assert no_odoo.value.code == "no_odoo_connection" and "ConnectOdoo" in no_odoo.value.reason
    with pytest.raises(PermanentError) as no_bot:
        await BotConnections(None, Sealer(tmp_path), dev_default=False).of("acme", str(uuid.uuid4()))
    assert no_bot.value.code == "no_bot_connection" and "ConnectBot" in no_bot.value.reason


def test_a_bot_secret_opens_only_for_the_tenant_and_app_it_was_sealed_for(tmp_path):
    sealer, app_id = Sealer(tmp_path), str(uuid.uuid4())
    sealed = sealer.seal(b"whsec-acme", webhook_secret_context("acme", app_id))
    bots = BotConnections(None, sealer)
    assert bots._open("acme", {"app_id": app_id, "bot_sealed_secret": sealed}) == "whsec-acme"
    with pytest.raises(ReauthorizationRequired):
        bots._open("globex", {"app_id": app_id, "bot_sealed_secret": sealed})  # copied to another tenant's row
    with pytest.raises(ReauthorizationRequired):
        bots._open("acme", {"app_id": str(uuid.uuid4()), "bot_sealed_secret": sealed})  # or another app's
    assert odoo_key_context("acme") != odoo_key_context("globex")


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.5", "169.254.169.254", "::1"])
async def test_outside_development_an_odoo_on_a_non_public_address_is_refused_before_any_call(address):
    from base.settings import Settings
    from hubs.tenant.erp import ODOO_ADDRESS_REFUSED, OdooRefused, OdooSettings
    from spokes.odoo.connect import OdooConnectionCheck

    async def resolve(host: str, port: int) -> list[str]:
        return [address]

    check = OdooConnectionCheck(Settings(dev_mode=False), resolve=resolve)
    try:
        with pytest.raises(OdooRefused) as refused:
            await check.check("acme", OdooSettings("https://odoo.acme.example", "acme", "bot", "key"))
    finally:
        await check.close()
    assert refused.value.rule == ODOO_ADDRESS_REFUSED and "odoo.acme.example" in refused.value.message


async def test_the_credential_cache_loads_a_key_once_for_concurrent_callers_and_keeps_a_bounded_number():
    import asyncio

    from infra.credentials import CredentialCache

    loads: list[str] = []

    async def load(key: str) -> str:
        loads.append(key)
        await asyncio.sleep(0.01)
        return key.upper()

    cache = CredentialCache(load, ttl_s=60, max_keys=3)
    assert await asyncio.gather(*(cache.get("acme") for _ in range(20))) == ["ACME"] * 20
    assert loads == ["acme"]  # twenty callers at once: one store read
    for key in ("a", "b", "c", "d"):
        await cache.get(key)
    assert len(cache._known) == 3 and "acme" not in cache._known  # the oldest went first

    async def failing(key: str) -> str:
        raise RuntimeError("store away")

    broken = CredentialCache(failing)
    results = await asyncio.gather(*(broken.get("x") for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results) and broken._loading == {}
