"""The one Avro codec of the system: the catalog of `.avsc` files under schemas/
and the two wire formats (Avro single-object encoding, or Confluent's when a
schema registry is configured). Knows nothing of Kafka, hubs or I/O beyond the
optional registry client it is handed."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from fastavro import schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

SCHEMAS_DIR = Path(__file__).resolve().parent
SINGLE_OBJECT_MARKER = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
_FILE_NAME = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.v(?P<version>[0-9]+)\.avsc$")


class SchemaCatalogError(Exception):
    """The schemas/ folder is inconsistent (bad file name, unresolvable type, clash)."""


class EncodeError(ValueError):
    """A record does not fit its schema; the message names the schema and the problem."""


class DecodeError(ValueError):
    """Bytes that cannot be turned into a record. `reason` is fit for a dead letter."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RegistryUnavailable(RuntimeError):
    """The schema registry could not be asked; retry later, the bytes are not at fault."""


@dataclass(frozen=True)
class SchemaVersion:
    """One `.avsc` file: a version of one named record."""

    name: str
    """Full Avro name, e.g. `poseidon.wallet.FundsCredited`."""
    version: int
    """The `N` of `Name.vN.avsc`; the highest one is what writers use and readers resolve to."""
    path: Path
    parsed: Any = field(repr=False, compare=False)
    """fastavro's parsed schema, every named type expanded inline (self-contained)."""
    # compare=False keeps the frozen dataclass hashable (a dict field is not);
    # path, version and fingerprint already identify the file.
    canonical: str = field(repr=False)
    """Avro Parsing Canonical Form: what fingerprints and registries see."""
    fingerprint: bytes
    """CRC-64-AVRO of the canonical form, little-endian, as in single-object encoding."""


class Decoded(NamedTuple):
    """A decoded value: the record as the newest reader schema sees it. A named
    tuple, not a frozen dataclass: a rebuild decodes every event of the log, and
    this builds in a third of the time."""

    name: str
    record: dict
    writer: SchemaVersion


class Catalog:
    """Every schema version under a folder, by name and by fingerprint.

    Files are `<Name>.v<N>.avsc`. Files under `common/` define the shared named
    types (the envelope, command metadata) that other schemas reference by full
    name; a reference always means the newest version of that type.
    """

    def __init__(self, versions: Iterable[SchemaVersion]):
        self._by_name: dict[str, list[SchemaVersion]] = {}
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        for sv in versions:
            self._by_name.setdefault(sv.name, []).append(sv)
            clash = self._by_fingerprint.get(sv.fingerprint)
            if clash is not None:
                raise SchemaCatalogError(f"{sv.path} has the same canonical form as {clash.path}")
            self._by_fingerprint[sv.fingerprint] = sv
        for name, svs in self._by_name.items():
            svs.sort(key=lambda s: s.version)
            numbers = [s.version for s in svs]
            if len(set(numbers)) != len(numbers):
                raise SchemaCatalogError(f"{name} has two files with the same version: {numbers}")

    @classmethod
    def load(cls, root: Path = SCHEMAS_DIR) -> Catalog:
        files = sorted(root.rglob("*.avsc"))
        raw: list[tuple[Path, int, dict]] = []
        for path in files:
            match = _FILE_NAME.match(path.name)
            if not match:
                raise SchemaCatalogError(f"{path}: schema files must be named <Name>.v<N>.avsc")
            try:
                schema = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise SchemaCatalogError(f"{path}: not JSON: {exc}") from exc
            if schema.get("name") != match["name"]:
                raise SchemaCatalogError(f"{path}: record name {schema.get('name')!r} does not match the file name")
            raw.append((path, int(match["version"]), schema))

        shared = [r for r in raw if r[0].parent.name == "common"]
        newest_shared: dict[str, tuple[Path, int, dict]] = {}
        for item in shared:
            full = _full_name(item[2])
            if full not in newest_shared or newest_shared[full][1] < item[1]:
                newest_shared[full] = item
        named: dict[str, Any] = {}
        pending = list(newest_shared.values())
        while pending:  # shared types may refer to each other; resolve in dependency order
            progressed = False
            for item in list(pending):
                try:
                    parse_schema(item[2], named_schemas=named)
                except Exception:  # refers to a type not parsed yet: retry in the next round
                    continue
                pending.remove(item)
                progressed = True
            if not progressed:
                raise SchemaCatalogError(f"cannot resolve shared schemas: {[str(p[0]) for p in pending]}")

        versions = []
        for path, version, schema in raw:
            try:
                parsed = parse_schema(schema, named_schemas=dict(named), expand=True)
            except Exception as exc:
                raise SchemaCatalogError(f"{path}: {exc}") from exc
            canonical = to_parsing_canonical_form(parsed)
            versions.append(
                SchemaVersion(
                    name=_full_name(schema),
                    version=version,
                    path=path,
                    parsed=parsed,
                    canonical=canonical,
                    fingerprint=bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")),
                )
            )
        return cls(versions)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def versions(self, name: str) -> list[SchemaVersion]:
        try:
            return list(self._by_name[name])
        except KeyError:
            raise KeyError(f"no schema named {name!r} in the catalog") from None

    def latest(self, name: str) -> SchemaVersion:
        return self.versions(name)[-1]

    def by_fingerprint(self, fp: bytes) -> SchemaVersion | None:
        return self._by_fingerprint.get(fp)

    def by_canonical(self, canonical: str) -> SchemaVersion | None:
        """The version whose Parsing Canonical Form matches `canonical`, which may be
        any JSON text of the schema (a registry answers with its own rendering, with
        docs, defaults and namespaces, not the canonical form); ValueError if it is
        not an Avro schema at all."""
        return self._by_fingerprint.get(bytes.fromhex(fingerprint(_parsing_canonical_form(canonical), "CRC-64-AVRO")))


