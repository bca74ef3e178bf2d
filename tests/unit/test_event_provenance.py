"""infra.provenance: a hub's events carry a MAC only its key makes; readers name
what is missing, unknown or wrong; rotation keeps older events verifiable; the
audit chain verifier names a forged record itself even when it imitates the
chain perfectly. Keys in a tmp folder, no broker."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor

from infra.audit import StoredRecord, verify_records
from infra.provenance import FIRST_KID, MAC_HEADER, EventKeys

VALUE = b"\xc3\x01an encoded event"


def signed(keys: EventKeys, value: bytes = VALUE) -> list[tuple[str, bytes]]:
    return [("event_type", b"poseidon.wallet.FundsCredited"), keys.sign(hashlib.sha256(value).digest())]


def test_an_event_signed_by_its_hub_verifies_and_anything_else_is_named(tmp_path):
    keys = EventKeys(tmp_path / "wallet", "wallet")
    headers = signed(keys)
    assert keys.problem(VALUE, headers) == ""
    assert "no poseidon-mac header" in keys.problem(VALUE, headers[:1])
    assert "does not match the record" in keys.problem(VALUE + b"!", headers)  # altered after signing
    # Another installation's key under the same kid, or another hub's key, does not pass.
    stranger = EventKeys(tmp_path / "elsewhere", "wallet")
    assert "does not match" in keys.problem(VALUE, signed(stranger))
    assert "does not match" in keys.problem(VALUE, signed(EventKeys(tmp_path / "tenant", "tenant")))
    kid = headers[1][1].decode().split(":")[0]
    assert "does not match" in keys.problem(VALUE, [(MAC_HEADER, f"{kid}:{'0' * 64}".encode())])
    assert "names no key" in keys.problem(VALUE, [(MAC_HEADER, b"k-made-up:" + b"0" * 64)])


def test_rotation_signs_with_the_new_key_and_older_events_still_verify_in_another_reader(tmp_path):
    writer = EventKeys(tmp_path / "wallet", "wallet")
    old = signed(writer)
    new_kid = writer.rotate()
    new = signed(writer)
    assert new[1][1].decode().startswith(f"{new_kid}:")
    reader = EventKeys(tmp_path / "wallet", "wallet")  # another process: sees the folder as it is now
    assert reader.problem(VALUE, old) == reader.problem(VALUE, new) == ""
    assert set(reader.kids()) == {FIRST_KID, new_kid}
    assert all(oct(os.stat(p).st_mode & 0o777) == "0o600" for p in (tmp_path / "wallet").glob("*.key"))


def test_processors_starting_together_agree_on_one_first_key(tmp_path):
    with ThreadPoolExecutor(8) as pool:
        headers = list(pool.map(lambda _: EventKeys(tmp_path / "wallet", "wallet").sign(b"d" * 32)[1], range(8)))
    assert len(set(headers)) == 1 and EventKeys(tmp_path / "wallet", "wallet").kids() == [FIRST_KID]


def test_audit_names_a_forged_record_that_imitates_the_chain_perfectly(tmp_path):
    keys = EventKeys(tmp_path / "wallet", "wallet")
    first, forged_value = b"first event", b"forged credit"
    envelope = {"aggregate_id": "w-1", "aggregate_version": 1, "previous_hash": "", "tenant_id": "t"}
    records = [
        StoredRecord("wallet.events", 0, 0, b"w-1", first, envelope, forged=keys.problem(first, signed(keys, first))),
        StoredRecord(
            "wallet.events", 0, 1, b"w-1", forged_value,
            {**envelope, "aggregate_version": 2, "previous_hash": hashlib.sha256(first).hexdigest()},
            forged=keys.problem(forged_value, [("event_type", b"x")]),
        ),
    ]  # fmt: skip
    [broken] = verify_records(records)
    assert broken.offset == 1 and [p.check for p in broken.problems] == ["mac"]
    assert "not written by the wallet processor" in broken.problems[0].found
