"""Which token the Facebook spoke sends with (spokes/facebook/tokens.py), over a fake of
the Tenant read store's one query: the tenant's own sealed token, opened for that
tenant and page only; the development fallback only for a page connected without a
token; a page another tenant owns refused; a copied sealed token useless."""

from __future__ import annotations

import pytest

from hubs.tenant.proof import page_token_context
from infra.sealing import Sealer
from infra.spoke import PermanentError, ReauthorizationRequired
from spokes.facebook.tokens import PageTokens

PAGE = "104857600931"
FALLBACK = "dev-page-token"


class FakeTenantStore:
    """Answers `channel_credentials`' fetchrow like the read store, counting the reads."""

    def __init__(self, rows: dict[str, dict]):
        self.rows, self.reads = rows, 0

    async def fetchrow(self, sql: str, channel: str, account_id: str):
        assert "FROM channel_accounts" in sql and channel == "facebook"
        self.reads += 1
        return self.rows.get(account_id)


@pytest.fixture
def sealer(tmp_path) -> Sealer:
    return Sealer(tmp_path / "credential-keys")


def row(tenant_id: str, sealed: str = "") -> dict:
    return {"tenant_id": tenant_id, "connected": True, "sealed_token": sealed, "needs_reauthorization": False}


async def test_the_tenants_own_token_is_opened_for_its_tenant_and_page_and_kept_until_forgotten(sealer):
    store = FakeTenantStore({PAGE: row("acme", sealer.seal(b"EAAP-acme-token", page_token_context("acme", PAGE)))})
    tokens = PageTokens(store, sealer, FALLBACK)

    first = await tokens.of("acme", PAGE)
    again = await tokens.of("acme", PAGE)
    tokens.forget("acme", PAGE)
    await tokens.of("acme", PAGE)

    assert (first.token, again.token) == ("EAAP-acme-token", "EAAP-acme-token")
    assert first.sealed.startswith("sealed.v1.") and "EAAP" not in repr(first)
    assert store.reads == 2


async def test_a_page_connected_without_a_token_uses_the_development_fallback(sealer):
    tokens = PageTokens(FakeTenantStore({PAGE: row("acme")}), sealer, FALLBACK)

    found = await tokens.of("acme", PAGE)

    assert (found.token, found.sealed) == (FALLBACK, "")
    assert (await PageTokens(FakeTenantStore({}), sealer, FALLBACK).of("acme", PAGE)).token == FALLBACK


async def test_a_page_another_tenant_owns_is_refused_token_or_not(sealer):
    for sealed in ("", sealer.seal(b"EAAP-globex", page_token_context("globex", PAGE))):
        tokens = PageTokens(FakeTenantStore({PAGE: row("globex", sealed)}), sealer, FALLBACK)
        with pytest.raises(PermanentError) as refused:
            await tokens.of("acme", PAGE)
        assert refused.value.code == "page_not_owned"


async def test_a_sealed_token_copied_to_another_tenants_row_does_not_open(sealer):
    copied = sealer.seal(b"EAAP-globex", page_token_context("globex", PAGE))
    tokens = PageTokens(FakeTenantStore({PAGE: row("acme", copied)}), sealer, FALLBACK)

    with pytest.raises(ReauthorizationRequired) as refused:
        await tokens.of("acme", PAGE)

    assert "EAAP" not in refused.value.reason
