"""Each tenant's own Odoo connection, as the Odoo spoke calls with: read from the
Tenant read store (`odoo_connections`, written from the tenant's OdooConnected after
the platform authenticated with it) and its API key unsealed for that tenant only;
kept a few seconds (infra/credentials.py), so a rotated key is used within seconds
and the main path pays no extra remote round trip. Never logs a key.

The development default: with POSEIDON_DEV_MODE (tests, benchmarks, `make run`), a
tenant without a connection of its own uses the settings' single connection
(POSEIDON_ODOO_URL, _DB, _USER, _API_KEY, _PROTOCOL). Outside it, such a tenant's
calls fail `no_odoo_connection`: its customers never go to an Odoo it did not name.
A tenant with its own never falls back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import structlog

from base.settings import Settings
from hubs.tenant.erp import odoo_key_context
from infra.credentials import CredentialCache
from infra.sealing import Sealer, SealError, credential_keys_dir
from infra.spoke import PermanentError, ReauthorizationRequired, RetryableError
from infra.stores import lazy_pool
from projections.tenant.queries import odoo_connection
from spokes.odoo.client import OdooConnection

log = structlog.get_logger(__name__)


class OdooConnections:
    def __init__(self, pool: asyncpg.Pool | None, sealer: Sealer, fallback: OdooConnection | None):
        """`fallback`: the development default (None: none, outside POSEIDON_DEV_MODE)."""
        self.pool, self.sealer, self._fallback = pool, sealer, fallback
        self._cache: CredentialCache[str, OdooConnection] = CredentialCache(self._read)

    async def of(self, tenant_id: str) -> OdooConnection:
        return await self._cache.get(tenant_id)

    def forget(self, tenant_id: str) -> None:
        self._cache.forget(tenant_id)

    async def _read(self, tenant_id: str) -> OdooConnection:
        if self.pool is None:
            return self.fallback(tenant_id)
        try:
            row = await odoo_connection(self.pool, tenant_id)
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            return self.fallback(tenant_id)  # no such table here yet: a development setup
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            # Never guess another connection: wait for the store like for any platform dependency.
            raise RetryableError(f"tenant read store unavailable: {type(exc).__name__}", code="platform_unavailable") from None
        if row is None:
            return self.fallback(tenant_id)
        try:
            key = self.sealer.unseal(row["sealed_api_key"], odoo_key_context(tenant_id)).decode()
        except SealError as exc:
            log.error("stored Odoo API key does not open", tenant_id=tenant_id, error=str(exc))
            raise ReauthorizationRequired(f"the stored Odoo API key does not open: {exc}", code="odoo_key_sealed") from None
        return OdooConnection(row["url"], row["database"], row["login"], key, row["protocol"])

    def fallback(self, tenant_id: str) -> OdooConnection:
        if self._fallback is None:
            raise PermanentError(
                f"tenant {tenant_id} saved no Odoo connection of its own: save one (ConnectOdoo)", code="no_odoo_connection"
            )
        return self._fallback


@asynccontextmanager
async def opened_connections(settings: Settings) -> AsyncIterator[OdooConnections]:
    """For the spoke's lifetime: a small pool on the Tenant read store, connecting on first use."""
    async with lazy_pool(settings, "tenant") as pool:
        fallback = OdooConnection.from_settings(settings) if settings.dev_mode else None
        yield OdooConnections(pool, Sealer(credential_keys_dir(settings)), fallback)
