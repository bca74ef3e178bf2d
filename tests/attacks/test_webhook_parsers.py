"""Hostile webhook bodies and signatures against the pure parts of the ingress:
the Messenger parser and record mapping, the Botpress push parser, the
X-Hub-Signature-256 check, the x-bp-secret check and the subscription
handshake. Each either maps the input or refuses it with a reason; nothing
raises anything else. No broker: the HTTP path is fuzzed in test_http_fuzz."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from base.settings import Settings
from poseidon import bootstrap
from schemas.codec import EncodeError
from spokes.botpress.translate import MalformedAnswer, parse_push, push_is_authentic
from spokes.botpress.webhook import inbound_record as botpress_record
from spokes.facebook.translate import InvalidWebhook
from spokes.facebook.webhook import EVENT_TYPE, records_of, verify_signature, verify_subscription
from tests.attacks.strategies import botpress_pushes, broken, json_values, messenger_bodies

AREA = "webhook parsers"
NOW = datetime(2026, 11, 22, tzinfo=UTC)
CODEC = bootstrap.codec(Settings())
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def stored_or_refused(records: list[dict]) -> None:
    """What ingress does next with mapped records: encode them (an EncodeError is
    dead-lettered there with its reason, so it is a refusal, not a crash)."""
    for record in records:
        try:
            CODEC.encode(EVENT_TYPE, record)
        except EncodeError as exc:
            assert str(exc)


@FUZZ
@given(body=messenger_bodies().flatmap(broken) | json_values())
def test_a_broken_messenger_body_is_mapped_or_refused_with_a_reason(attacks, body):
    attacks.tried(
        AREA, "Messenger body with one node replaced, deleted or retyped; arbitrary JSON", "mapped or InvalidWebhook(reason)"
    )
    try:
        records, _ = records_of(body, request_id="req-1", now=NOW)
    except InvalidWebhook as exc:
        assert exc.reason and str(exc)
        return
    stored_or_refused(records)


@FUZZ
@given(body=botpress_pushes().flatmap(broken) | json_values())
def test_a_broken_botpress_push_is_mapped_ignored_or_refused_with_a_reason(attacks, body):
    attacks.tried(AREA, "Botpress push with one node broken; arbitrary JSON", "mapped, ignored, or MalformedAnswer(reason)")
    try:
        message = parse_push(body)
    except MalformedAnswer as exc:
        assert str(exc)
        return
    if message is not None:
        stored_or_refused([botpress_record(message, body["data"], tenant_id="acme", request_id="req-1", now=NOW)])


@pytest.mark.parametrize("payload", [{"type": "choice", "text": "pick", "options": True}, {"type": "carousel", "items": 5}])
def test_a_push_whose_list_field_is_a_scalar_is_refused_not_crashed(attacks, payload):
    attacks.tried(AREA, "Botpress push whose options/items is a number or boolean", "mapped or MalformedAnswer(reason)")
    body = {
        "type": "message_created",
        "data": {
            "id": "m",
            "createdAt": "2026-11-22T01:49:25.000Z",
            "conversationId": "c",
            "userId": "u",
            "payload": payload,
            "isBot": True,
        },
    }
    try:
        botpress_record(parse_push(body), body["data"], tenant_id="acme", request_id="req-1", now=NOW)
    except MalformedAnswer as exc:
        assert str(exc)


@FUZZ
@given(secret=st.text(min_size=1, max_size=40), body=st.binary(max_size=300), data=st.data())
def test_a_signature_verifies_only_its_own_body_and_secret(attacks, secret, body, data):
    attacks.tried(AREA, "X-Hub-Signature-256: one bit of body or signature flipped, other secret", "refused")
    header = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert verify_signature(header, secret, body)
    if body:
        i = data.draw(st.integers(0, len(body) - 1))
        flipped = body[:i] + bytes([body[i] ^ (1 << data.draw(st.integers(0, 7)))]) + body[i + 1 :]
        assert not verify_signature(header, secret, flipped)
    j = data.draw(st.integers(len("sha256="), len(header) - 1))
    other_digit = "0" if header[j] != "0" else "1"
    assert not verify_signature(header[:j] + other_digit + header[j + 1 :], secret, body)
    assert not verify_signature(header, secret + "x", body)
    assert not verify_signature(header.upper(), secret, body) or header == header.upper()


@FUZZ
@given(header=st.none() | st.text(max_size=120), body=st.binary(max_size=64))
def test_any_signature_header_is_answered_true_or_false_never_raises(attacks, header, body):
    attacks.tried(AREA, "arbitrary X-Hub-Signature-256 / x-bp-secret header text", "False, never an exception")
    assert verify_signature(header, "dev-app-secret", body) is False
    assert push_is_authentic(header, "dev-botpress-secret") is (header == "dev-botpress-secret")
    assert push_is_authentic(header, "") is False


@FUZZ
@given(query=st.dictionaries(st.sampled_from(["hub.mode", "hub.challenge", "hub.verify_token", "x"]), st.text(max_size=40)))
def test_the_handshake_answers_the_challenge_only_to_our_verify_token(attacks, query):
    attacks.tried(AREA, "subscription handshake with arbitrary query", "200 only with our token, else 4xx with a reason")
    status, answer = verify_subscription(query, "dev-verify-token")
    if status == 200:
        assert query["hub.verify_token"] == "dev-verify-token" and answer == query["hub.challenge"]
    else:
        assert status in (400, 403) and answer
