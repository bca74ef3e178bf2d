"""The schema evolution gate: whatever an older version of a schema wrote, the newest
version must read. It fails naming the schema, the versions and the field that broke;
it does not judge forward compatibility (old readers of new data)."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import pytest
from fastavro import schemaless_reader, schemaless_writer
from fastavro.utils import generate_many

from schemas.codec import Catalog, SchemaVersion

CATALOG = Catalog.load()
SAMPLES_PER_VERSION = 8
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# Avro's schema resolution rules: what a reader may read in place of its own type.
PROMOTIONS = {
    ("int", "long"), ("int", "float"), ("int", "double"),
    ("long", "float"), ("long", "double"), ("float", "double"),
    ("string", "bytes"), ("bytes", "string"),
}  # fmt: skip


def breaking_changes(writer, reader, path: str = "") -> list[str]:
    """Why `reader` cannot read what `writer` wrote, one line per culprit field
    (dotted path into nested records); empty when Avro resolution allows it."""
    where = path or "the record"
    if isinstance(reader, list):
        problems = []
        for branch in writer if isinstance(writer, list) else [writer]:
            if all(breaking_changes(branch, choice, path) for choice in reader):
                problems.append(f"{where}: the reader's union {_describe(reader)} has no branch for {_describe(branch)}")
        return problems
    if isinstance(writer, list):
        return [problem for branch in writer for problem in breaking_changes(branch, reader, path)]

    writer_kind, reader_kind = _kind(writer), _kind(reader)
    if writer_kind != reader_kind:
        if (writer_kind, reader_kind) in PROMOTIONS:
            return []
        return [f"{where}: type changed from {_describe(writer)} to {_describe(reader)}"]
    if writer_kind in ("record", "enum", "fixed") and _short_name(writer) != _short_name(reader):
        if _short_name(writer) not in {_short_name({"name": a}) for a in reader.get("aliases", [])}:
            return [f"{where}: named type {writer['name']} became {reader['name']}"]
    if writer_kind == "record":
        return _record_changes(writer, reader, path)
    if writer_kind == "enum":
        lost = [s for s in writer["symbols"] if s not in reader["symbols"]]
        if lost and "default" not in reader:
            return [f"{where}: enum symbols {lost} removed without an enum default"]
    if writer_kind == "fixed" and writer["size"] != reader["size"]:
        return [f"{where}: fixed size changed from {writer['size']} to {reader['size']}"]
    if writer_kind == "array":
        return breaking_changes(writer["items"], reader["items"], f"{path}[]")
    if writer_kind == "map":
        return breaking_changes(writer["values"], reader["values"], f"{path}{{}}")
    return []


def _record_changes(writer: dict, reader: dict, path: str) -> list[str]:
    written = {f["name"]: f for f in writer["fields"]}
    problems = []
    for field in reader["fields"]:
        field_path = f"{path}.{field['name']}" if path else field["name"]
        source = next((written[n] for n in [field["name"], *field.get("aliases", [])] if n in written), None)
        if source is None:
            if "default" not in field:
                problems.append(f"{field_path}: added without a default, so older records have no value for it")
        else:
            problems.extend(breaking_changes(source["type"], field["type"], field_path))
    return problems


def evolution_failures(catalog: Catalog, name: str, samples: int = SAMPLES_PER_VERSION) -> list[str]:
    """The gate for one schema name: every older version against the newest, both by
    the field-by-field rules above and by really reading generated records."""
    newest = catalog.latest(name)
    failures = []
    for older in catalog.versions(name)[:-1]:
        label = f"{name}: v{older.version} records cannot be read with v{newest.version}"
        problems = breaking_changes(older.parsed, newest.parsed)
        for index, record in enumerate(generate_many(older.parsed, samples)):
            problems.extend(f"sample {index}: {p}" for p in _read_problems(older, newest, record))
        failures.extend(f"{label}: {p}" for p in problems)
    return failures


def _read_problems(older: SchemaVersion, newest: SchemaVersion, record: dict) -> list[str]:
    buf = io.BytesIO()
    schemaless_writer(buf, older.parsed, record)
    buf.seek(0)
    try:
        read = schemaless_reader(buf, older.parsed, newest.parsed)
    except Exception as exc:  # fastavro's resolution errors come in several types
        return [f"reading failed: {type(exc).__name__}: {exc}"]
    problems = [] if buf.tell() == len(buf.getvalue()) else ["reader left bytes unread"]
    for field in newest.parsed["fields"]:
        name = field["name"]
        if name in record:
            expected = record[name]
        else:  # a field the older version lacks must come back as its default
            expected = field.get("default")
            if isinstance(expected, str) and isinstance(read.get(name), bytes):
                expected = expected.encode("latin-1")  # Avro's JSON form of a bytes default
        if not _same(read.get(name), expected):
            problems.append(f"{name}: read {read.get(name)!r} where {expected!r} was written")
    return problems


def _same(read, written) -> bool:
    """Whether `read` carries what was `written`, allowing what resolution adds:
    defaulted fields inside nested records, promotions, datetimes for millis."""
    if isinstance(written, dict):
        return isinstance(read, dict) and all(k in read and _same(read[k], v) for k, v in written.items())
    if isinstance(written, list):
        return isinstance(read, list) and len(read) == len(written) and all(map(_same, read, written))
    if isinstance(read, dt.datetime):
        return (read - EPOCH) // dt.timedelta(milliseconds=1) == written
    if isinstance(read, bytes) and isinstance(written, str):
        return read == written.encode("utf-8")
    if isinstance(read, str) and isinstance(written, bytes):
        return read.encode("utf-8") == written
    return read == written


def _kind(schema) -> str:
    if isinstance(schema, dict):
        return schema["type"] if isinstance(schema["type"], str) else _kind(schema["type"])
    return schema


def _short_name(schema: dict) -> str:
    return schema["name"].rsplit(".", 1)[-1]


def _describe(schema) -> str:
    if isinstance(schema, list):
        return "[" + ", ".join(_describe(s) for s in schema) + "]"
    if isinstance(schema, dict):
        logical = schema.get("logicalType")
        name = schema.get("name") if _kind(schema) in ("record", "enum", "fixed") else None
        return " ".join(x for x in (_kind(schema), name, f"({logical})" if logical else None) if x)
    return str(schema)


EVOLVED = [name for name in CATALOG.names() if len(CATALOG.versions(name)) > 1]


def test_the_catalog_has_an_evolved_schema_so_the_gate_is_not_vacuous():
    assert "poseidon.wallet.FundsCredited" in EVOLVED


@pytest.mark.parametrize("name", EVOLVED)
def test_the_newest_version_of_every_schema_reads_records_written_with_every_older_version(name):
    failures = evolution_failures(CATALOG, name)

    assert not failures, "schema evolution broke:\n" + "\n".join(failures)


def _write_versions(root: Path, versions: dict[int, list[dict]], name: str = "Thing") -> Catalog:
    for version, fields in versions.items():
        schema = {"type": "record", "name": name, "namespace": "poseidon.test", "fields": fields}
        (root / f"{name}.v{version}.avsc").write_text(json.dumps(schema))
    return Catalog.load(root)


def test_the_gate_names_a_field_added_without_a_default(tmp_path):
    catalog = _write_versions(
        tmp_path,
        {
            1: [{"name": "id", "type": "string"}],
            2: [{"name": "id", "type": "string"}, {"name": "colour", "type": "string"}],
        },
    )

    failures = evolution_failures(catalog, "poseidon.test.Thing")

    assert failures
    assert all(f.startswith("poseidon.test.Thing: v1 records cannot be read with v2") for f in failures)
    assert any("colour: added without a default" in f for f in failures), failures


def test_the_gate_names_a_field_whose_type_changed_beyond_promotion(tmp_path):
    catalog = _write_versions(
        tmp_path,
        {
            1: [{"name": "id", "type": "string"}, {"name": "amount", "type": "long"}],
            2: [{"name": "id", "type": "string"}, {"name": "amount", "type": "int"}],
        },
    )

    failures = evolution_failures(catalog, "poseidon.test.Thing")

    assert any("amount: type changed from long to int" in f for f in failures), failures


def test_the_gate_names_a_removed_enum_symbol_even_when_no_sample_used_it(tmp_path):
    catalog = _write_versions(
        tmp_path,
        {
            1: [{"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["OPEN", "CLOSED"]}}],
            2: [{"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["OPEN"]}}],
        },
    )

    failures = evolution_failures(catalog, "poseidon.test.Thing", samples=0)

    assert failures == [
        "poseidon.test.Thing: v1 records cannot be read with v2: state: enum symbols ['CLOSED'] removed without an enum default"
    ]


def test_the_gate_follows_fields_into_nested_records(tmp_path):
    inner_v1 = {"type": "record", "name": "Inner", "fields": [{"name": "a", "type": "string"}]}
    inner_v2 = {**inner_v1, "fields": [{"name": "a", "type": "string"}, {"name": "b", "type": "long"}]}
    catalog = _write_versions(tmp_path, {1: [{"name": "inner", "type": inner_v1}], 2: [{"name": "inner", "type": inner_v2}]})

    failures = evolution_failures(catalog, "poseidon.test.Thing")

    assert any("inner.b: added without a default" in f for f in failures), failures


def test_the_gate_passes_defaulted_additions_promotions_and_removed_fields(tmp_path):
    inner_v1 = {"type": "record", "name": "Inner", "fields": [{"name": "a", "type": "string"}]}
    inner_v2 = {**inner_v1, "fields": [{"name": "a", "type": "string"}, {"name": "b", "type": "long", "default": 0}]}
    catalog = _write_versions(
        tmp_path,
        {
            1: [
                {"name": "id", "type": "string"},
                {"name": "count", "type": "int"},
                {"name": "blob", "type": "string"},
                {"name": "inner", "type": inner_v1},
                {"name": "gone", "type": "string"},
            ],
            2: [
                {"name": "id", "type": "string"},
                {"name": "count", "type": "long"},
                {"name": "blob", "type": "bytes"},
                {"name": "inner", "type": inner_v2},
                {"name": "note", "type": ["null", "string"], "default": None},
                {"name": "reference", "type": "string", "default": ""},
                {"name": "raw", "type": "bytes", "default": "\u00ff"},
            ],
        },
    )

    assert evolution_failures(catalog, "poseidon.test.Thing") == []
