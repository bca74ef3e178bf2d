"""The client of a Confluent Schema Registry that the codec uses for Confluent framing:
registers our schemas and looks ids up, caching both. Owns no schemas and never
decides compatibility; the registry and tests/unit/test_schema_evolution.py do."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import httpx

from schemas.codec import Catalog, RegistryUnavailable, SchemaVersion

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# The order Confluent's own clients send: versioned first, plain JSON as the fallback.
ACCEPT = "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json, application/json"


class RegistryError(Exception):
    """The registry refused a request (4xx): the request, not the network, is at fault."""

    def __init__(self, what: str, status: int, error_code: int | None, message: str):
        super().__init__(f"schema registry refused {what}: HTTP {status}, error_code {error_code}: {message}")
        self.status = status
        """HTTP status of the answer."""
        self.error_code = error_code
        """Confluent's `error_code` (e.g. 409 incompatible, 42201 invalid schema, 40403 schema not found)."""
        self.message = message
        """Confluent's `message`, as the registry wrote it."""


class SchemaNotFound(RegistryError, LookupError):
    """The registry has no schema with that id; the codec turns this into a DecodeError."""


def subject_for(schema: SchemaVersion) -> str:
    """RecordNameStrategy: the subject is the record's full name, not `<topic>-value`.

    One topic (`wallet.events`) carries many event types, so TopicNameStrategy
    would put FundsCredited and WalletOpened under one subject, where each
    registration would have to be compatible with the other record types.
    Per-record subjects let each event type evolve on its own.
    """
    return schema.name


def registration_text(schema: SchemaVersion) -> str:
    """The schema as registered: self-contained (shared types inline), with the docs,
    defaults and logical types that the Parsing Canonical Form strips.

    The registry checks compatibility with what it was given, and a field added
    with a default is only backward compatible if the default is there to see;
    other consumers of the registry (Connect, ksqlDB) need the logical types.
    Both forms have the same canonical form, so the codec still finds the
    catalog version by fingerprint.
    """
    return json.dumps(_without_fastavro_keys(schema.parsed), separators=(",", ":"))


class ConfluentSchemaRegistry:
    """`SchemaRegistry` over Confluent's REST API with a blocking httpx client.

    Ids are cached for the life of the object (a registry never reuses or changes
    an id), so once `register_all` has run at start-up, encoding does no HTTP.
    Network failures and 5xx raise `RegistryUnavailable` (retry later); 4xx raise
    `RegistryError` naming the subject or id and the registry's own code and message.
    """

    def __init__(self, url: str, timeout: float = 5.0):
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=timeout, headers={"Accept": ACCEPT})
        self._ids: dict[bytes, int] = {}
        self._schemas: dict[int, str] = {}

    def id_for(self, schema: SchemaVersion) -> int:
        """The registry id of `schema`, registering it under its subject if needed.

        Registering is idempotent on the registry's side: the same schema under the
        same subject answers with the id it already has, so no lookup comes first.
        """
        schema_id = self._ids.get(schema.fingerprint)
        if schema_id is not None:
            return schema_id
        subject = subject_for(schema)
        answer = self._call(
            "POST",
            f"/subjects/{quote(subject, safe='')}/versions",
            f"registration of {subject} v{schema.version}",
            content=json.dumps({"schema": registration_text(schema)}),
            headers={"Content-Type": CONTENT_TYPE},
        )
        schema_id = _field(answer, "id", int, f"registration of {subject}")
        self._ids[schema.fingerprint] = schema_id
        self._schemas.setdefault(schema_id, registration_text(schema))
        return schema_id

    def canonical_for(self, schema_id: int) -> str:
        """The schema text the registry holds for `schema_id` (its rendering, not
        necessarily the Parsing Canonical Form; the catalog normalises it)."""
        text = self._schemas.get(schema_id)
        if text is not None:
            return text
        what = f"lookup of schema id {schema_id}"
        answer = self._call("GET", f"/schemas/ids/{schema_id}", what)
        text = _field(answer, "schema", str, what)
        self._schemas[schema_id] = text
        return text

    def register_all(self, catalog: Catalog) -> dict[str, int]:
        """Registers the newest version of every schema in `catalog`; returns name → id.

        Processes call this at start so that a registry outage or an incompatible
        schema stops the deployment instead of the first message that needs it.
        """
        return {name: self.id_for(catalog.latest(name)) for name in catalog.names()}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ConfluentSchemaRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise RegistryUnavailable(f"schema registry at {self.url} unreachable during {what}: {exc!r}") from exc
        # 408 and 429 are the registry asking to be asked again, like a 5xx.
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise RegistryUnavailable(
                f"schema registry at {self.url} failed {what}: HTTP {response.status_code}: {response.text[:200]}"
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            error_code = body.get("error_code") if isinstance(body, dict) else None
            message = body.get("message") if isinstance(body, dict) else response.text[:200]
            error = SchemaNotFound if error_code == 40403 else RegistryError
            raise error(what, response.status_code, error_code, str(message))
        if body is None:
            raise RegistryError(what, response.status_code, None, f"answer is not JSON: {response.text[:200]!r}")
        return body


def _field(answer: Any, key: str, kind: type, what: str) -> Any:
    value = answer.get(key) if isinstance(answer, dict) else None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RegistryError(what, 200, None, f"answer has no {kind.__name__} {key!r}: {answer!r}")
    return value


def _without_fastavro_keys(node: Any) -> Any:
    # fastavro marks parsed schemas with "__fastavro_parsed" and "__named_schemas";
    # they are not Avro and would change what the registry stores.
    if isinstance(node, dict):
        return {k: _without_fastavro_keys(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [_without_fastavro_keys(v) for v in node]
    return node
