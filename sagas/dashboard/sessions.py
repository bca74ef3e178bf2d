"""The dashboard's server-side sessions in PostgreSQL (schema `<prefix>dashboard`,
created by its own migrations): open at login, find on every request, close at
logout, and the access tokens logged out of. Shared by every dashboard instance;
it stores no cookie value and no usable token (see rules: sessions and CSRF)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

from infra.migrations import migrate
from sagas.dashboard.rules import SessionRefused, new_session_id, open_token, seal_token, session_key

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class Session:
    session_id: str
    """The cookie's value (known here only because the browser just sent it)."""
    principal_id: str
    token: str
    """The operator's access token, re-verified on every request."""
    token_id: str
    identity_session: str
    """The Identity hub's refresh family of a password login; '' for a pasted token."""
    expires_at: datetime


class SessionStore:
    def __init__(self, pool: asyncpg.Pool, schema: str):
        self.pool, self.schema = pool, schema
        self.table = f'"{schema}".sessions'
        self.refused = f'"{schema}".refused_tokens'

    async def migrate(self) -> None:
        async with self.pool.acquire() as conn:
            await migrate(conn, self.schema, MIGRATIONS)

    async def open(self, token: str, *, principal_id: str, token_id: str, identity_session: str, expires_at: datetime) -> str:
        """A new session for a verified token; returns its id (the cookie's value)."""
        session_id = new_session_id()
        async with self.pool.acquire() as conn, conn.transaction():
            # Expired rows go here rather than in a timer: logins are rare, and a
            # stale row is never used (find() checks the expiry itself).
            await conn.execute(f"DELETE FROM {self.table} WHERE expires_at < now()")
            await conn.execute(f"DELETE FROM {self.refused} WHERE expires_at < now() - interval '1 minute'")
            await conn.execute(
                f"INSERT INTO {self.table} (session_key, principal_id, token_id, sealed_token, identity_session, expires_at) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                session_key(session_id),
                principal_id,
                token_id,
                seal_token(session_id, token),
                identity_session,
                expires_at,
            )
        return session_id

    async def find(self, session_id: str) -> Session | None:
        try:
            key = session_key(session_id)
        except SessionRefused:
            return None
        row = await self.pool.fetchrow(
            f"SELECT principal_id, token_id, sealed_token, identity_session, expires_at FROM {self.table} "
            "WHERE session_key = $1 AND expires_at > now()",
            key,
        )
        return self._session(session_id, row)

    async def close(self, session_id: str) -> Session | None:
        """End one session; returns what it was (None if there was none)."""
        try:
            key = session_key(session_id)
        except SessionRefused:
            return None
        row = await self.pool.fetchrow(
            f"DELETE FROM {self.table} WHERE session_key = $1 "
            "RETURNING principal_id, token_id, sealed_token, identity_session, expires_at",
            key,
        )
        return self._session(session_id, row)

    async def refuse_token(self, token_id: str, expires_at: datetime) -> None:
        """End every session of this access token and refuse it at login until it expires."""
        if not token_id:
            return
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(f"DELETE FROM {self.table} WHERE token_id = $1", token_id)
            await conn.execute(
                f"INSERT INTO {self.refused} (token_id, expires_at) VALUES ($1, $2) ON CONFLICT (token_id) DO NOTHING",
                token_id,
                expires_at,
            )

    async def is_refused(self, token_id: str) -> bool:
        return await self.pool.fetchval(f"SELECT true FROM {self.refused} WHERE token_id = $1", token_id) is not None

    @staticmethod
    def _session(session_id: str, row: asyncpg.Record | None) -> Session | None:
        if row is None:
            return None
        try:
            token = open_token(session_id, row["sealed_token"])
        except SessionRefused:
            return None
        return Session(session_id, row["principal_id"], token, row["token_id"], row["identity_session"], row["expires_at"])
