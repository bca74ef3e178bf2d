"""The codec's promises without a registry: every catalog schema round-trips, the
single-object header is exactly the Avro spec's, and bad bytes only ever raise
DecodeError with a reason. Registry framing is covered in tests/integration."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from fastavro import schemaless_writer
from fastavro.schema import fingerprint
from fastavro.utils import generate_many
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import SINGLE_OBJECT_MARKER, Catalog, Codec, DecodeError, EncodeError

CATALOG = Catalog.load()
ALL_VERSIONS = [sv for name in CATALOG.names() for sv in CATALOG.versions(name)]
NEWEST = [CATALOG.latest(name) for name in CATALOG.names()]
SAMPLES_PER_SCHEMA = 5
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO exactly as the Avro specification's reference code computes it
    ("Schema Fingerprints"), written out here so the test does not trust fastavro."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp & 0xFFFFFFFFFFFFFFFF)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def as_written(value):
    """A decoded value in the form it was written: timestamp-millis fields decode
    to aware datetimes but the generated samples hold epoch milliseconds."""
    if isinstance(value, dict):
        return {k: as_written(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_written(v) for v in value]
    if isinstance(value, dt.datetime):
        return (value - EPOCH) // dt.timedelta(milliseconds=1)
    return value


def single_object(sv, record) -> bytes:
    buf = io.BytesIO(SINGLE_OBJECT_MARKER + sv.fingerprint)
    buf.seek(0, io.SEEK_END)
    schemaless_writer(buf, sv.parsed, record)
    return buf.getvalue()


@pytest.fixture
def codec() -> Codec:
    return Codec(CATALOG)


@pytest.mark.parametrize("schema", NEWEST, ids=lambda sv: sv.name)
def test_every_schema_in_the_catalog_round_trips_through_encode_and_decode(codec, schema):
    for record in generate_many(schema.parsed, SAMPLES_PER_SCHEMA):
        data = codec.encode(schema.name, record)
        decoded = codec.decode(data)

        assert decoded.name == schema.name
        assert decoded.writer == schema
        assert as_written(decoded.record) == record
        assert codec.encode(schema.name, decoded.record) == data


@pytest.mark.parametrize("schema", ALL_VERSIONS, ids=lambda sv: f"{sv.name}.v{sv.version}")
def test_values_written_with_any_catalog_version_decode_to_the_newest_reader(codec, schema):
    newest = CATALOG.latest(schema.name)
    for record in generate_many(schema.parsed, SAMPLES_PER_SCHEMA):
        decoded = codec.decode(single_object(schema, record))

        assert decoded.writer == schema
        assert set(decoded.record) == {f["name"] for f in newest.parsed["fields"]}


def test_an_old_funds_credited_reads_with_the_empty_reference_that_v2_defaults_to(codec):
    v1 = CATALOG.versions("poseidon.wallet.FundsCredited")[0]
    record = next(generate_many(v1.parsed, 1))

    decoded = codec.decode(single_object(v1, record))

    assert decoded.writer.version == 1
    assert decoded.record["reference"] == ""
    assert as_written(decoded.record) == {**record, "reference": ""}


def test_crc64_avro_of_the_int_schema_is_the_value_the_avro_spec_publishes():
    # Spec: fingerprint64 of "int" is 0x7275d51a3f395c8f; single-object encoding
    # writes it little-endian, i.e. the bytes 8f 5c 39 3f 1a d5 75 72.
    assert crc64_avro(b'"int"') == 0x7275D51A3F395C8F
    assert crc64_avro(b'"int"').to_bytes(8, "little") == bytes.fromhex("8f5c393f1ad57572")
    assert bytes.fromhex(fingerprint('"int"', "CRC-64-AVRO")) == bytes.fromhex("8f5c393f1ad57572")


@pytest.mark.parametrize("schema", NEWEST, ids=lambda sv: sv.name)
def test_the_single_object_header_is_c3_01_then_the_little_endian_crc64_of_the_canonical_form(codec, schema):
    record = next(generate_many(schema.parsed, 1))

    data = codec.encode(schema.name, record)

    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == crc64_avro(schema.canonical.encode("utf-8")).to_bytes(8, "little")
    assert data[2:10] == schema.fingerprint


def test_an_empty_value_is_a_decode_error_that_says_it_is_empty(codec):
    for data in (b"", None):
        with pytest.raises(DecodeError, match="empty"):
            codec.decode(data)


@pytest.mark.parametrize(
    "data",
    [b"\x01", b"{}", b"hello world", b"\xc3\x02" + bytes(12), b"\xff" * 20],
    ids=["one-byte", "json", "text", "wrong-marker", "ff-run"],
)
def test_bytes_in_neither_framing_are_a_decode_error_that_says_so(codec, data):
    with pytest.raises(DecodeError, match="not Avro single-object or Confluent framing") as caught:
        codec.decode(data)
    assert caught.value.reason == str(caught.value)


@pytest.mark.parametrize("length", range(2, 10))
def test_a_truncated_single_object_header_is_a_decode_error_that_says_truncated(codec, length):
    schema = CATALOG.latest("poseidon.wallet.WalletOpened")
    data = codec.encode(schema.name, next(generate_many(schema.parsed, 1)))

    with pytest.raises(DecodeError, match="truncated single-object header"):
        codec.decode(data[:length])


def test_an_unknown_fingerprint_is_a_decode_error_naming_the_fingerprint(codec):
    unknown = bytes.fromhex("0123456789abcdef")
    assert CATALOG.by_fingerprint(unknown) is None

    with pytest.raises(DecodeError, match="unknown schema fingerprint 0123456789abcdef"):
        codec.decode(SINGLE_OBJECT_MARKER + unknown + b"\x00")


@pytest.mark.parametrize("schema", NEWEST, ids=lambda sv: sv.name)
def test_every_truncation_of_a_body_is_a_decode_error_naming_the_schema(codec, schema):
    data = codec.encode(schema.name, next(generate_many(schema.parsed, 1)))

    for cut in range(10, len(data)):
        with pytest.raises(DecodeError, match=f"corrupt {schema.name} v{schema.version} body"):
            codec.decode(data[:cut])


def test_trailing_bytes_after_a_body_are_a_decode_error_counting_them(codec):
    schema = CATALOG.latest("poseidon.wallet.FundsCredited")
    data = codec.encode(schema.name, next(generate_many(schema.parsed, 1)))

    with pytest.raises(DecodeError, match=f"3 trailing bytes after {schema.name} v2 body"):
        codec.decode(data + b"abc")


def test_a_confluent_framed_value_without_a_registry_is_a_decode_error_naming_the_schema_id(codec):
    with pytest.raises(DecodeError, match=r"schema id 7\b.*no schema registry is configured"):
        codec.decode(b"\x00" + (7).to_bytes(4, "big") + b"\x02a")


def test_a_truncated_confluent_header_is_a_decode_error_that_says_truncated(codec):
    with pytest.raises(DecodeError, match="truncated Confluent header"):
        codec.decode(b"\x00\x00\x01")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=64))
def test_arbitrary_bytes_either_decode_or_raise_decode_error_with_a_reason(codec, data):
    try:
        codec.decode(data)
    except DecodeError as exc:
        assert exc.reason


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schema=st.sampled_from(ALL_VERSIONS), body=st.binary(max_size=256))
def test_a_known_header_over_an_arbitrary_body_decodes_or_raises_decode_error(codec, schema, body):
    # Random bytes almost never hit a known fingerprint, so this drives the body
    # through fastavro, which raises many exception types of its own.
    try:
        decoded = codec.decode(SINGLE_OBJECT_MARKER + schema.fingerprint + body)
    except DecodeError as exc:
        assert exc.reason
    else:
        assert decoded.writer == schema


@pytest.mark.parametrize("schema", NEWEST, ids=lambda sv: sv.name)
def test_encoding_a_record_missing_a_required_field_is_an_encode_error_naming_schema_and_field(codec, schema):
    required = [f["name"] for f in schema.parsed["fields"] if "default" not in f]
    record = next(generate_many(schema.parsed, 1))
    del record[required[0]]

    with pytest.raises(EncodeError) as caught:
        codec.encode(schema.name, record)

    assert schema.name in str(caught.value)
    assert required[0] in str(caught.value)


def test_encoding_a_field_of_the_wrong_type_is_an_encode_error_naming_the_schema(codec):
    schema = CATALOG.latest("poseidon.wallet.WalletOpened")
    record = {**next(generate_many(schema.parsed, 1)), "currency": 978}

    with pytest.raises(EncodeError, match=f"{schema.name}: .*currency"):
        codec.encode(schema.name, record)


def test_a_field_left_out_that_has_a_default_is_written_with_the_default(codec):
    schema = CATALOG.latest("poseidon.wallet.FundsCredited")
    record = next(generate_many(schema.parsed, 1))
    del record["reference"]

    assert codec.decode(codec.encode(schema.name, record)).record["reference"] == ""
