"""The codec with Confluent framing against a schema registry speaking Confluent's REST
protocol (the stand-in in tests/standins): ids on the wire, lookups on decode, and
which failures are the registry's fault rather than the bytes'."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from fastavro import schemaless_writer
from fastavro.utils import generate_many

from schemas.codec import (
    SINGLE_OBJECT_MARKER,
    Catalog,
    Codec,
    DecodeError,
    RegistryUnavailable,
    SchemaVersion,
)
from schemas.registry import ConfluentSchemaRegistry, RegistryError
from tests.standins.schema_registry import running_registry

CATALOG = Catalog.load()
FUNDS_CREDITED = "poseidon.wallet.FundsCredited"


@pytest.fixture
def registry():
    with running_registry() as running:
        yield running


@pytest.fixture
def client(registry):
    with ConfluentSchemaRegistry(registry.url) as client:
        yield client


def sample(name: str) -> dict:
    return next(generate_many(CATALOG.latest(name).parsed, 1))


def test_encoding_with_a_registry_frames_the_value_as_zero_then_the_big_endian_schema_id(registry, client):
    data = Codec(CATALOG, client).encode(FUNDS_CREDITED, sample(FUNDS_CREDITED))

    [schema_id] = registry.state.subjects[FUNDS_CREDITED]
    assert data[:1] == b"\x00"
    assert data[1:5] == schema_id.to_bytes(4, "big")
    assert ("POST", f"/subjects/{FUNDS_CREDITED}/versions") in registry.state.requests


def test_schemas_are_registered_under_their_record_name_with_defaults_and_logical_types(registry, client):
    client.register_all(CATALOG)

    subjects = httpx.get(f"{registry.url}/subjects").json()
    stored = httpx.get(f"{registry.url}/schemas/ids/{registry.state.subjects[FUNDS_CREDITED][0]}").json()["schema"]
    assert subjects == CATALOG.names()
    assert '"default":""' in stored
    assert '"logicalType":"timestamp-millis"' in stored


def test_a_second_codec_with_fresh_caches_resolves_the_schema_id_through_the_registry(registry, client):
    record = sample(FUNDS_CREDITED)
    data = Codec(CATALOG, client).encode(FUNDS_CREDITED, record)
    schema_id = int.from_bytes(data[1:5], "big")

    with ConfluentSchemaRegistry(registry.url) as fresh_client:
        decoded = Codec(Catalog.load(), fresh_client).decode(data)

    assert decoded.name == FUNDS_CREDITED
    assert decoded.writer.version == 2
    assert decoded.record["entry_id"] == record["entry_id"]
    assert decoded.record["amount"] == record["amount"]
    assert ("GET", f"/schemas/ids/{schema_id}") in registry.state.requests


def test_registering_the_same_schema_twice_gives_the_same_id_and_one_version(registry, client):
    schema = CATALOG.latest(FUNDS_CREDITED)
    first = client.id_for(schema)

    with ConfluentSchemaRegistry(registry.url) as other_client:
        second = other_client.id_for(schema)

    assert first == second
    assert httpx.get(f"{registry.url}/subjects/{FUNDS_CREDITED}/versions").json() == [1]


def test_after_register_all_encoding_and_decoding_make_no_http_request(registry, client):
    ids = client.register_all(CATALOG)
    codec = Codec(CATALOG, client)
    requests_before = len(registry.state.requests)

    for name in CATALOG.names():
        data = codec.encode(name, sample(name))
        assert data[1:5] == ids[name].to_bytes(4, "big")
        assert codec.decode(data).name == name

    assert len(registry.state.requests) == requests_before


def test_an_older_version_registered_by_an_earlier_deployment_decodes_to_the_newest_reader(registry, client):
    v1 = CATALOG.versions(FUNDS_CREDITED)[0]
    v1_id = client.id_for(v1)
    record = next(generate_many(v1.parsed, 1))
    buf = io.BytesIO()
    schemaless_writer(buf, v1.parsed, record)

    with ConfluentSchemaRegistry(registry.url) as fresh_client:
        decoded = Codec(CATALOG, fresh_client).decode(b"\x00" + v1_id.to_bytes(4, "big") + buf.getvalue())

    assert decoded.writer == v1
    assert decoded.record["reference"] == ""


def test_a_schema_the_registry_renders_its_own_way_still_resolves_to_the_catalog_version(registry):
    # A real registry answers with Avro's Java rendering (namespace apart, docs and
    # defaults kept), not the canonical form; the catalog must normalise it. The
    # .avsc files are written that way, so one with the envelope inlined will do.
    schema = CATALOG.latest("poseidon.wallet.WalletOpened")
    rendering = json.loads(schema.path.read_text())
    envelope = json.loads(CATALOG.latest("poseidon.Envelope").path.read_text())
    rendering["fields"] = [{**f, "type": envelope} if f["type"] == "poseidon.Envelope" else f for f in rendering["fields"]]
    answer = httpx.post(
        f"{registry.url}/subjects/{schema.name}/versions",
        json={"schema": json.dumps(rendering, indent=2)},
        headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
    )
    schema_id = answer.json()["id"]
    single = Codec(CATALOG).encode(schema.name, sample(schema.name))
    framed = b"\x00" + schema_id.to_bytes(4, "big") + single[10:]

    with ConfluentSchemaRegistry(registry.url) as client:
        decoded = Codec(CATALOG, client).decode(framed)

    assert decoded.writer == schema


def test_a_single_object_encoded_value_still_decodes_when_a_registry_is_configured(registry, client):
    record = sample(FUNDS_CREDITED)
    data = Codec(CATALOG).encode(FUNDS_CREDITED, record)
    assert data[:2] == SINGLE_OBJECT_MARKER

    decoded = Codec(CATALOG, client).decode(data)

    assert decoded.record["entry_id"] == record["entry_id"]
    assert registry.state.requests == []


def test_a_schema_id_the_registry_does_not_know_is_a_decode_error_naming_the_id(client):
    with pytest.raises(DecodeError, match=r"schema id 999 is unknown to the schema registry.*40403"):
        Codec(CATALOG, client).decode(b"\x00" + (999).to_bytes(4, "big") + b"\x02a")


def test_a_registry_that_is_down_makes_decoding_raise_registry_unavailable_not_decode_error():
    with running_registry() as registry:
        with ConfluentSchemaRegistry(registry.url) as client:
            data = Codec(CATALOG, client).encode(FUNDS_CREDITED, sample(FUNDS_CREDITED))
    # The stand-in is gone; its port refuses connections.

    with ConfluentSchemaRegistry(registry.url, timeout=2.0) as fresh_client:
        codec = Codec(CATALOG, fresh_client)
        with pytest.raises(RegistryUnavailable, match="unreachable"):
            codec.decode(data)
        with pytest.raises(RegistryUnavailable):
            codec.encode(FUNDS_CREDITED, sample(FUNDS_CREDITED))


def test_a_registry_answering_5xx_makes_encode_and_decode_raise_registry_unavailable(registry, client):
    data = Codec(CATALOG, client).encode(FUNDS_CREDITED, sample(FUNDS_CREDITED))
    registry.state.failing = True

    with ConfluentSchemaRegistry(registry.url) as fresh_client:
        codec = Codec(CATALOG, fresh_client)
        with pytest.raises(RegistryUnavailable, match="HTTP 500"):
            codec.decode(data)
        with pytest.raises(RegistryUnavailable, match="HTTP 500"):
            codec.encode(FUNDS_CREDITED, sample(FUNDS_CREDITED))


def test_a_refused_registration_names_the_subject_and_the_registry_error_code_and_message(client):
    broken = SchemaVersion(
        name="poseidon.test.Broken",
        version=3,
        path=Path("Broken.v3.avsc"),
        parsed={"type": "record", "name": "poseidon.test.Broken", "fields": [{"name": "a", "type": "no-such-type"}]},
        canonical="",
        fingerprint=bytes(8),
    )

    with pytest.raises(RegistryError) as caught:
        client.id_for(broken)

    assert "registration of poseidon.test.Broken v3" in str(caught.value)
    assert caught.value.status == 422
    assert caught.value.error_code == 42201
    assert "Invalid schema" in caught.value.message
