"""Damaged Avro values against the one codec: bit flips, truncations, splices
of two records, a body under another schema's fingerprint, and Confluent
framing with schema ids a registry does not know or answers with garbage. Every
one decodes to a record of its writer's schema or is a DecodeError with a
reason; no other exception escapes (a consumer dead-letters DecodeErrors and
would stop on anything else). tests/unit/test_codec.py covers empty values,
plain truncations and random bodies; this adds damage to real records."""

from __future__ import annotations

import pytest
from fastavro.utils import generate_many
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.codec import CONFLUENT_MAGIC, SINGLE_OBJECT_MARKER, Catalog, Codec, DecodeError

AREA = "Avro decoding"
CATALOG = Catalog.load()
CODEC = Codec(CATALOG)
SCHEMAS = [CATALOG.latest(name) for name in CATALOG.names()]
# One real encoded record per schema; a few per schema so lists and unions vary.
VALUES = [CODEC.encode(sv.name, record) for sv in SCHEMAS for record in generate_many(sv.parsed, 3)]
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def decoded_or_refused(codec: Codec, data: bytes) -> None:
    try:
        decoded = codec.decode(data)
    except DecodeError as exc:
        assert exc.reason and exc.reason == str(exc)
    else:
        assert decoded.name == decoded.writer.name and isinstance(decoded.record, dict)


@FUZZ
@given(value=st.sampled_from(VALUES), data=st.data())
def test_a_record_with_flipped_bits_decodes_or_is_a_decode_error(attacks, value, data):
    attacks.tried(AREA, "1-8 bit flips in a real record (header and body)", "record or DecodeError(reason)")
    damaged = bytearray(value)
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(damaged) - 1))
        damaged[i] ^= 1 << data.draw(st.integers(0, 7))
    decoded_or_refused(CODEC, bytes(damaged))


@FUZZ
@given(value=st.sampled_from(VALUES), data=st.data())
def test_a_truncated_or_extended_record_decodes_or_is_a_decode_error(attacks, value, data):
    attacks.tried(AREA, "record cut anywhere, or with bytes inserted/appended", "record or DecodeError(reason)")
    cut = data.draw(st.integers(0, len(value)))
    extra = data.draw(st.binary(max_size=16))
    at = data.draw(st.integers(0, cut))
    decoded_or_refused(CODEC, value[:cut])
    decoded_or_refused(CODEC, value[:at] + extra + value[at:cut])


@FUZZ
@given(first=st.sampled_from(VALUES), second=st.sampled_from(VALUES), data=st.data())
def test_two_records_spliced_or_a_body_under_another_fingerprint_is_a_decode_error_or_decodes(attacks, first, second, data):
    attacks.tried(AREA, "splice of two records; body under another schema's header", "record or DecodeError(reason)")
    decoded_or_refused(CODEC, first[: data.draw(st.integers(0, len(first)))] + second[data.draw(st.integers(0, len(second))) :])
    decoded_or_refused(CODEC, first[:10] + second[10:])


class Registry:
    """A registry as the codec sees it (the SchemaRegistry protocol): ids 1..n are
    the catalog's schemas, 900 answers a text that is not a schema, 901 an Avro
    schema that is not ours, anything else is unknown."""

    def __init__(self) -> None:
        self.by_id = {i: sv.canonical for i, sv in enumerate(SCHEMAS, start=1)}
        self.by_id[900] = "{not json"
        self.by_id[901] = '{"type":"record","name":"Stranger","fields":[{"name":"x","type":"int"}]}'

    def id_for(self, schema) -> int:
        return next(i for i, canonical in self.by_id.items() if canonical == schema.canonical)

    def canonical_for(self, schema_id: int) -> str:
        try:
            return self.by_id[schema_id]
        except KeyError:
            raise LookupError(f"schema {schema_id} not found") from None


@FUZZ
@given(
    schema_id=st.sampled_from([0, 1, 2, len(SCHEMAS), 900, 901, 2**31 - 1, 2**32 - 1]) | st.integers(0, 2**32 - 1),
    body=st.binary(max_size=64),
)
def test_confluent_framed_values_with_any_schema_id_decode_or_are_a_decode_error(attacks, schema_id, body):
    attacks.tried(
        AREA, "Confluent framing: unknown, garbage and foreign schema ids, random bodies", "record or DecodeError(reason)"
    )
    decoded_or_refused(Codec(CATALOG, Registry()), CONFLUENT_MAGIC + schema_id.to_bytes(4, "big") + body)


@pytest.mark.parametrize(
    "schema_id, reason", [(900, "is not an Avro schema"), (901, "not a schema of this catalog"), (7777, "unknown")]
)
def test_a_registry_answer_that_is_no_schema_of_ours_is_named_in_the_reason(attacks, schema_id, reason):
    attacks.tried(AREA, "registry answers garbage / a foreign schema / no such id", "DecodeError naming the schema id")
    with pytest.raises(DecodeError, match=f"schema id {schema_id}.*{reason}"):
        Codec(CATALOG, Registry()).decode(CONFLUENT_MAGIC + schema_id.to_bytes(4, "big") + b"\x02")


def test_every_schema_of_the_catalog_is_among_the_damaged_values(attacks):
    attacks.tried(AREA, "coverage: every schema in the catalog is damaged above", "all schemas sampled", len(SCHEMAS))
    assert {v[:10] for v in VALUES} == {SINGLE_OBJECT_MARKER + sv.fingerprint for sv in SCHEMAS}
