"""Each tenant's own page access token for a page, as the Facebook spoke sends with:
read sealed from the Tenant read store (`channel_accounts.sealed_token`, written from
the tenant's ChannelConnected/Reconnected with proof) and unsealed for that tenant and
page only. Kept for a few seconds, so a rotated token (a reconnect) is used within
`TTL_S`; dropped at once when Facebook refuses it. Never logs a token.

The development fallback: a page connected without a token of its own (platform
provisioning: tests, benchmarks, `make run` by hand) sends with the shared
`POSEIDON_FACEBOOK_PAGE_TOKEN`. A page with its own token never does, nor does a
page another tenant owns now (refused)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg
import structlog

from base.settings import Settings
from hubs.tenant.proof import page_token_context
from infra.sealing import Sealer, SealError, credential_keys_dir
from infra.spoke import PermanentError, ReauthorizationRequired, RetryableError
from infra.stores import lazy_pool
from projections.tenant.queries import channel_credentials

log = structlog.get_logger(__name__)

TTL_S = 10.0


@dataclass(frozen=True)
class PageToken:
    token: str = field(repr=False)
    sealed: str = field(default="", repr=False)
    """The stored sealed token this came from; empty: the development fallback."""


class PageTokens:
    def __init__(self, pool: asyncpg.Pool | None, sealer: Sealer, fallback: str):
        self.pool, self.sealer, self.fallback = pool, sealer, fallback
        self._known: dict[tuple[str, str], tuple[float, PageToken]] = {}

    async def of(self, tenant_id: str, page_id: str) -> PageToken:
        known = self._known.get((tenant_id, page_id))
        if known is not None and known[0] > time.monotonic():
            return known[1]
        token = await self._read(tenant_id, page_id)
        self._known[(tenant_id, page_id)] = (time.monotonic() + TTL_S, token)
        return token

    def forget(self, tenant_id: str, page_id: str) -> None:
        self._known.pop((tenant_id, page_id), None)

    async def _read(self, tenant_id: str, page_id: str) -> PageToken:
        if self.pool is None:
            return PageToken(self.fallback)
        try:
            row = await channel_credentials(self.pool, "facebook", page_id)
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError, asyncpg.UndefinedColumnError):
            return PageToken(self.fallback)  # no channel registry here yet: a development setup
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            # Never guess a token: wait for the store like for any platform dependency.
            raise RetryableError(f"tenant read store unavailable: {type(exc).__name__}", code="platform_unavailable") from None
        if row is not None and row["tenant_id"] != tenant_id:
            raise PermanentError(f"page {page_id} belongs to another tenant now", code="page_not_owned")
        if row is None or not row["sealed_token"]:
            return PageToken(self.fallback)
        try:
            clear = self.sealer.unseal(row["sealed_token"], page_token_context(tenant_id, page_id)).decode()
        except SealError as exc:
            log.error("stored page token does not open", tenant_id=tenant_id, page_id=page_id, error=str(exc))
            raise ReauthorizationRequired(f"the stored page token does not open: {exc}") from None
        return PageToken(clear, row["sealed_token"])


@asynccontextmanager
async def opened_tokens(settings: Settings) -> AsyncIterator[PageTokens]:
    """For the spoke's lifetime: a small pool on the Tenant read store (wherever its
    database is), connecting on first use, so the spoke starts while PostgreSQL is away."""
    async with lazy_pool(settings, "tenant") as pool:
        yield PageTokens(pool, Sealer(credential_keys_dir(settings)), settings.facebook_page_token)
