"""Versioned SQL migrations for a read store's schema, applied at start under an
advisory lock so concurrent starters (projector, gRPC server) do not race. Also
creates the projector's bookkeeping tables, which every read store shares."""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import asyncpg
import structlog

log = structlog.get_logger(__name__)

_MIGRATION = re.compile(r"^(?P<version>[0-9]{4})_(?P<name>[a-z0-9_]+)\.sql$")

BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
-- The projector's read position, written in the same transaction as the rows.
CREATE TABLE IF NOT EXISTS projection_offsets (
    topic text NOT NULL,
    partition integer NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);
"""


class MigrationError(RuntimeError):
    """A migration file is misnamed or failed to apply."""


def migration_files(folder: Path) -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migrations are named NNNN_<what>.sql")
        found.append((int(match["version"]), match["name"], path))
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{folder}: two migrations share a version number")
    return found


async def migrate(conn: asyncpg.Connection, schema: str, folder: Path) -> list[int]:
    """Bring `schema` up to date; returns the versions applied now."""
    lock = zlib.crc32(f"poseidon-migrate:{schema}".encode())
    applied_now: list[int] = []
    await conn.execute("SELECT pg_advisory_lock($1)", lock)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        async with conn.transaction():
            await conn.execute(f'SET LOCAL search_path TO "{schema}"')
            await conn.execute(BOOKKEEPING)
        done = {r["version"] for r in await conn.fetch(f'SELECT version FROM "{schema}".schema_migrations')}
        for version, name, path in migration_files(folder):
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(f'SET LOCAL search_path TO "{schema}"')
                try:
                    await conn.execute(path.read_text())
                except asyncpg.PostgresError as exc:
                    raise MigrationError(f"{path.name} failed in schema {schema}: {exc}") from exc
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            applied_now.append(version)
            log.info("migration applied", schema=schema, version=version, name=name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", lock)
    return applied_now
