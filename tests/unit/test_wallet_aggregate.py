"""The wallet's business rules as given (prior events) / when (a command through
`infra.hub.decide`, the same pure step the aggregate processor runs: the hub's
own checks and the shared ones) / then. No broker, no database."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given as for_all
from hypothesis import settings
from hypothesis import strategies as st

from hubs.wallet.aggregate import MAX_AMOUNT, Wallet
from hubs.wallet.commands import (
    CaptureFunds,
    CloseWallet,
    CreditFunds,
    DebitFunds,
    OpenWallet,
    ReleaseFunds,
    ReserveFunds,
)
from hubs.wallet.hub import HUB
from schemas.contracts import CommandMeta
from tests.unit.given_when_then import Fact, Hub, given, happened, only_event, then_rejected

TENANT = "tenant-a"
OTHER_TENANT = "tenant-b"


def meta(wallet_id: str, *, tenant: str = TENANT, expected_version: int | None = None) -> CommandMeta:
    command_id = str(uuid.uuid4())
    return CommandMeta(
        command_id=command_id,
        aggregate_id=wallet_id,
        tenant_id=tenant,
        correlation_id=command_id,
        causation_id=command_id,
        actor="test",
        expected_version=expected_version,
    )


class Story:
    """Builds commands for one wallet id, so a test reads as a list of verbs."""

    def __init__(self, wallet_id: str | None = None):
        self.wallet_id = str(uuid.uuid4()) if wallet_id is None else wallet_id

    def open(self, currency: str = "EUR", **m) -> OpenWallet:
        return OpenWallet(meta(self.wallet_id, **m), currency=currency)

    def credit(self, amount, reference: str = "", **m) -> CreditFunds:
        return CreditFunds(meta(self.wallet_id, **m), amount=amount, reference=reference)

    def debit(self, amount, reference: str = "", **m) -> DebitFunds:
        return DebitFunds(meta(self.wallet_id, **m), amount=amount, reference=reference)

    def reserve(self, reservation_id: str, amount, **m) -> ReserveFunds:
        return ReserveFunds(meta(self.wallet_id, **m), reservation_id=reservation_id, amount=amount)

    def release(self, reservation_id: str, **m) -> ReleaseFunds:
        return ReleaseFunds(meta(self.wallet_id, **m), reservation_id=reservation_id)

    def capture(self, reservation_id: str, **m) -> CaptureFunds:
        return CaptureFunds(meta(self.wallet_id, **m), reservation_id=reservation_id)

    # -- what happened to it, for `given` --

    def opened(self, currency: str = "EUR") -> Fact:
        return happened(Wallet.WalletOpened, wallet_id=self.wallet_id, tenant_id=TENANT, currency=currency)

    def credited(self, amount: int, balance_after: int, reference: str = "") -> Fact:
        return happened(
            Wallet.FundsCredited, entry_id=str(uuid.uuid4()), amount=amount, balance_after=balance_after, reference=reference
        )

    def debited(self, amount: int, balance_after: int, reference: str = "") -> Fact:
        return happened(
            Wallet.FundsDebited, entry_id=str(uuid.uuid4()), amount=amount, balance_after=balance_after, reference=reference
        )

    def reserved(self, reservation_id: str, amount: int, reserved_after: int) -> Fact:
        return happened(Wallet.FundsReserved, reservation_id=reservation_id, amount=amount, reserved_after=reserved_after)

    def released(self, reservation_id: str, amount: int, reserved_after: int) -> Fact:
        return happened(Wallet.ReservationReleased, reservation_id=reservation_id, amount=amount, reserved_after=reserved_after)

    def captured(self, reservation_id: str, amount: int, balance_after: int, reserved_after: int) -> Fact:
        return happened(
            Wallet.ReservationCaptured,
            reservation_id=reservation_id,
            amount=amount,
            balance_after=balance_after,
            reserved_after=reserved_after,
        )

    def closed(self, reason: str = "onboarding compensated") -> Fact:
        return happened(Wallet.WalletClosed, reason=reason)


when = Hub(HUB).when


# -- opening ---------------------------------------------------------------


def test_opening_a_wallet_records_wallet_opened_for_the_tenant_in_its_currency():
    w = Story()

    decision = when(None, w.open("EUR"))

    event = only_event(decision)
    assert type(event).__name__ == "WalletOpened"
    assert HUB.event_name(event) == "poseidon.wallet.WalletOpened"
    assert event.currency == "EUR"
    assert event.tenant_id == TENANT
    assert event.originator_id == uuid.UUID(w.wallet_id)
    assert event.originator_version == 1
    wallet = decision.aggregate
    assert (wallet.balance, wallet.reserved, wallet.reservations, wallet.version) == (0, 0, {}, 1)


@pytest.mark.parametrize("currency", ["eur", "EURO", "EU", "", "E1R", "€"])
def test_opening_a_wallet_in_something_that_is_not_an_iso_currency_code_is_invalid(currency):
    decision = when(None, Story().open(currency))

    then_rejected(decision, "InvalidCommand")
    assert decision.aggregate is None


@pytest.mark.parametrize("wallet_id", ["not-a-uuid", "", "1234", "g" * 32])
def test_opening_a_wallet_whose_id_is_not_a_uuid_is_invalid(wallet_id):
    decision = when(None, Story(wallet_id).open())

    then_rejected(decision, "InvalidCommand")
    assert "UUID" in str(decision.rejection)


def test_opening_a_wallet_that_is_already_open_is_refused_as_already_existing():
    w = Story()
    wallet = given(w.opened("EUR"))

    decision = when(wallet, w.open("USD"))

    then_rejected(decision, "AggregateAlreadyExists")
    assert wallet.currency == "EUR"
    assert wallet.version == 1


# -- crediting and debiting ------------------------------------------------


def test_crediting_records_funds_credited_with_the_balance_after_it():
    w = Story()
    wallet = given(w.opened(), w.credited(250, balance_after=250))
    credit = w.credit(100, reference="payment-42")

    event = only_event(when(wallet, credit))

    assert type(event).__name__ == "FundsCredited"
    assert (event.amount, event.balance_after, event.reference) == (100, 350, "payment-42")
    assert event.entry_id == credit.meta.command_id
    assert wallet.balance == 350


@pytest.mark.parametrize("amount", [0, -1, -(10**6), True, False, 1.5, 10.0, "10", None])
def test_crediting_an_amount_that_is_not_a_positive_integer_is_invalid(amount):
    w = Story()
    wallet = given(w.opened())

    then_rejected(when(wallet, w.credit(amount)), "InvalidCommand")
    assert wallet.balance == 0


def test_crediting_more_than_the_maximum_amount_is_invalid():
    w = Story()
    wallet = given(w.opened())

    decision = when(wallet, w.credit(MAX_AMOUNT + 1))

    then_rejected(decision, "InvalidCommand")
    assert str(MAX_AMOUNT) in str(decision.rejection)


def test_crediting_exactly_the_maximum_amount_is_accepted():
    w = Story()
    wallet = given(w.opened())

    assert only_event(when(wallet, w.credit(MAX_AMOUNT))).balance_after == MAX_AMOUNT


def test_a_credit_that_would_take_the_balance_past_the_maximum_is_invalid():
    w = Story()
    wallet = given(w.opened(), w.credited(MAX_AMOUNT, balance_after=MAX_AMOUNT))

    then_rejected(when(wallet, w.credit(1)), "InvalidCommand")
    assert wallet.balance == MAX_AMOUNT


def test_debiting_records_funds_debited_with_the_balance_after_it():
    w = Story()
    wallet = given(w.opened(), w.credited(500, balance_after=500))
    debit = w.debit(120, reference="invoice-7")

    event = only_event(when(wallet, debit))

    assert type(event).__name__ == "FundsDebited"
    assert (event.amount, event.balance_after, event.reference) == (120, 380, "invoice-7")
    assert event.entry_id == debit.meta.command_id
    assert wallet.balance == 380


def test_debiting_the_whole_balance_is_accepted_and_leaves_zero():
    w = Story()
    wallet = given(w.opened(), w.credited(75, balance_after=75))

    assert only_event(when(wallet, w.debit(75))).balance_after == 0


def test_debiting_more_than_the_balance_is_refused_as_insufficient_funds_saying_what_is_available():
    w = Story()
    wallet = given(w.opened(), w.credited(30, balance_after=30))

    decision = when(wallet, w.debit(31))

    then_rejected(decision, "InsufficientFunds")
    assert "only 30 available" in str(decision.rejection)
    assert wallet.balance == 30


def test_debiting_funds_that_are_reserved_is_refused_as_insufficient_funds():
    w = Story()
    wallet = given(w.opened(), w.credited(100, balance_after=100), w.reserved("hold-1", 80, reserved_after=80))

    decision = when(wallet, w.debit(30))

    then_rejected(decision, "InsufficientFunds")
    assert "only 20 available" in str(decision.rejection)
    assert (wallet.balance, wallet.reserved) == (100, 80)


@pytest.mark.parametrize("amount", [0, -5, True])
def test_debiting_an_amount_that_is_not_a_positive_integer_is_invalid(amount):
    w = Story()
    wallet = given(w.opened(), w.credited(100, balance_after=100))

    then_rejected(when(wallet, w.debit(amount)), "InvalidCommand")
    assert wallet.balance == 100


# -- reservations ----------------------------------------------------------


def test_reserving_moves_funds_from_available_to_reserved_without_touching_the_balance():
    w = Story()
    wallet = given(w.opened(), w.credited(100, balance_after=100), w.reserved("hold-1", 10, reserved_after=10))

    event = only_event(when(wallet, w.reserve("hold-2", 30)))

    assert type(event).__name__ == "FundsReserved"
    assert (event.reservation_id, event.amount, event.reserved_after) == ("hold-2", 30, 40)
    assert (wallet.balance, wallet.reserved, wallet.available) == (100, 40, 60)
    assert wallet.reservations == {"hold-1": 10, "hold-2": 30}


def test_reserving_more_than_is_available_is_refused_as_insufficient_funds():
    w = Story()
    wallet = given(w.opened(), w.credited(100, balance_after=100), w.reserved("hold-1", 70, reserved_after=70))

    then_rejected(when(wallet, w.reserve("hold-2", 31)), "InsufficientFunds")
    assert wallet.reservations == {"hold-1": 70}


def test_reserving_under_an_id_that_is_already_open_is_refused_as_a_duplicate_reservation():
    w = Story()
    wallet = given(w.opened(), w.credited(100, balance_after=100), w.reserved("hold-1", 10, reserved_after=10))

    then_rejected(when(wallet, w.reserve("hold-1", 10)), "DuplicateReservation")
    assert (wallet.reserved, wallet.reservations) == (10, {"hold-1": 10})


@pytest.mark.parametrize("reservation_id", ["", "x" * 201])
def test_reserving_under_an_empty_or_overlong_id_is_invalid(reservation_id):
    w = Story()
    wallet = given(w.opened(), w.credited(100, balance_after=100))

    then_rejected(when(wallet, w.reserve(reservation_id, 10)), "InvalidCommand")


@pytest.mark.parametrize("amount", [0, -1, True, MAX_AMOUNT + 1])
def test_reserving_an_amount_that_is_not_a_valid_positive_integer_is_invalid(amount):
    w = Story()
    wallet = given(w.opened(), w.credited(100, balance_after=100))

    then_rejected(when(wallet, w.reserve("hold-1", amount)), "InvalidCommand")
    assert wallet.reserved == 0


def test_releasing_a_reservation_makes_its_amount_available_again():
    w = Story()
    wallet = given(
        w.opened(),
        w.credited(100, balance_after=100),
        w.reserved("hold-1", 30, reserved_after=30),
        w.reserved("hold-2", 20, reserved_after=50),
    )

    event = only_event(when(wallet, w.release("hold-1")))

    assert type(event).__name__ == "ReservationReleased"
    assert (event.reservation_id, event.amount, event.reserved_after) == ("hold-1", 30, 20)
    assert (wallet.balance, wallet.reserved, wallet.available) == (100, 20, 80)
    assert wallet.reservations == {"hold-2": 20}


def test_capturing_a_reservation_takes_its_amount_from_both_balance_and_reserved():
    w = Story()
    wallet = given(
        w.opened(),
        w.credited(100, balance_after=100),
        w.reserved("hold-1", 30, reserved_after=30),
        w.reserved("hold-2", 20, reserved_after=50),
    )

    event = only_event(when(wallet, w.capture("hold-1")))

    assert type(event).__name__ == "ReservationCaptured"
    assert (event.reservation_id, event.amount) == ("hold-1", 30)
    assert (event.balance_after, event.reserved_after) == (70, 20)
    assert (wallet.balance, wallet.reserved, wallet.available) == (70, 20, 50)
    assert wallet.reservations == {"hold-2": 20}


@pytest.mark.parametrize("verb", ["release", "capture"])
def test_releasing_or_capturing_a_reservation_that_was_never_made_is_refused_as_unknown(verb):
    w = Story()
    wallet = given(w.opened(), w.credited(100, balance_after=100), w.reserved("hold-1", 30, reserved_after=30))

    decision = when(wallet, getattr(w, verb)("hold-9"))

    then_rejected(decision, "UnknownReservation")
    assert "hold-9" in str(decision.rejection)
    assert (wallet.balance, wallet.reserved) == (100, 30)


def test_capturing_a_released_reservation_is_refused_as_unknown():
    w = Story()
    wallet = given(
        w.opened(),
        w.credited(100, balance_after=100),
        w.reserved("hold-1", 30, reserved_after=30),
        w.released("hold-1", 30, reserved_after=0),
    )

    then_rejected(when(wallet, w.capture("hold-1")), "UnknownReservation")
    assert (wallet.balance, wallet.reserved) == (100, 0)


def test_releasing_a_captured_reservation_is_refused_as_unknown():
    w = Story()
    wallet = given(
        w.opened(),
        w.credited(100, balance_after=100),
        w.reserved("hold-1", 30, reserved_after=30),
        w.captured("hold-1", 30, balance_after=70, reserved_after=0),
    )

    then_rejected(when(wallet, w.release("hold-1")), "UnknownReservation")
    assert (wallet.balance, wallet.reserved) == (70, 0)


def test_capturing_a_reservation_twice_is_refused_the_second_time():
    w = Story()
    wallet = given(
        w.opened(),
        w.credited(100, balance_after=100),
        w.reserved("hold-1", 30, reserved_after=30),
        w.captured("hold-1", 30, balance_after=70, reserved_after=0),
    )

    then_rejected(when(wallet, w.capture("hold-1")), "UnknownReservation")
    assert wallet.balance == 70


# -- rules every hub shares ------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        lambda w: w.credit(10),
        lambda w: w.debit(10),
        lambda w: w.reserve("hold-1", 10),
        lambda w: w.release("hold-1"),
        lambda w: w.capture("hold-1"),
    ],
    ids=["credit", "debit", "reserve", "release", "capture"],
)
def test_a_command_for_a_wallet_that_was_never_opened_is_refused_as_not_found(command):
    decision = when(None, command(Story()))

    then_rejected(decision, "AggregateNotFound")
    assert decision.aggregate is None
    assert decision.version == 0


def test_a_command_from_a_tenant_that_does_not_own_the_wallet_is_refused_as_tenant_mismatch():
    w = Story()
    wallet = given(w.opened(), w.credited(100, balance_after=100))

    decision = when(wallet, w.debit(100, tenant=OTHER_TENANT))

    then_rejected(decision, "TenantMismatch")
    assert OTHER_TENANT in str(decision.rejection)
    assert TENANT not in str(decision.rejection)  # the owner is not revealed
    assert wallet.balance == 100


def test_opening_a_wallet_id_another_tenant_owns_is_refused_as_tenant_mismatch():
    w = Story()
    wallet = given(w.opened())

    then_rejected(when(wallet, w.open(tenant=OTHER_TENANT)), "TenantMismatch")
    assert wallet.tenant_id == TENANT


def test_a_command_expecting_an_older_version_is_refused_as_a_version_conflict():
    w = Story()
    wallet = given(w.opened(), w.credited(100, balance_after=100))  # version 2

    decision = when(wallet, w.debit(10, expected_version=1))

    then_rejected(decision, "VersionConflict")
    assert "expected version 1" in str(decision.rejection) and "at 2" in str(decision.rejection)
    assert decision.version == 2
    assert wallet.balance == 100


def test_a_command_expecting_the_current_version_is_accepted_at_the_next_version():
    w = Story()
    wallet = given(w.opened(), w.credited(100, balance_after=100))

    decision = when(wallet, w.debit(10, expected_version=2))

    assert only_event(decision).originator_version == 3
    assert decision.version == 3


def test_opening_expecting_version_zero_is_accepted_and_expecting_any_other_is_a_conflict():
    w = Story()

    then_rejected(when(None, w.open(expected_version=1)), "VersionConflict")
    assert only_event(when(None, w.open(expected_version=0))).originator_version == 1


def test_a_command_expecting_version_zero_on_an_open_wallet_is_a_version_conflict():
    w = Story()
    wallet = given(w.opened(), w.credited(100, balance_after=100))

    then_rejected(when(wallet, w.debit(10, expected_version=0)), "VersionConflict")
    assert wallet.balance == 100


def test_each_accepted_command_adds_exactly_one_event_and_one_version():
    w = Story()
    commands = [w.open(), w.credit(100), w.reserve("hold-1", 40), w.debit(10), w.capture("hold-1"), w.credit(5)]
    wallet = None

    versions = []
    for command in commands:
        decision = when(wallet, command)
        versions.append(only_event(decision).originator_version)
        assert decision.version == versions[-1]
        wallet = decision.aggregate

    assert versions == [1, 2, 3, 4, 5, 6]
    assert (wallet.balance, wallet.reserved) == (55, 0)


@pytest.mark.parametrize(
    "command, rule",
    [
        (lambda w: w.debit(1000), "InsufficientFunds"),
        (lambda w: w.credit(0), "InvalidCommand"),
        (lambda w: w.reserve("hold-1", 1), "DuplicateReservation"),
        (lambda w: w.release("nope"), "UnknownReservation"),
        (lambda w: w.capture("nope"), "UnknownReservation"),
        (lambda w: w.open(), "AggregateAlreadyExists"),
        (lambda w: w.credit(1, expected_version=99), "VersionConflict"),
        (lambda w: w.credit(1, tenant=OTHER_TENANT), "TenantMismatch"),
    ],
    ids=lambda p: p if isinstance(p, str) else "",
)
def test_a_rejected_command_records_no_event_and_leaves_the_wallet_as_it_was(command, rule):
    w = Story()
    wallet = given(w.opened(), w.credited(100, balance_after=100), w.reserved("hold-1", 40, reserved_after=40))
    before = (wallet.version, wallet.balance, wallet.reserved, dict(wallet.reservations))

    decision = when(wallet, command(w))

    then_rejected(decision, rule)
    assert decision.aggregate is wallet
    assert (wallet.version, wallet.balance, wallet.reserved, dict(wallet.reservations)) == before
    assert wallet.collect_events() == []  # nothing left pending for a later command to pick up


# -- invariants over any sequence ------------------------------------------

RESERVATION_IDS = st.sampled_from(["r1", "r2", "r3"])
AMOUNTS = st.integers(min_value=-5, max_value=400)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("credit"), AMOUNTS),
        st.tuples(st.just("debit"), AMOUNTS),
        st.tuples(st.just("reserve"), RESERVATION_IDS, AMOUNTS),
        st.tuples(st.just("release"), RESERVATION_IDS),
        st.tuples(st.just("capture"), RESERVATION_IDS),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@for_all(STEPS)
def test_any_sequence_of_commands_keeps_the_books_consistent(steps):
    w = Story()
    wallet = given(w.opened())
    accepted = 0

    for verb, *args in steps:
        decision = when(wallet, getattr(w, verb)(*args))
        accepted += decision.accepted
        assert len(decision.events) == (1 if decision.accepted else 0)

        assert 0 <= wallet.reserved <= wallet.balance
        assert wallet.reserved == sum(wallet.reservations.values())
        assert all(amount > 0 for amount in wallet.reservations.values())
        assert wallet.version == 1 + accepted


# -- closing (the compensation of OpenWallet) -------------------------------


def close(w: Story, reason: str = "onboarding compensated") -> CloseWallet:
    return CloseWallet(meta(w.wallet_id), reason=reason)


def test_closing_an_empty_wallet_records_wallet_closed_with_the_reason():
    w = Story()

    event = only_event(when(given(w.opened()), close(w)))

    assert type(event).__name__ == "WalletClosed" and event.reason == "onboarding compensated"


def test_a_wallet_with_a_balance_or_a_reservation_refuses_to_close():
    w = Story()
    then_rejected(when(given(w.opened(), w.credited(10, balance_after=10)), close(w)), "WalletNotEmpty")
    v = Story()
    reserved_only = given(
        v.opened(),
        v.credited(10, balance_after=10),
        v.reserved("r1", 10, reserved_after=10),
        v.captured("r1", 10, balance_after=0, reserved_after=0),
        v.credited(3, balance_after=3),
        v.reserved("r2", 3, reserved_after=3),
    )
    assert reserved_only.balance == 3 and reserved_only.reserved == 3
    then_rejected(when(reserved_only, close(v)), "WalletNotEmpty")


def test_a_closed_wallet_refuses_credits_debits_reservations_and_a_second_close():
    w = Story()
    closed = given(w.opened(), w.credited(5, balance_after=5), w.debited(5, balance_after=0), w.closed())

    for command in (w.credit(1), w.debit(1), w.reserve("r1", 1), close(w)):
        then_rejected(when(closed, command), "WalletIsClosed")
