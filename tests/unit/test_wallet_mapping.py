"""The wallet read model's pure event → statements mapping, fed realistic records:
events the aggregate really emitted, wrapped in the envelope the processor builds
and passed through the real Avro codec, as the projector receives them."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given as for_all
from hypothesis import settings
from hypothesis import strategies as st

from hubs.wallet.commands import (
    CaptureFunds,
    CreditFunds,
    DebitFunds,
    OpenWallet,
    ReleaseFunds,
    ReserveFunds,
)
from hubs.wallet.hub import HUB
from infra.hub import decide, event_record
from infra.projection import Statement
from projections.wallet import PROJECTION
from projections.wallet.mapping import LEDGER, LEDGERED, OPEN, OPENED, UPDATE, UPDATED, apply
from schemas.codec import Catalog, Codec
from schemas.contracts import CommandMeta

CODEC = Codec(Catalog.load())
TENANT = "tenant-a"
# As AggregateProcessor builds them: each wallet event schema's fields but the envelope.
EVENT_FIELDS = {
    name: [f["name"] for f in CODEC.catalog.latest(name).parsed["fields"] if f["name"] != "envelope"]
    for name in CODEC.catalog.names()
    if name.startswith("poseidon.wallet.") and ".commands." not in name
}
LEDGER_COLUMNS = (
    "wallet_id", "version", "tenant_id", "kind", "amount", "balance_delta", "reserved_delta",
    "entry_id", "reservation_id", "reference", "event_id", "correlation_id", "occurred_at",
)  # fmt: skip


class Story:
    """Runs commands against one wallet and keeps the event records the processor
    would have published, in order."""

    def __init__(self):
        self.wallet_id = str(uuid.uuid4())
        self.wallet = None
        self.records: list[tuple[str, dict]] = []
        self._last_hash = ""

    def meta(self) -> CommandMeta:
        command_id = str(uuid.uuid4())
        return CommandMeta(
            command_id=command_id,
            aggregate_id=self.wallet_id,
            tenant_id=TENANT,
            correlation_id=f"corr-{command_id}",
            causation_id=command_id,
            actor="test",
        )

    def do(self, cls, **payload) -> list[tuple[str, dict]]:
        """Decides one command; returns the records of its events ([] if refused)."""
        command = cls(self.meta(), **payload)
        decision = decide(HUB, self.wallet, command)
        if not decision.accepted:
            return []
        self.wallet = decision.aggregate
        new = []
        for domain_event in decision.events:
            name = HUB.event_name(domain_event)
            record = event_record(
                command.meta, name, domain_event, EVENT_FIELDS[name], event_id=str(uuid.uuid4()), previous_hash=self._last_hash
            )
            decoded = CODEC.decode(CODEC.encode(name, record))
            new.append((decoded.name, decoded.record))
        self.records.extend(new)
        return new

    def only(self, cls, **payload) -> tuple[str, dict]:
        new = self.do(cls, **payload)
        assert len(new) == 1, f"{cls.__name__} was refused or emitted {len(new)} events"
        return new[0]


def opened() -> Story:
    story = Story()
    story.only(OpenWallet, currency="EUR")
    return story


def ledger_row(statement: Statement) -> dict:
    assert statement.sql == LEDGER
    return dict(zip(LEDGER_COLUMNS, statement.args, strict=True))


def then_ledger_row(statement: Statement, record: dict, **expected) -> dict:
    """Checks the columns every ledger row takes from the envelope, then `expected`."""
    env = record["envelope"]
    row = ledger_row(statement)
    assert row["wallet_id"] == str(uuid.UUID(env["aggregate_id"]))
    assert row["version"] == env["aggregate_version"]
    assert row["tenant_id"] == TENANT
    assert row["event_id"] == str(uuid.UUID(env["event_id"]))
    assert row["correlation_id"] == env["correlation_id"]
    assert row["occurred_at"] == env["occurred_at"]
    assert {k: row[k] for k in expected} == expected
    return row


# -- one event at a time -----------------------------------------------------


def test_wallet_opened_inserts_the_wallet_row_at_zero_with_its_version_and_no_ledger_row():
    story = Story()
    event_type, record = story.only(OpenWallet, currency="CHF")

    statements = apply(event_type, record)

    env = record["envelope"]
    assert statements == [
        Statement(OPEN, (str(uuid.UUID(story.wallet_id)), TENANT, "CHF", 1, env["occurred_at"]), phase=OPENED),
    ]


def test_funds_credited_writes_a_credit_row_and_sets_the_balance_after_it():
    story = opened()
    story.only(CreditFunds, amount=40)
    event_type, record = story.only(CreditFunds, amount=125, reference="payment-3")

    ledger, update = apply(event_type, record)

    then_ledger_row(
        ledger, record, kind="credit", amount=125, balance_delta=125, reserved_delta=0,
        entry_id=record["entry_id"], reservation_id="", reference="payment-3", version=3,
    )  # fmt: skip
    assert update == Statement(
        UPDATE, (str(uuid.UUID(story.wallet_id)), 165, None, 3, record["envelope"]["occurred_at"]), phase=UPDATED
    )


def test_funds_debited_writes_a_debit_row_with_a_negative_delta_and_sets_the_balance_after_it():
    story = opened()
    story.only(CreditFunds, amount=200)
    event_type, record = story.only(DebitFunds, amount=70, reference="invoice-1")

    ledger, update = apply(event_type, record)

    then_ledger_row(
        ledger, record, kind="debit", amount=70, balance_delta=-70, reserved_delta=0,
        entry_id=record["entry_id"], reservation_id="", reference="invoice-1", version=3,
    )  # fmt: skip
    assert update == Statement(
        UPDATE, (str(uuid.UUID(story.wallet_id)), 130, None, 3, record["envelope"]["occurred_at"]), phase=UPDATED
    )


def test_funds_reserved_writes_a_reserve_row_and_sets_reserved_after_it():
    story = opened()
    story.only(CreditFunds, amount=200)
    story.only(ReserveFunds, reservation_id="hold-1", amount=20)
    event_type, record = story.only(ReserveFunds, reservation_id="hold-2", amount=50)

    ledger, update = apply(event_type, record)

    then_ledger_row(
        ledger, record, kind="reserve", amount=50, balance_delta=0, reserved_delta=50,
        entry_id="", reservation_id="hold-2", reference="", version=4,
    )  # fmt: skip
    assert update == Statement(
        UPDATE, (str(uuid.UUID(story.wallet_id)), None, 70, 4, record["envelope"]["occurred_at"]), phase=UPDATED
    )


def test_reservation_released_writes_a_release_row_giving_back_reserved_funds():
    story = opened()
    story.only(CreditFunds, amount=200)
    story.only(ReserveFunds, reservation_id="hold-1", amount=20)
    story.only(ReserveFunds, reservation_id="hold-2", amount=50)
    event_type, record = story.only(ReleaseFunds, reservation_id="hold-2")

    ledger, update = apply(event_type, record)

    then_ledger_row(
        ledger, record, kind="release", amount=50, balance_delta=0, reserved_delta=-50,
        entry_id="", reservation_id="hold-2", reference="", version=5,
    )  # fmt: skip
    assert update == Statement(
        UPDATE, (str(uuid.UUID(story.wallet_id)), None, 20, 5, record["envelope"]["occurred_at"]), phase=UPDATED
    )


def test_reservation_captured_writes_a_capture_row_taking_from_balance_and_reserved_and_sets_both():
    story = opened()
    story.only(CreditFunds, amount=200)
    story.only(ReserveFunds, reservation_id="hold-1", amount=20)
    story.only(ReserveFunds, reservation_id="hold-2", amount=50)
    event_type, record = story.only(CaptureFunds, reservation_id="hold-2")

    ledger, update = apply(event_type, record)

    then_ledger_row(
        ledger, record, kind="capture", amount=50, balance_delta=-50, reserved_delta=-50,
        entry_id="", reservation_id="hold-2", reference="", version=5,
    )  # fmt: skip
    assert update == Statement(
        UPDATE, (str(uuid.UUID(story.wallet_id)), 150, 20, 5, record["envelope"]["occurred_at"]), phase=UPDATED
    )


def test_every_ledger_kind_the_mapping_writes_is_one_the_ledger_table_allows():
    story = opened()
    story.do(CreditFunds, amount=100)
    story.do(DebitFunds, amount=10)
    story.do(ReserveFunds, reservation_id="a", amount=10)
    story.do(ReserveFunds, reservation_id="b", amount=10)
    story.do(ReleaseFunds, reservation_id="a")
    story.do(CaptureFunds, reservation_id="b")
    migration = (PROJECTION.migrations / "0001_wallets_and_ledger.sql").read_text()

    kinds = {ledger_row(s)["kind"] for t, r in story.records for s in apply(t, r) if s.sql == LEDGER}

    assert kinds == {"credit", "debit", "reserve", "release", "capture"}
    assert "CHECK (kind IN ('credit', 'debit', 'reserve', 'release', 'capture'))" in migration


def test_the_mapping_handles_the_full_avro_name_and_the_bare_event_name_alike():
    story = opened()
    event_type, record = story.only(CreditFunds, amount=5)

    assert event_type == "poseidon.wallet.FundsCredited"
    assert apply("FundsCredited", record) == apply(event_type, record)


@pytest.mark.parametrize("event_type", ["poseidon.wallet.WalletRenamed", "poseidon.billing.InvoiceIssued", "", "wallet"])
def test_an_event_type_the_read_model_does_not_know_raises_value_error_naming_it(event_type):
    story = opened()
    _, record = story.only(CreditFunds, amount=5)

    with pytest.raises(ValueError, match="no mapping for"):
        apply(event_type, record)


# -- any sequence ------------------------------------------------------------

RESERVATION_IDS = st.sampled_from(["r1", "r2", "r3", "r4"])
AMOUNTS = st.integers(min_value=1, max_value=500)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just(CreditFunds), st.fixed_dictionaries({"amount": AMOUNTS})),
        st.tuples(st.just(DebitFunds), st.fixed_dictionaries({"amount": AMOUNTS})),
        st.tuples(st.just(ReserveFunds), st.fixed_dictionaries({"reservation_id": RESERVATION_IDS, "amount": AMOUNTS})),
        st.tuples(st.just(ReleaseFunds), st.fixed_dictionaries({"reservation_id": RESERVATION_IDS})),
        st.tuples(st.just(CaptureFunds), st.fixed_dictionaries({"reservation_id": RESERVATION_IDS})),
    ),
    max_size=30,
)


@settings(max_examples=100, deadline=None)
@for_all(STEPS)
def test_for_any_sequence_of_commands_the_ledger_adds_up_to_the_wallet_row(steps):
    story = opened()
    for cls, payload in steps:
        story.do(cls, **payload)
    wallet = story.wallet

    balance = reserved = 0
    versions = []
    for event_type, record in story.records[1:]:
        ledger, update = apply(event_type, record)
        row = ledger_row(ledger)
        balance += row["balance_delta"]
        reserved += row["reserved_delta"]
        versions.append(row["version"])
        # The wallets row each event sets agrees with the ledger summed so far.
        assert update.sql == UPDATE and update.phase == UPDATED and ledger.phase == LEDGERED
        wallet_id, set_balance, set_reserved, version, at = update.args
        assert (wallet_id, version, at) == (row["wallet_id"], row["version"], row["occurred_at"])
        assert set_balance in (None, balance) and set_reserved in (None, reserved)
        assert (set_balance, set_reserved) != (None, None)
        assert set_balance is not None or row["balance_delta"] == 0
        assert set_reserved is not None or row["reserved_delta"] == 0

    assert balance == wallet.balance
    assert reserved == wallet.reserved
    assert versions == list(range(2, wallet.version + 1))


def test_wallet_closed_sets_closed_at_and_moves_the_version_forward_once():
    from datetime import UTC, datetime

    from projections.wallet.mapping import CLOSE

    at = datetime(2026, 1, 1, tzinfo=UTC)
    wallet_id = str(uuid.uuid4())
    record = {"envelope": {"aggregate_id": wallet_id, "aggregate_version": 4, "occurred_at": at, "tenant_id": "t"}, "reason": "x"}

    [statement] = apply("poseidon.wallet.WalletClosed", record)

    assert statement.sql == CLOSE and "version < $2" in CLOSE
    assert statement.args == (str(uuid.UUID(wallet_id)), 4, at)


# -- ids ---------------------------------------------------------------------


def test_ids_are_written_as_canonical_uuid_text_whatever_their_spelling():
    story = opened()
    event_type, record = story.only(CreditFunds, amount=5)
    env = record["envelope"]
    shouted = {
        **record,
        "envelope": {**env, "aggregate_id": env["aggregate_id"].upper(), "event_id": env["event_id"].replace("-", "")},
    }

    ledger, update = apply(event_type, shouted)

    assert ledger_row(ledger)["wallet_id"] == update.args[0] == env["aggregate_id"]
    assert ledger_row(ledger)["event_id"] == env["event_id"]


def test_an_event_whose_wallet_id_is_no_uuid_is_refused_by_the_mapping_so_it_is_dead_lettered():
    story = opened()
    event_type, record = story.only(CreditFunds, amount=5)
    broken = {**record, "envelope": {**record["envelope"], "aggregate_id": "not-a-uuid"}}

    with pytest.raises(ValueError):
        apply(event_type, broken)
