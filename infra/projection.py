"""What a read model declares to the shared projector: its schema name, the event
topics it reads, its SQL migrations and a pure mapping from one decoded event to
the SQL statements that apply it, optionally in a structured row form (`Insert`,
`Upsert`, `Update`) that generates the SQL and also folds into rows held in
memory, for a bulk rebuild (infra/bulk.py). No I/O here."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Statement:
    """One parameterised SQL statement the projector executes. Statements with the
    same SQL that follow each other are sent as one executemany batch."""

    sql: str
    args: tuple[Any, ...]
    phase: int = 0
    """Within one batch the projector runs phase 0 statements first, then 1, …,
    keeping the order inside a phase. A mapping puts statements in different
    phases only where their relative order does not matter (rows that others
    update come first), which lets same-SQL statements run as one batch."""
    shape: Shape | None = field(default=None, compare=False)
    """The row form `sql` was generated from, if any: lets a bulk rebuild fold
    the statement in memory instead of running it. None: SQL only."""


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").fullmatch


def uuid_text(value: str) -> str:
    """A `uuid` column's value as its canonical text; ValueError if it is no UUID.

    asyncpg encodes a str for a `uuid` parameter or COPY column as it does a
    `uuid.UUID`, and a rebuild maps every event: building a UUID object costs
    ~1 µs each (two per event), the canonical-form check a fifth of that. Other
    spellings (upper case, no dashes, braces) are normalised as `uuid.UUID`
    would, so one UUID is one fold key; anything else raises here, in the
    mapping, where the projector dead-letters it (asyncpg's own error, later,
    would stop the projector instead)."""
    if _CANONICAL_UUID(value):
        return value
    return str(uuid.UUID(value))


@dataclass(frozen=True)
class ProjectionSpec:
    name: str
    """Read-model name; the PostgreSQL schema is POSEIDON_SCHEMA_PREFIX + name."""
    topics: Sequence[str]
    """Logical event topics (`wallet.events`)."""
    migrations: Path
    """Folder of `NNNN_<what>.sql` files, written without schema qualification."""
    apply: Callable[[str, dict], list[Statement]]
    """(event type, decoded record) → statements. Must be idempotent per event."""
    tables: Sequence[str] = ()
    """Tables compared by `poseidon replay --dry-run` (live vs rebuilt)."""


# -- the structured row form ---------------------------------------------------
#
# A shape is declared once per statement kind, at import time. It generates the
# statement's SQL (so the live projector runs exactly what the fold imitates) and
# folds one statement's args into a table held in memory as {primary key: row}.
# The fold is only exact on a store that holds nothing but what was folded (a
# fresh shadow schema): an update of an absent row does nothing, as in SQL.


@dataclass(frozen=True)
class P:
    """Positional parameter `$index` of the statement's args, optionally cast."""

    index: int
    cast: str = ""

    def sql(self) -> str:
        return f"${self.index}::{self.cast}" if self.cast else f"${self.index}"


@dataclass(frozen=True)
class Const:
    """A constant written into the SQL (`literal`) whose value is `value`."""

    literal: str
    value: Any


@dataclass(frozen=True)
class Keep:
    """`COALESCE($n, column)`: NULL keeps the column."""

    param: P | int


@dataclass(frozen=True)
class When:
    """`CASE WHEN flag THEN value ELSE column END`."""

    flag: P | int
    value: P | int


Value = P | int | Const
Assign = P | int | Keep | When


def _p(spec: P | int) -> P:
    return spec if isinstance(spec, P) else P(spec)


def _value_sql(spec: Value) -> str:
    return spec.literal if isinstance(spec, Const) else _p(spec).sql()


def _getter(spec: Value) -> Callable[[tuple], Any]:
    if isinstance(spec, Const):
        value = spec.value
        return lambda _args: value
    i = _p(spec).index - 1
    return lambda args: args[i]


_new_object = object.__new__


class Rows:
    """One table held in memory by a bulk rebuild: rows by primary key, and the
    values taken of each other unique key (an insert-if-absent that meets one
    does nothing, as ON CONFLICT DO NOTHING would)."""

    __slots__ = ("by_key", "taken")

    def __init__(self) -> None:
        self.by_key: dict[Any, dict[str, Any]] = {}
        self.taken: dict[tuple[str, ...], set[tuple]] = {}


class Shape:
    """A statement kind in row form on one table; `sql` is what it runs live."""

    table: str
    sql: str

    def statement(self, args: tuple, phase: int = 0) -> Statement:
        # A rebuild makes one or two per event: filling the frozen dataclass's
        # __dict__ directly costs half its __init__ (an object.__setattr__ per field).
        made = _new_object(Statement)
        fields = made.__dict__
        fields["sql"], fields["args"], fields["phase"], fields["shape"] = self.sql, args, phase, self
        return made

    def fold(self, rows: Rows, args: tuple) -> None:
        raise NotImplementedError