class SchemaRegistry(Protocol):
    """What the codec needs from a Confluent-compatible schema registry."""

    def id_for(self, schema: SchemaVersion) -> int: ...

    def canonical_for(self, schema_id: int) -> str: ...


class Codec:
    """Encodes records with the newest version of their schema and decodes any
    version the catalog (or the registry) knows, resolved to the newest reader.

    Wire format: Avro single-object encoding (`C3 01`, 8-byte fingerprint, body)
    by default; Confluent's (`00`, 4-byte big-endian schema id, body) when a
    registry is given. Decoding accepts both, so a switch needs no migration.
    """

    def __init__(self, catalog: Catalog, registry: SchemaRegistry | None = None):
        self.catalog = catalog
        self.registry = registry
        self._registry_writers: dict[int, SchemaVersion] = {}
        self._readers: dict[bytes, Any] = {}
        """Writer fingerprint → the newest reader's parsed schema, or None when the
        writer is the newest (fastavro then resolves nothing)."""

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        schema = self.catalog.latest(name)
        buf = io.BytesIO()
        if self.registry is not None:
            buf.write(CONFLUENT_MAGIC + self.registry.id_for(schema).to_bytes(4, "big"))
        else:
            buf.write(SINGLE_OBJECT_MARKER + schema.fingerprint)
        try:
            schemaless_writer(buf, schema.parsed, record, strict_allow_default=True)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EncodeError(f"{name}: {exc}") from exc
        return buf.getvalue()

    def decode(self, data: bytes | None) -> Decoded:
        if not data:
            raise DecodeError("empty value")
        if data[:2] == SINGLE_OBJECT_MARKER:
            if len(data) < 10:
                raise DecodeError(f"truncated single-object header ({len(data)} bytes)")
            writer = self.catalog.by_fingerprint(data[2:10])
            if writer is None:
                raise DecodeError(f"unknown schema fingerprint {data[2:10].hex()}")
            body = data[10:]
        elif data[:1] == CONFLUENT_MAGIC:
            if len(data) < 5:
                raise DecodeError(f"truncated Confluent header ({len(data)} bytes)")
            writer = self._registry_writer(int.from_bytes(data[1:5], "big"))
            body = data[5:]
        else:
            raise DecodeError(f"not Avro single-object or Confluent framing (first bytes {data[:4].hex()})")
        try:
            reader = self._readers[writer.fingerprint]
        except KeyError:
            newest = self.catalog.latest(writer.name)
            reader = self._readers[writer.fingerprint] = None if newest is writer else newest.parsed
        stream = io.BytesIO(body)
        try:
            record = schemaless_reader(stream, writer.parsed, reader)
        except Exception as exc:  # fastavro raises many types on corrupt bodies
            raise DecodeError(f"corrupt {writer.name} v{writer.version} body: {type(exc).__name__}: {exc}") from exc
        if stream.tell() != len(body):
            raise DecodeError(f"{len(body) - stream.tell()} trailing bytes after {writer.name} v{writer.version} body")
        return Decoded(writer.name, record, writer)

    def _registry_writer(self, schema_id: int) -> SchemaVersion:
        writer = self._registry_writers.get(schema_id)
        if writer is not None:
            return writer
        if self.registry is None:
            raise DecodeError(f"Confluent-framed value (schema id {schema_id}) but no schema registry is configured")
        try:
            canonical = self.registry.canonical_for(schema_id)
        except RegistryUnavailable:
            raise
        except LookupError as exc:  # the registry answered: it has no such id, so the bytes are at fault
            raise DecodeError(f"schema id {schema_id} is unknown to the schema registry: {exc}") from exc
        try:
            writer = self.catalog.by_canonical(canonical)
        except ValueError as exc:
            raise DecodeError(f"schema id {schema_id} is not an Avro schema: {exc}") from exc
        if writer is None:
            raise DecodeError(f"schema id {schema_id} is not a schema of this catalog")
        self._registry_writers[schema_id] = writer
        return writer


def _parsing_canonical_form(schema_json: str) -> str:
    try:
        return to_parsing_canonical_form(parse_schema(json.loads(schema_json)))
    except Exception as exc:  # json and fastavro raise several types for bad schemas
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc


def _full_name(schema: Mapping[str, Any]) -> str:
    namespace = schema.get("namespace")
    return f"{namespace}.{schema['name']}" if namespace else schema["name"]
