"""The processor's pure helpers in infra.hub: the snapshot bytes its table holds,
the event → schema payload step, and command ⇄ record, alone and through the real
Avro codec. No broker: the codec's single-object framing needs none."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from hubs.wallet.commands import (
    COMMANDS,
    CaptureFunds,
    CloseWallet,
    CreditFunds,
    DebitFunds,
    OpenWallet,
    ReleaseFunds,
    ReserveFunds,
)
from hubs.wallet.hub import HUB
from infra.hub import SnapshotCodec, command_from_record, command_to_record, decide, event_payload
from schemas.codec import Catalog, Codec
from schemas.contracts import CommandMeta, InvalidCommand

CODEC = Codec(Catalog.load())
TENANT = "tenant-a"


def schema_fields(name: str, version: int | None = None) -> list[str]:
    sv = CODEC.catalog.latest(name) if version is None else next(s for s in CODEC.catalog.versions(name) if s.version == version)
    return [f["name"] for f in sv.parsed["fields"] if f["name"] != "envelope"]


def meta(wallet_id: str, *, tenant: str = TENANT, expected_version: int | None = None, **extra) -> CommandMeta:
    command_id = str(uuid.uuid4())
    return CommandMeta(
        command_id=command_id,
        aggregate_id=wallet_id,
        tenant_id=tenant,
        correlation_id=extra.get("correlation_id", command_id),
        causation_id=extra.get("causation_id", command_id),
        actor=extra.get("actor", "test"),
        expected_version=expected_version,
        **({"issued_at": extra["issued_at"]} if "issued_at" in extra else {}),
    )


def run(wallet, *commands):
    """Applies accepted commands in order; returns the wallet and every event."""
    events = []
    for command in commands:
        decision = decide(HUB, wallet, command)
        assert decision.accepted, decision.rejection
        wallet = decision.aggregate
        events.extend(decision.events)
    return wallet, events


def busy_wallet(wallet_id: str):
    return run(
        None,
        OpenWallet(meta(wallet_id), currency="SEK"),
        CreditFunds(meta(wallet_id), amount=1_000, reference="top-up"),
        ReserveFunds(meta(wallet_id), reservation_id="hold-1", amount=300),
        ReserveFunds(meta(wallet_id), reservation_id="hold-2", amount=200),
        DebitFunds(meta(wallet_id), amount=50),
    )


# -- snapshots -------------------------------------------------------------


def test_a_restored_wallet_keeps_its_balance_reservations_version_tenant_and_last_hash():
    wallet_id = str(uuid.uuid4())
    wallet, _ = busy_wallet(wallet_id)
    codec = SnapshotCodec()

    restored, last_hash = codec.loads(codec.dumps(wallet, "ab" * 32))

    assert last_hash == "ab" * 32
    assert restored.id == uuid.UUID(wallet_id)
    assert restored.version == 5
    assert restored.tenant_id == TENANT
    assert restored.currency == "SEK"
    assert (restored.balance, restored.reserved, restored.available) == (950, 500, 450)
    assert restored.reservations == {"hold-1": 300, "hold-2": 200}
    assert restored.modified_on == wallet.modified_on


def test_a_restored_new_wallet_keeps_an_empty_last_hash():
    wallet, _ = run(None, OpenWallet(meta(str(uuid.uuid4())), currency="EUR"))
    codec = SnapshotCodec()

    restored, last_hash = codec.loads(codec.dumps(wallet, ""))

    assert last_hash == ""
    assert (restored.version, restored.balance, restored.reserved, restored.reservations) == (1, 0, 0, {})


def test_a_restored_wallet_accepts_the_next_commands_at_the_following_versions():
    wallet_id = str(uuid.uuid4())
    wallet, _ = busy_wallet(wallet_id)
    codec = SnapshotCodec()
    restored, _ = codec.loads(codec.dumps(wallet, ""))

    restored, events = run(
        restored,
        CaptureFunds(meta(wallet_id, expected_version=5), reservation_id="hold-1"),
        ReleaseFunds(meta(wallet_id), reservation_id="hold-2"),
    )

    assert [e.originator_version for e in events] == [6, 7]
    assert all(e.originator_id == uuid.UUID(wallet_id) for e in events)
    assert (events[0].balance_after, events[0].reserved_after) == (650, 200)
    assert events[1].reserved_after == 0
    assert (restored.balance, restored.reserved, restored.reservations) == (650, 0, {})


def test_a_restored_wallet_still_enforces_the_rules_on_its_restored_state():
    wallet_id = str(uuid.uuid4())
    wallet, _ = busy_wallet(wallet_id)
    codec = SnapshotCodec()
    restored, _ = codec.loads(codec.dumps(wallet, ""))

    duplicate = decide(HUB, restored, ReserveFunds(meta(wallet_id), reservation_id="hold-1", amount=1))
    overdraft = decide(HUB, restored, DebitFunds(meta(wallet_id), amount=451))
    stranger = decide(HUB, restored, CreditFunds(meta(wallet_id, tenant="tenant-b"), amount=1))

    assert duplicate.rejection.rule == "DuplicateReservation"
    assert overdraft.rejection.rule == "InsufficientFunds"
    assert stranger.rejection.rule == "TenantMismatch"


def test_a_snapshot_taken_of_a_restored_wallet_restores_to_the_same_state():
    wallet, _ = busy_wallet(str(uuid.uuid4()))
    codec = SnapshotCodec()
    once, _ = codec.loads(codec.dumps(wallet, "h1"))

    twice, last_hash = codec.loads(codec.dumps(once, "h2"))

    assert last_hash == "h2"
    assert vars(twice) == vars(once)


# -- event payloads --------------------------------------------------------


def test_event_payload_takes_exactly_the_fields_the_schema_declares_in_its_order():
    wallet_id = str(uuid.uuid4())
    _, events = run(None, OpenWallet(meta(wallet_id), currency="EUR"), CreditFunds(meta(wallet_id), amount=70, reference="p-1"))
    credited = events[1]

    payload = event_payload(credited, schema_fields("poseidon.wallet.FundsCredited"))

    assert list(payload) == ["entry_id", "amount", "balance_after", "reference"]
    assert payload == {"entry_id": credited.entry_id, "amount": 70, "balance_after": 70, "reference": "p-1"}


def test_event_payload_for_an_older_schema_leaves_out_the_fields_it_does_not_declare():
    wallet_id = str(uuid.uuid4())
    _, events = run(None, OpenWallet(meta(wallet_id), currency="EUR"), CreditFunds(meta(wallet_id), amount=70))

    payload = event_payload(events[1], schema_fields("poseidon.wallet.FundsCredited", version=1))

    assert set(payload) == {"entry_id", "amount", "balance_after"}


def test_event_payload_of_wallet_opened_carries_only_the_currency():
    _, events = run(None, OpenWallet(meta(str(uuid.uuid4())), currency="EUR"))

    assert event_payload(events[0], schema_fields("poseidon.wallet.WalletOpened")) == {"currency": "EUR"}


def test_event_payload_raises_naming_the_event_and_every_field_it_lacks():
    _, events = run(None, OpenWallet(meta(str(uuid.uuid4())), currency="EUR"))

    with pytest.raises(ValueError) as raised:
        event_payload(events[0], ["currency", "country", "owner"])

    message = str(raised.value)
    assert "WalletOpened" in message
    assert "country" in message and "owner" in message
    assert "'currency'" not in message


@pytest.mark.parametrize("envelope_attribute", ["originator_id", "originator_version", "timestamp"])
def test_event_payload_never_takes_what_the_envelope_carries(envelope_attribute):
    _, events = run(None, OpenWallet(meta(str(uuid.uuid4())), currency="EUR"))

    with pytest.raises(ValueError, match=envelope_attribute):
        event_payload(events[0], ["currency", envelope_attribute])


def test_every_wallet_event_has_the_fields_of_its_newest_schema_and_encodes():
    wallet_id = str(uuid.uuid4())
    _, events = run(
        None,
        OpenWallet(meta(wallet_id), currency="EUR"),
        CreditFunds(meta(wallet_id), amount=500),
        DebitFunds(meta(wallet_id), amount=100, reference="r"),
        ReserveFunds(meta(wallet_id), reservation_id="a", amount=50),
        ReserveFunds(meta(wallet_id), reservation_id="b", amount=60),
        ReleaseFunds(meta(wallet_id), reservation_id="a"),
        CaptureFunds(meta(wallet_id), reservation_id="b"),
        DebitFunds(meta(wallet_id), amount=340),
        CloseWallet(meta(wallet_id), reason="done"),
    )
    wallet_event_schemas = {n for n in CODEC.catalog.names() if n.startswith("poseidon.wallet.") and ".commands." not in n}
    assert {HUB.event_name(e) for e in events} == wallet_event_schemas

    for event in events:
        name = HUB.event_name(event)
        payload = event_payload(event, schema_fields(name))
        envelope = {
            "event_id": str(uuid.uuid4()),
            "event_type": name,
            "aggregate_id": wallet_id,
            "aggregate_version": event.originator_version,
            "tenant_id": TENANT,
            "correlation_id": "c",
            "causation_id": "c",
            "occurred_at": event.timestamp,
            "actor": "test",
            "previous_hash": "",
        }
        decoded = CODEC.decode(CODEC.encode(name, {"envelope": envelope, **payload}))
        assert {k: v for k, v in decoded.record.items() if k != "envelope"} == payload


# -- command records -------------------------------------------------------

# issued_at at millisecond precision: Avro's timestamp-millis keeps no more.
ISSUED_AT = datetime(2025, 3, 14, 15, 9, 26, 535000, tzinfo=UTC)


def sample_commands() -> list:
    wallet_id = str(uuid.uuid4())

    def m(**kw):
        return meta(wallet_id, issued_at=ISSUED_AT, actor="operator:ada", correlation_id="corr-1", causation_id="cause-1", **kw)

    return [
        OpenWallet(m(expected_version=0), currency="EUR"),
        CreditFunds(m(), amount=1_234, reference="payment-9"),
        CreditFunds(m(expected_version=7), amount=10**15),
        DebitFunds(m(), amount=1, reference=""),
        ReserveFunds(m(expected_version=3), reservation_id="hold-ü", amount=99),
        ReleaseFunds(m(), reservation_id="hold-1"),
        CaptureFunds(m(), reservation_id="hold-2"),
        CloseWallet(m(), reason="onboarding compensated"),
    ]


def test_the_samples_cover_every_wallet_command():
    assert {type(c) for c in sample_commands()} == set(COMMANDS) == set(HUB.commands)


@pytest.mark.parametrize("command", sample_commands(), ids=lambda c: type(c).__name__)
def test_a_command_turned_into_a_record_and_back_is_the_same_command(command):
    record = command_to_record(command)

    assert record["meta"]["command_id"] == command.meta.command_id
    assert command_from_record(HUB, command.avro_name(), record) == command


@pytest.mark.parametrize("command", sample_commands(), ids=lambda c: type(c).__name__)
def test_a_command_sent_through_the_avro_codec_comes_back_as_the_same_command(command):
    decoded = CODEC.decode(CODEC.encode(command.avro_name(), command_to_record(command)))

    assert decoded.name == f"poseidon.wallet.commands.{type(command).__name__}"
    assert command_from_record(HUB, decoded.name, decoded.record) == command


def test_a_command_name_the_hub_does_not_know_is_invalid():
    record = command_to_record(sample_commands()[1])

    for name in ("poseidon.wallet.commands.Teleport", "poseidon.billing.commands.CreditFunds", "CreditFunds"):
        with pytest.raises(InvalidCommand, match="not a command of the wallet hub"):
            command_from_record(HUB, name, record)


def test_a_record_whose_fields_do_not_match_the_command_is_invalid():
    credit = command_to_record(sample_commands()[1])
    extra = {**credit, "currency": "EUR"}
    missing = {k: v for k, v in credit.items() if k != "amount"}

    with pytest.raises(InvalidCommand, match="CreditFunds"):
        command_from_record(HUB, CreditFunds.avro_name(), extra)
    with pytest.raises(InvalidCommand, match="CreditFunds"):
        command_from_record(HUB, CreditFunds.avro_name(), missing)


def test_a_record_of_one_command_read_as_another_is_invalid():
    reserve = command_to_record(sample_commands()[4])

    with pytest.raises(InvalidCommand):
        command_from_record(HUB, ReleaseFunds.avro_name(), reserve)


def test_the_command_record_carries_every_meta_field():
    command = sample_commands()[0]

    assert command_to_record(command)["meta"] == dataclasses.asdict(command.meta)
    assert set(command_to_record(command)["meta"]) == set(schema_fields("poseidon.CommandMeta"))
