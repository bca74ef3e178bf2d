"""Each tenant's own bot, as the Botpress spoke asks it: the bot connection of the
tenant's subscription to the app the Message Hub routed to (`subscriptions.bot_webhook_id`
in the App read store, written from BotConnected) — the Chat integration's webhook id,
and its webhook secret unsealed for that tenant and app only. Kept a few seconds
(infra/credentials.py): the main path pays one local read per tenant and app every
`TTL_S` at most, never a remote round trip, and a reconnected bot is used within
seconds.

Why the spoke reads the store rather than the saga carrying the connection: the saga's
input is in `saga.events` for ever (a secret does not belong there, sealed or not,
once it is rotated), and the router's facts would put every app's connection on the
routing path that does not need it. The saga carries only the app id.

The development default: with POSEIDON_DEV_MODE (tests, benchmarks, `make run`), a
subscription without a bot of its own asks the shared stand-in bot
(`translate.DEFAULT_WEBHOOK_ID` on POSEIDON_BOTPRESS_URL). Outside it, such a message's
`AskBot` fails `no_bot_connection`: another tenant's bot, or the platform's, is never an
answer. A subscription with its own bot never falls back. Never logs a secret."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg
import structlog

from base.settings import Settings
from hubs.app.bot import webhook_secret_context
from infra.credentials import CredentialCache
from infra.sealing import Sealer, SealError, credential_keys_dir
from infra.spoke import PermanentError, ReauthorizationRequired, RetryableError
from infra.stores import lazy_pool
from projections.app.queries import bot_connection, bot_secrets
from spokes.botpress import translate
from spokes.botpress.mapping_store import MappingStore, opened_store

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class BotConnection:
    webhook_id: str
    webhook_secret: str = field(default="", repr=False)
    own: bool = True
    """False: the development default bot."""


DEV_DEFAULT = BotConnection(translate.DEFAULT_WEBHOOK_ID, own=False)


class BotConnections:
    def __init__(self, pool: asyncpg.Pool | None, sealer: Sealer, *, dev_default: bool = True):
        self.pool, self.sealer, self.dev_default = pool, sealer, dev_default
        self._cache: CredentialCache[tuple[str, str], BotConnection] = CredentialCache(self._read)
        self._secrets: CredentialCache[str, list[str] | None] = CredentialCache(self._read_secrets)

    async def of(self, tenant_id: str, app_id: str = "") -> BotConnection:
        """The bot of the tenant's subscription to `app_id` (empty: its oldest with a bot of its own)."""
        return await self._cache.get((tenant_id, app_id))

    def forget(self, tenant_id: str, app_id: str = "") -> None:
        self._cache.forget((tenant_id, app_id))

    async def push_secrets(self, tenant_id: str) -> list[str] | None:
        """The webhook secrets a push for `tenant_id` may carry: its bots' (None: it has no
        bot of its own, so the platform's development secret applies)."""
        return await self._secrets.get(tenant_id)

    async def _read(self, key: tuple[str, str]) -> BotConnection:
        tenant_id, app_id = key
        try:
            app = uuid.UUID(app_id) if app_id else None
        except ValueError:
            app = None
        row = await self._query(lambda pool: bot_connection(pool, tenant_id, app))
        if row is not None:
            return BotConnection(row["bot_webhook_id"], self._open(tenant_id, row))
        if not self.dev_default:
            raise PermanentError(
                f"tenant {tenant_id} connected no bot of its own to app {app_id or '(any)'}: connect one (ConnectBot)",
                code="no_bot_connection",
            )
        return DEV_DEFAULT

    async def _read_secrets(self, tenant_id: str) -> list[str] | None:
        rows = await self._query(lambda pool: bot_secrets(pool, tenant_id))
        if not rows:
            return None
        opened = []
        for row in rows:
            try:
                opened.append(self._open(tenant_id, row))
            except ReauthorizationRequired:
                continue  # that one cannot authenticate anything; the others still may
        return opened

    async def _query(self, query):
        if self.pool is None:
            return None
        try:
            return await query(self.pool)
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError, asyncpg.UndefinedColumnError):
            return None  # no bot connections here yet: a development setup
        except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
            # Never guess another tenant's (or the default) bot: wait for the store.
            raise RetryableError(f"app read store unavailable: {type(exc).__name__}", code="platform_unavailable") from None

    def _open(self, tenant_id: str, row) -> str:
        try:
            return self.sealer.unseal(row["bot_sealed_secret"], webhook_secret_context(tenant_id, str(row["app_id"]))).decode()
        except SealError as exc:
            log.error("stored bot webhook secret does not open", tenant_id=tenant_id, error=str(exc))
            raise ReauthorizationRequired(
                f"the stored bot webhook secret does not open: {exc}", code="bot_secret_sealed"
            ) from None


@dataclass
class BotpressResources:
    """What the Botpress spoke holds for its lifetime: the contacts' mappings and the tenants' bots."""

    store: MappingStore
    bots: BotConnections


@asynccontextmanager
async def opened_bots(settings: Settings) -> AsyncIterator[BotConnections]:
    """A small pool on the App read store, connecting on first use."""
    async with lazy_pool(settings, "app") as pool:
        yield BotConnections(pool, Sealer(credential_keys_dir(settings)), dev_default=settings.dev_mode)


@asynccontextmanager
async def opened_resources(settings: Settings) -> AsyncIterator[BotpressResources]:
    async with opened_store(settings) as store, opened_bots(settings) as bots:
        yield BotpressResources(store, bots)
