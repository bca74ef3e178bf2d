"""The audit's chain verification and history masking as pure functions: intact
chains pass; altered bytes, reordered, missing, forged and undecodable records are
named at the right offset with what was expected and found."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from infra.audit import HistoryQuery, StoredRecord, decode_stored, history_entry, mask_value, verify_records
from poseidon import bootstrap
from schemas.codec import Codec

TOPIC = "wallet.events"
CODEC = Codec(bootstrap.catalog())
WALLET = "w-1"


def event(version: int, previous_hash: str, amount: int = 100, aggregate_id: str = WALLET) -> bytes:
    return CODEC.encode(
        "poseidon.wallet.FundsCredited",
        {
            "envelope": {
                "event_id": f"e{version}-{amount}",
                "event_type": "poseidon.wallet.FundsCredited",
                "aggregate_id": aggregate_id,
                "aggregate_version": version,
                "tenant_id": "acme",
                "correlation_id": "c-1",
                "causation_id": f"cmd-{version}",
                "occurred_at": datetime(2026, 1, 1, 12, 0, version, tzinfo=UTC),
                "actor": "alice",
                "previous_hash": previous_hash,
            },
            "entry_id": f"entry-{version}",
            "amount": amount,
            "balance_after": amount * version,
        },
    )


def chain(n: int, key: str = WALLET) -> list[bytes]:
    values, previous = [], ""
    for version in range(1, n + 1):
        value = event(version, previous, aggregate_id=key)
        values.append(value)
        previous = hashlib.sha256(value).hexdigest()
    return values


def stored(values: list[bytes], key: str = WALLET, partition: int = 0) -> list[StoredRecord]:
    return [decode_stored(CODEC, TOPIC, partition, offset, key.encode(), value) for offset, value in enumerate(values)]


def test_an_intact_chain_has_no_broken_link():
    assert verify_records(stored(chain(5))) == []


def test_two_interleaved_intact_streams_in_two_partitions_pass():
    a, b = stored(chain(3, "w-a"), "w-a", 0), stored(chain(3, "w-b"), "w-b", 1)
    assert verify_records([a[0], b[0], a[1], b[1], b[2], a[2]]) == []


def test_altered_payload_bytes_break_the_link_to_the_next_event_naming_both_records():
    values = chain(4)
    # The bytes of version 2 rewritten in place (as on disk): same envelope, another amount.
    values[1] = event(2, hashlib.sha256(values[0]).hexdigest(), amount=555)
    [broken] = verify_records(stored(values))
    assert (broken.offset, broken.previous_offset, broken.version, broken.event_id) == (2, 1, 3, "e3-100")
    [problem] = broken.problems
    assert problem.check == "previous_hash"
    assert hashlib.sha256(values[1]).hexdigest() in problem.expected
    assert "matches no recent record" in problem.found


def test_reordered_events_are_named_at_the_first_out_of_order_record():
    values = chain(4)
    [broken] = verify_records(stored([values[0], values[2], values[1], values[3]]))
    assert (broken.offset, broken.version) == (1, 3)
    checks = {p.check: p for p in broken.problems}
    assert (checks["version"].expected, checks["version"].found) == ("2", "3")
    assert "offset" in checks["previous_hash"].expected


def test_a_missing_event_is_named_at_the_record_after_the_gap():
    values = chain(4)
    [broken] = verify_records(stored([values[0], values[1], values[3]]))
    assert (broken.offset, broken.version, broken.previous_offset) == (2, 4, 1)
    assert {p.check for p in broken.problems} == {"version", "previous_hash"}


def test_a_forged_event_with_a_recomputed_hash_of_an_earlier_record_is_named():
    values = chain(3)
    forged = event(4, hashlib.sha256(values[0]).hexdigest(), amount=999)  # right version, links to version 1
    [broken] = verify_records(stored([*values, forged]))
    assert (broken.offset, broken.version, broken.event_id) == (3, 4, "e4-999")
    [problem] = broken.problems
    assert problem.check == "previous_hash" and "offset 0, version 1" in problem.found


def test_a_re_encoded_copy_with_a_changed_amount_appended_to_the_log_is_named():
    values = chain(3)
    copy = event(2, hashlib.sha256(values[0]).hexdigest(), amount=1_000_000)
    [broken] = verify_records(stored([*values, copy]))
    assert (broken.offset, broken.version, broken.event_id) == (3, 2, "e2-1000000")
    assert {p.check for p in broken.problems} == {"version", "previous_hash"}


def test_only_the_first_broken_link_of_a_stream_is_named_and_other_streams_still_pass():
    values = chain(4)
    records = stored([values[0], values[2], values[1], values[3]]) + stored(chain(2, "w-ok"), "w-ok", 1)
    assert [b.offset for b in verify_records(records)] == [1]


def test_an_undecodable_record_is_named_as_tampered_or_undecodable():
    values = chain(2)
    values.append(b"\xc3\x01garbage-that-is-no-event")
    [broken] = verify_records(stored(values))
    assert broken.offset == 2 and broken.version is None
    assert broken.problems[0].check == "decode" and "undecodable or tampered" in broken.problems[0].found


def test_an_envelope_naming_another_aggregate_than_its_key_is_named():
    values = chain(2)
    records = stored(values)
    records[1] = decode_stored(CODEC, TOPIC, 0, 1, b"w-other", values[1])
    broken = {b.aggregate_id: b for b in verify_records(records)}
    assert broken["w-other"].problems[0].check == "key"


def test_a_stream_split_across_partitions_is_named():
    values = chain(2)
    records = stored(values)
    records[1] = decode_stored(CODEC, TOPIC, 1, 0, WALLET.encode(), values[1])
    [broken] = verify_records(records)
    assert [p.check for p in broken.problems] == ["partition"]


def test_personal_data_and_secrets_are_masked_in_history_payloads():
    masked = mask_value(
        "record",
        {
            "email": "alice@example.com",
            "phone": "+33612345678",
            "display_name": "Alice Martin",
            "text": "my card is 4242",
            "raw": '{"text": "my card is 4242"}',
            "sealed_password": "abc",
            "token_hash": "def",
            "totp_secret": "ghi",
            "attachments": [{"type": "image", "url": "https://x/y.png"}],
            "amount": 5,
        },
    )
    assert masked == {
        "email": "a***@example.com",
        "phone": "+33******78",
        "display_name": "A*** M***",
        "text": "***",
        "raw": '{"text":"***"}',
        "sealed_password": "***",
        "token_hash": "***",
        "totp_secret": "***",
        "attachments": [{"type": "image", "url": "https://x/y.png"}],
        "amount": 5,
    }


def test_a_history_entry_carries_the_envelope_and_a_masked_payload_and_matches_its_query():
    decoded = CODEC.decode(chain(1)[0])
    entry = history_entry(TOPIC, 0, 7, decoded.name, decoded.record)
    assert (entry.aggregate_id, entry.version, entry.actor, entry.offset) == (WALLET, 1, "alice", 7)
    assert entry.payload == {"entry_id": "entry-1", "amount": 100, "balance_after": 100, "reference": ""}
    assert HistoryQuery(correlation="c-1").matches(entry) and not HistoryQuery(tenant="other").matches(entry)
    assert "FundsCredited" in entry.render() and "amount=100" in entry.render()
