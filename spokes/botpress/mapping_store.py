"""The Botpress spoke's own PostgreSQL state (schema `<prefix>botpress`): which
Botpress user and conversation stand for a contact, and which of our messages the
bot already has. The user key is a credential (whoever holds it reads and writes
the contact's conversation with the bot), so it is stored sealed with AES-256-GCM,
bound to its row, and never logged or shown in a repr."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import asyncpg
import structlog

from base.settings import Settings
from infra.migrations import migrate
from infra.sealing import Sealer, SealError
from infra.stores import keep_session

log = structlog.get_logger(__name__)

SCHEMA = "botpress"
MIGRATIONS = Path(__file__).parent / "migrations"
SEALING_KEYS_FOLDER = "botpress-sealing-keys"
"""Under POSEIDON_STATE_DIR, 0700, one `<kid>.key` per key (newest seals, all unseal); production mounts a secret store."""


@dataclass(frozen=True)
class ContactMapping:
    tenant_id: str
    channel: str
    contact_id: str
    webhook_id: str
    user_id: str
    conversation_id: str
    user_key: str = field(repr=False, default="")
    """In clear, in memory only; "" when the stored one no longer opens (keys lost): treat the mapping as stale."""


@dataclass(frozen=True)
class SentRecord:
    conversation_id: str
    botpress_message_id: str | None = None
    """None: a send began and may or may not have reached Botpress."""
    botpress_created_at: datetime | None = None


class MappingStore:
    def __init__(self, pool: asyncpg.Pool, schema: str, sealer: Sealer):
        self.pool, self.schema, self.sealer = pool, schema, sealer
        self._mappings = f'"{schema}".contact_mappings'
        self._sent = f'"{schema}".sent_messages'

    @classmethod
    async def open(cls, settings: Settings, *, sealer: Sealer | None = None) -> MappingStore:
        """Connect, bring the schema up to date, and use the sealing keys under the state folder."""
        schema = settings.pg_schema(SCHEMA)
        pool = await asyncpg.create_pool(settings.dsn_for(SCHEMA), min_size=1, max_size=4, reset=keep_session)
        try:
            async with pool.acquire() as conn:
                await migrate(conn, schema, MIGRATIONS)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, schema, sealer or Sealer(Path(settings.state_dir) / SEALING_KEYS_FOLDER))

    async def close(self) -> None:
        await self.pool.close()

    async def get(self, tenant_id: str, channel: str, contact_id: str) -> ContactMapping | None:
        row = await self.pool.fetchrow(
            f"SELECT * FROM {self._mappings} WHERE tenant_id = $1 AND channel = $2 AND contact_id = $3",
            tenant_id,
            channel,
            contact_id,
        )
        return self._from_row(row) if row else None

    async def by_conversation(self, tenant_id: str, conversation_id: str) -> ContactMapping | None:
        """The contact a Botpress conversation stands for (a pushed bot message names only that)."""
        row = await self.pool.fetchrow(
            f"SELECT * FROM {self._mappings} WHERE tenant_id = $1 AND conversation_id = $2", tenant_id, conversation_id
        )
        return self._from_row(row) if row else None

    async def save(self, mapping: ContactMapping, *, replacing: ContactMapping | None = None) -> ContactMapping:
        """Store `mapping` and return the one in force: ours, or the one another worker
        stored first (then ours is an orphan in Botpress, harmless). With `replacing`,
        only a row still equal to it is overwritten (compare-and-set)."""
        sealed = self.sealer.seal(mapping.user_key.encode(), _context(mapping))
        values = (
            mapping.tenant_id,
            mapping.channel,
            mapping.contact_id,
            mapping.webhook_id,
            mapping.user_id,
            sealed,
            mapping.conversation_id,
        )
        async with self.pool.acquire() as conn:
            row = None
            if replacing is not None:
                row = await conn.fetchrow(
                    f"""UPDATE {self._mappings}
                        SET webhook_id = $4, botpress_user_id = $5, user_key_sealed = $6, conversation_id = $7, updated_at = now()
                        WHERE tenant_id = $1 AND channel = $2 AND contact_id = $3
                          AND botpress_user_id = $8 AND conversation_id = $9
                        RETURNING *""",
                    *values,
                    replacing.user_id,
                    replacing.conversation_id,
                )
            if row is None:
                row = await conn.fetchrow(
                    f"""INSERT INTO {self._mappings}
                          (tenant_id, channel, contact_id, webhook_id, botpress_user_id, user_key_sealed, conversation_id)
                        VALUES ($1, $2, $3, $4, $5, $6, $7)
                        ON CONFLICT (tenant_id, channel, contact_id) DO NOTHING
                        RETURNING *""",
                    *values,
                )
            if row is None:
                row = await conn.fetchrow(
                    f"SELECT * FROM {self._mappings} WHERE tenant_id = $1 AND channel = $2 AND contact_id = $3", *values[:3]
                )
        return self._from_row(row)

    async def sent(self, tenant_id: str, message_id: str) -> SentRecord | None:
        row = await self.pool.fetchrow(
            f"""SELECT conversation_id, botpress_message_id, botpress_created_at FROM {self._sent}
                WHERE tenant_id = $1 AND message_id = $2""",
            tenant_id,
            message_id,
        )
        return SentRecord(**dict(row)) if row else None

    async def begin_send(self, tenant_id: str, message_id: str, conversation_id: str) -> None:
        """Note that `message_id` is about to go to the bot in `conversation_id`."""
        await self.pool.execute(
            f"""INSERT INTO {self._sent} (tenant_id, message_id, conversation_id) VALUES ($1, $2, $3)
                ON CONFLICT (tenant_id, message_id) DO UPDATE SET conversation_id = EXCLUDED.conversation_id, sent_at = now()
                WHERE {self._sent}.botpress_message_id IS NULL""",
            tenant_id,
            message_id,
            conversation_id,
        )

    async def record_sent(self, tenant_id: str, message_id: str, record: SentRecord) -> None:
        """Note that the bot has `message_id` as Botpress message `record.botpress_message_id`."""
        await self.pool.execute(
            f"""INSERT INTO {self._sent} (tenant_id, message_id, conversation_id, botpress_message_id, botpress_created_at)
                VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (tenant_id, message_id) DO UPDATE SET conversation_id = EXCLUDED.conversation_id,
                    botpress_message_id = EXCLUDED.botpress_message_id, botpress_created_at = EXCLUDED.botpress_created_at""",
            tenant_id,
            message_id,
            record.conversation_id,
            record.botpress_message_id,
            record.botpress_created_at,
        )

    def _from_row(self, row: asyncpg.Record) -> ContactMapping:
        mapping = ContactMapping(
            tenant_id=row["tenant_id"],
            channel=row["channel"],
            contact_id=row["contact_id"],
            webhook_id=row["webhook_id"],
            user_id=row["botpress_user_id"],
            conversation_id=row["conversation_id"],
        )
        try:
            key = self.sealer.unseal(row["user_key_sealed"], _context(mapping)).decode()
        except SealError as exc:
            log.warning(
                "stored Botpress user key does not open; the mapping will be replaced",
                tenant_id=mapping.tenant_id,
                error=str(exc),
            )
            return mapping
        return replace(mapping, user_key=key)


@asynccontextmanager
async def opened_store(settings: Settings) -> AsyncIterator[MappingStore]:
    """The store for the spoke's lifetime: `SpokeSpec(resources=lambda ctx: opened_store(ctx.settings))`."""
    store = await MappingStore.open(settings)
    try:
        yield store
    finally:
        await store.close()


def _context(mapping: ContactMapping) -> str:
    # Authenticated data: a sealed key opens only in the row (and for the user) it was sealed for.
    return f"botpress/{mapping.tenant_id}/{mapping.channel}/{mapping.contact_id}/{mapping.webhook_id}/{mapping.user_id}"
