"""base.pii's allow-list masking of records and shape masking of free text — the
one mechanism logs, audit reports and the dashboard show data through: names
inside JSON held in strings, fields nobody listed, values cut short after
masking (never before), and log lines carrying records."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from base.logging import redact
from base.pii import MASK, mask_fields, mask_text

SECRET_LOCAL = "zelda.private"


def test_names_inside_json_held_in_a_string_are_masked_like_the_same_names_outside():
    raw = json.dumps({"entry": [{"messaging": [{"sender": {"id": "2400001"}, "message": {"text": "I live at 4 Elm St"}}]}]})
    profile = json.dumps({"email": f"{SECRET_LOCAL}@example.com", "phone": "+33612345678", "nickname": "Zed"})
    masked = mask_fields({"raw": raw, "payload": profile, "input": "[1, 2]"})
    assert json.loads(masked["raw"]) == {"entry": [{"messaging": [{"sender": {"id": "2400001"}, "message": {"text": MASK}}]}]}
    assert json.loads(masked["payload"]) == {"email": "z***@example.com", "phone": "+33******78", "nickname": MASK}
    assert json.loads(masked["input"]) == [1, 2]


def test_only_allow_listed_fields_are_shown_in_clear_and_everything_else_is_hidden_whole():
    masked = mask_fields(
        {
            "tenant_id": "acme",
            "event_type": "MessageReceived",
            "status": "delivered",
            "occurred_at": "2026-12-07T10:00:00Z",
            "amount": 120,
            "ok": True,
            "reason": "no account for zelda@example.com",
            "favourite_colour": "green",  # a field nobody listed: not shown
            "api_key": "k-123",
            "notes": "call +33 6 12 34 56 78",
        }
    )
    assert masked == {
        "tenant_id": "acme",
        "event_type": "MessageReceived",
        "status": "delivered",
        "occurred_at": "2026-12-07T10:00:00Z",
        "amount": 120,
        "ok": True,
        "reason": "no account for z•••@example.com",
        "favourite_colour": MASK,
        "api_key": MASK,
        "notes": MASK,
    }


def test_free_text_is_masked_before_it_is_cut_so_half_an_address_never_shows():
    text = "x" * 90 + f" {SECRET_LOCAL}@example.com and more"
    shown = mask_text(text, limit=100)
    assert len(shown) <= 100 and "zelda" not in shown and "elda" not in shown
    assert shown.startswith("x" * 90) and shown.endswith("…")
    # Cutting first (the old order) would have left the start of the address in clear.
    assert "zelda" in mask_text(text[:100])


def test_tokens_secrets_and_quoted_bodies_in_free_text_are_replaced():
    text = 'Bearer abcdefgh12345678 failed; {"password": "hunter2", "text": "my card 4242"} eyJhbGciOi.eyJzdWIiOi.c2ln'
    shown = mask_text(text)
    for secret in ("abcdefgh12345678", "hunter2", "my card 4242", "eyJhbGciOi"):
        assert secret not in shown
    assert '"text": "[12 chars]"' in shown


def test_a_log_line_masks_nested_records_and_addresses_in_errors():
    line = redact(
        None,
        "info",
        {
            "event": "delivery failed",
            "error": f"Graph refused {SECRET_LOCAL}@example.com",
            "record": {"contact_id": "c-1", "profile": {"email": f"{SECRET_LOCAL}@example.com"}, "body": "hello"},
            "token": "secret-token",
            "count": 3,
        },
    )
    assert SECRET_LOCAL not in json.dumps(line)
    assert line["record"] == {"contact_id": "c-1", "profile": {"email": "z***@example.com"}, "body": MASK}
    assert (line["token"], line["count"], line["event"]) == ("[redacted]", 3, "delivery failed")


_names = st.sampled_from(["email", "login", "payload", "raw", "data", "comment", "x"])
_json_values = st.recursive(
    st.none() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_names, children, max_size=3),
    max_leaves=10,
)


@given(doc=_json_values, depth=st.integers(0, 3), name=_names)
def test_an_address_anywhere_in_nested_json_strings_never_shows_its_local_part(doc, depth, name):
    value: object = {"email": f"{SECRET_LOCAL}@example.com", "other": doc}
    for _ in range(depth):  # JSON inside a string inside JSON ...
        value = {"wrapped": json.dumps(value)}
    shown = json.dumps(mask_fields({name: json.dumps(value)}))
    assert SECRET_LOCAL not in shown and "elda.priv" not in shown


def test_a_dead_letter_summary_masks_the_whole_payload_before_cutting_it():
    from base.settings import Settings
    from poseidon import bootstrap
    from sagas.dashboard.deadletters import payload_summary

    codec = bootstrap.codec(Settings())
    # Undecodable (not Avro), the address straddling where the old summary cut at 200 bytes.
    body = b'{"note": "' + b"x" * 180 + f'", "email": "{SECRET_LOCAL}@example.com", "phone": "+33612345678"}}'.encode()
    shown = payload_summary(codec, body)
    assert "zelda" not in shown and "33612345678" not in shown and "z***@example.com" in shown
    # Decoded records go through the same allow-list: unlisted text is hidden whole.
    record = codec.encode(
        "poseidon.wallet.commands.CreditFunds",
        {
            "meta": {"command_id": "c", "aggregate_id": "w", "tenant_id": "t", "correlation_id": "c", "causation_id": "c",
                     "actor": "a", "issued_at": 0, "expected_version": None},
            "amount": 5,
            "reference": f"refund for {SECRET_LOCAL}@example.com",
        },
    )  # fmt: skip
    summary = payload_summary(codec, record)
    assert summary.startswith("CreditFunds ") and '"amount": 5' in summary and SECRET_LOCAL not in summary


def test_a_console_traceback_never_prints_the_failing_frames_locals(capsys):
    import structlog

    from base import logging as platform_logging

    platform_logging.configure("INFO", "console")

    def token_endpoint():
        client_secret = "-".join(("s3cr3t", "of", "a", "client"))  # noqa: F841  (a local: built, so the source line shows no value)
        raise ValueError("the hub failed")

    try:
        token_endpoint()
    except ValueError:
        structlog.get_logger("test").exception("request failed")
    printed = capsys.readouterr().err
    assert "the hub failed" in printed and "s3cr3t-of-a-client" not in printed
