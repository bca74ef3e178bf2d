"""Bulk load of a fresh shadow schema for a rebuild: folds statements that carry
a row form (`infra.projection.Shape`) into rows held in memory, one per primary
key, and writes every table once with COPY. Must never be used on a store that
holds rows it did not fold (the live one, or a catch-up): there the SQL is the truth.

Why fold rather than batch the SQL faster: a rebuild applies every event of
the log, and most of its statements touch a row an earlier one wrote (a
wallet's balance moves once per event); folding writes that row once, and COPY
writes ~10x faster than executemany of INSERT … ON CONFLICT. The live projector
runs the SQL generated from the same shapes, so both paths share one
declaration; tests/integration/test_bulk_replay.py holds them equal for every
read model.

A statement without a row form (a read model not converted, e.g. the tenant
model's CTEs) cannot be folded: the first one spills what is held so far to the
store, and from then on every statement runs as SQL, so a rebuild stays right
for any read model (only slower)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import structlog

from infra.projection import Rows, Statement

log = structlog.get_logger(__name__)


class BulkLoad:
    """Rows folded for one shadow schema, by table; see the module docstring."""

    def __init__(self, schema: str):
        self.schema = schema
        self.tables: dict[str, Rows] = {}
        self.spilled = False
        """True once a statement could not be folded: everything runs as SQL since."""

    async def fold(self, conn: asyncpg.Connection, statements: list[Statement]) -> list[Statement]:
        """Folds the statements in order (event order: what a version guard
        assumes); returns those left to run as SQL, after spilling if needed."""
        if self.spilled:
            return statements
        tables = self.tables
        for i, statement in enumerate(statements):
            shape = statement.shape
            if shape is None:
                log.info("statement without a row form: the rest of the rebuild runs as SQL", schema=self.schema)
                await self.spill(conn)
                self.spilled = True
                return statements[i:]
            rows = tables.get(shape.table)
            if rows is None:
                rows = tables[shape.table] = Rows()
            shape.fold(rows, statement.args)
        return []

    async def spill(self, conn: asyncpg.Connection) -> int:
        """COPYs every folded row into the schema and forgets them; returns the row count.
        Rows are grouped by the columns they hold: a column no statement wrote
        keeps its default, as it would under INSERT."""
        written = 0
        for table, rows in self.tables.items():
            by_columns: dict[tuple[str, ...], list[tuple]] = {}
            for row in rows.by_key.values():
                by_columns.setdefault(tuple(row), []).append(tuple(row.values()))
            for columns, records in by_columns.items():
                await conn.copy_records_to_table(table, records=records, columns=list(columns), schema_name=self.schema)
                written += len(records)
        self.tables.clear()
        return written


@contextmanager
def cycle_collection_paused() -> Iterator[None]:
    """Pauses Python's cyclic garbage collector (process-wide) for a bulk load.

    Decoding, mapping and folding allocate a dozen container objects per event,
    and the fold keeps every row until the COPY: each allocation burst triggers
    a collection, and the older generations are traversed again and again as
    the held rows grow. None of these objects form cycles (reference counting
    frees them), so the collector only costs time: measured on the wallet
    replay, about a third of the per-event CPU. Reference counting still frees
    everything; cycles made meanwhile by other code wait for the collector's
    return. Leaves it off if it was off already."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
