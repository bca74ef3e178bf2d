"""A tenant chooses its Facebook delivery policy in the Config hub
(`facebook.delivery_policy`); the spoke reads it from the Config read store, and
every other tenant gets the platform's default."""

from __future__ import annotations

import pytest

from hubs.config.aggregate import TENANT, entry_id, owner_tenant
from hubs.config.commands import SetConfigValue
from infra.command_client import CommandClient, new_meta
from poseidon import bootstrap
from spokes.facebook.policy import AT_LEAST_ONCE, AT_MOST_ONCE, KEY, DeliveryPolicies, opened_policies
from tests.harness import eventually

pytestmark = pytest.mark.integration


async def test_a_tenant_set_at_least_once_gets_it_and_the_others_the_default(platform):
    settings = platform.settings
    platform.start("processor", "config")
    platform.start("projector", "config")
    meta = new_meta(entry_id(TENANT, "acme", KEY), owner_tenant(TENANT, "acme"), actor="acme-admin")
    async with CommandClient(settings, bootstrap.codec(settings), [bootstrap.hub("config")]) as client:
        (await client.send(SetConfigValue(meta, TENANT, "acme", KEY, f'"{AT_LEAST_ONCE}"'))).raise_for_rejection()

    async with opened_policies(settings) as policies:
        fresh = lambda: DeliveryPolicies(policies.pool, AT_MOST_ONCE)  # noqa: E731 - no cache between looks
        await eventually(lambda: _is(fresh().of("acme"), AT_LEAST_ONCE), timeout=60)
        assert await policies.of("globex") == settings.facebook_delivery_policy == AT_MOST_ONCE


async def test_without_a_config_read_store_every_tenant_gets_the_default(platform):
    settings = platform.settings.with_(facebook_delivery_policy=AT_LEAST_ONCE)
    async with opened_policies(settings) as policies:
        assert await policies.of("acme") == AT_LEAST_ONCE


async def _is(awaitable, expected) -> bool:
    return await awaitable == expected
