"""The request parsing every gRPC service shares (infra/arguments.py,
infra/paging.py): what each refusal says, and page tokens that keep the
format earlier releases handed out."""

import base64
import uuid
from datetime import UTC, datetime

import pytest

from infra.arguments import canonical_uuid, is_canonical_uuid, required, tenant, uuid_of
from infra.grpc_server import InvalidArgument
from infra.paging import BAD_TOKEN, decode_token, encode_token, page_size, paginate, parse_token

ID = uuid.UUID("2f1c1b8e-8a53-4f4e-9a57-0c1d2e3f4a5b")


def token(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def refusal(call) -> str:
    with pytest.raises(InvalidArgument) as error:
        call()
    return str(error.value)


def test_a_tenant_id_is_required():
    assert tenant("acme") == "acme"
    assert refusal(lambda: tenant("")) == "tenant_id is required"
    assert refusal(lambda: required("", "owner_id")) == "owner_id is required"


def test_a_uuid_field_names_itself_and_repeats_the_value_cut_as_asked():
    assert uuid_of(str(ID).upper(), "app_id") == ID
    assert refusal(lambda: uuid_of("nope", "app_id")) == "app_id must be a UUID, not 'nope'"
    assert refusal(lambda: uuid_of("x" * 100, "conversation_id", shown=80)) == f"conversation_id must be a UUID, not {'x' * 80!r}"


def test_a_canonical_uuid_is_lower_case_and_hyphenated():
    assert canonical_uuid(str(ID), "session_id") == str(ID)
    assert not is_canonical_uuid(str(ID).upper()) and not is_canonical_uuid(ID.hex) and not is_canonical_uuid(None)
    assert refusal(lambda: canonical_uuid(ID.hex, "session_id")) == f"session_id must be a lower-case UUID, not {ID.hex!r}"


@pytest.mark.parametrize(("requested", "default", "size"), [(0, 50, 50), (0, 100, 100), (1, 50, 1), (500, 50, 500)])
def test_page_size_defaults_when_unset(requested, default, size):
    assert page_size(requested, default) == size


@pytest.mark.parametrize("requested", [501, -1])
def test_page_size_out_of_bounds_is_refused(requested):
    assert refusal(lambda: page_size(requested)) == f"page_size must be between 1 and 500, not {requested}"


def test_tokens_keep_their_format_and_prefix():
    assert encode_token(ID) == token(f"v1:{ID}")
    assert encode_token(7, "m1") == token("m1:7")
    assert decode_token(token("c1:1:2"), version="c1") == "1:2"
    assert decode_token("", "first") == "first"


@pytest.mark.parametrize("bad", ["garbage", "x", token("v2:1"), token("a1:1"), "%%%", token("no colon")])
def test_a_token_the_service_never_issued_is_refused(bad):
    assert refusal(lambda: decode_token(bad)) == BAD_TOKEN
    assert refusal(lambda: parse_token(bad, int, 0)) == BAD_TOKEN


def test_parse_token_refuses_a_key_its_parser_refuses():
    assert parse_token("", uuid.UUID, None) is None
    assert parse_token(token(f"a1:{ID}"), uuid.UUID, None, "a1") == ID
    assert refusal(lambda: parse_token(token("a1:not-a-uuid"), uuid.UUID, None, "a1")) == BAD_TOKEN
    assert (
        refusal(lambda: parse_token(token("v1:99999999999999999999"), lambda k: datetime.fromtimestamp(int(k), UTC), None))
        == BAD_TOKEN
    )


def test_paginate_hands_a_token_only_when_there_is_more():
    rows = [{"id": 1}, {"id": 2}, {"id": 3}]
    assert paginate(rows, 3, "id") == (rows, "")
    assert paginate(rows, 2, "id") == (rows[:2], encode_token(2))
    assert paginate(rows, 2, lambda row: f"n{row['id']}", "m1") == (rows[:2], token("m1:n2"))


def test_message_conversation_tokens_round_trip_in_the_c1_format():
    from projections.message.service import CONVERSATION_TOKEN, _conversation_cursor, _conversation_key

    row = {"last_activity_at": datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC), "conversation_id": ID}
    _, next_token = paginate([row, row], 1, _conversation_key, CONVERSATION_TOKEN)
    assert next_token == token(f"c1:1714564800123456:{ID}")
    assert parse_token(next_token, _conversation_cursor, None, CONVERSATION_TOKEN) == (row["last_activity_at"], ID)
    for forged in (token(f"c1:{ID}"), token(f"c1:1:2:{ID}"), token(f"c1:{10**30}:{ID}")):
        assert refusal(lambda forged=forged: parse_token(forged, _conversation_cursor, None, CONVERSATION_TOKEN)) == BAD_TOKEN