class _Writes(Shape):
    """Shared by Insert and Upsert: the columns of a new row and its keys."""

    def __init__(self, table: str, columns: Mapping[str, Value], key: Sequence[str], unique: Sequence[Sequence[str]]):
        self.table, self.columns, self.key = table, dict(columns), tuple(key)
        self.unique = tuple(tuple(u) for u in unique)
        self._values = ", ".join(_value_sql(v) for v in self.columns.values())
        self._names = ", ".join(self.columns)
        # The fold runs once per event of a rebuild: plain `$1 … $n` in order is a zip.
        plain = all(not isinstance(v, Const) and _p(v) == P(i) for i, v in enumerate(self.columns.values(), 1))
        self._plain = tuple(self.columns) if plain else None
        self._getters = [(c, _getter(v)) for c, v in self.columns.items()]
        self._key_of = itemgetter(*self.key)
        self._unique_of = tuple((u, itemgetter(*u)) for u in self.unique)

    def row(self, args: tuple) -> tuple[Any, dict[str, Any]]:
        """The fold key (a scalar for a one-column key, as `Update` makes it) and the row."""
        row = dict(zip(self._plain, args, strict=True)) if self._plain is not None else {c: get(args) for c, get in self._getters}
        return self._key_of(row), row

    def claims(self, rows: Rows, row: dict[str, Any]) -> bool:
        """Takes the row's other unique keys; False (nothing taken) if one is taken."""
        wanted = [(rows.taken.setdefault(u, set()), value_of(row)) for u, value_of in self._unique_of]
        if any(value in taken for taken, value in wanted):
            return False
        for taken, value in wanted:
            taken.add(value)
        return True


class Insert(_Writes):
    """Insert if absent: `INSERT … ON CONFLICT [(key)] DO NOTHING`. `unique`
    lists the table's other unique keys; with `any_conflict` the SQL names no
    conflict target, so a clash on any of them skips the row as well."""

    def __init__(
        self,
        table: str,
        columns: Mapping[str, Value],
        *,
        key: Sequence[str],
        unique: Sequence[Sequence[str]] = (),
        any_conflict: bool = False,
    ):
        super().__init__(table, columns, key, unique)
        target = "" if any_conflict else f" ({', '.join(self.key)})"
        self.sql = f"INSERT INTO {table} ({self._names}) VALUES ({self._values}) ON CONFLICT{target} DO NOTHING"

    def fold(self, rows: Rows, args: tuple) -> None:
        key, row = self.row(args)
        if key not in rows.by_key and (not self.unique or self.claims(rows, row)):
            rows.by_key[key] = row


class Upsert(_Writes):
    """Insert, or overwrite the `update` columns of a row whose version is older:
    `INSERT … ON CONFLICT (key) DO UPDATE SET c = EXCLUDED.c … WHERE t.version < EXCLUDED.version`."""

    def __init__(
        self, table: str, columns: Mapping[str, Value], *, key: Sequence[str], update: Sequence[str], version: str = "version"
    ):
        super().__init__(table, columns, key, ())
        self.update, self.version = tuple(update), version
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in self.update)
        self.sql = (
            f"INSERT INTO {table} AS t ({self._names}) VALUES ({self._values})"
            f" ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {sets} WHERE t.{version} < EXCLUDED.{version}"
        )

    def fold(self, rows: Rows, args: tuple) -> None:
        key, row = self.row(args)
        old = rows.by_key.get(key)
        if old is None:
            rows.by_key[key] = row
        elif old[self.version] < row[self.version]:
            for c in self.update:
                old[c] = row[c]


class Update(Shape):
    """`UPDATE … SET … WHERE key = … [AND version < $guard]`: changes the row if
    it exists (and is older than the event, with `guard`)."""

    def __init__(
        self,
        table: str,
        *,
        key: Mapping[str, P | int],
        set: Mapping[str, Assign],  # noqa: A002 - the SQL word
        guard: P | int | None = None,
        version: str = "version",
    ):
        self.table, self.version = table, version
        self.key = {c: _p(v) for c, v in key.items()}
        self.assign = dict(set)
        self.guard = None if guard is None else _p(guard)
        sets = ", ".join(f"{c} = {self._assign_sql(c, a)}" for c, a in self.assign.items())
        where = " AND ".join(f"{c} = {p.sql()}" for c, p in self.key.items())
        if self.guard is not None:
            where += f" AND {version} < {self.guard.sql()}"
        self.sql = f"UPDATE {table} SET {sets} WHERE {where}"
        self._key_of = itemgetter(*(p.index - 1 for p in self.key.values()))
        self._guard_at = None if self.guard is None else self.guard.index - 1
        self._plan = tuple(self._plan_of(c, a) for c, a in self.assign.items())

    @staticmethod
    def _assign_sql(column: str, a: Assign) -> str:
        if isinstance(a, Keep):
            return f"COALESCE({_p(a.param).sql()}, {column})"
        if isinstance(a, When):
            return f"CASE WHEN {_p(a.flag).sql()} THEN {_p(a.value).sql()} ELSE {column} END"
        return _p(a).sql()

    @staticmethod
    def _plan_of(column: str, a: Assign) -> tuple[str, int, int, int]:
        """(column, value index, kind: 0 set / 1 keep NULL / 2 when flag, flag index)."""
        if isinstance(a, Keep):
            return column, _p(a.param).index - 1, 1, -1
        if isinstance(a, When):
            return column, _p(a.value).index - 1, 2, _p(a.flag).index - 1
        return column, _p(a).index - 1, 0, -1

    def fold(self, rows: Rows, args: tuple) -> None:
        row = rows.by_key.get(self._key_of(args))
        if row is None or (self._guard_at is not None and not row[self.version] < args[self._guard_at]):
            return
        for column, at, kind, flag in self._plan:
            value = args[at]
            if kind == 0 or (kind == 1 and value is not None) or (kind == 2 and args[flag]):
                row[column] = value
