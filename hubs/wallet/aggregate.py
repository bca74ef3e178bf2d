"""The Wallet aggregate: decides (public verbs, small named checks) and evolves
(the @event methods only assign state). Pure: no I/O."""

from __future__ import annotations

import re
import uuid

from eventsourcing.domain import Aggregate, event

from hubs.wallet.commands import (
    CaptureFunds,
    CloseWallet,
    CreditFunds,
    DebitFunds,
    OpenWallet,
    ReleaseFunds,
    ReserveFunds,
)
from schemas.contracts import (
    AggregateAlreadyExists,
    AggregateNotFound,
    Command,
    InvalidCommand,
    Rejected,
)

_CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_AMOUNT = 10**15  # keeps every balance far inside a signed 64-bit long


class InsufficientFunds(Rejected):
    pass


class UnknownReservation(Rejected):
    pass


class DuplicateReservation(Rejected):
    pass


class WalletNotEmpty(Rejected):
    pass


class WalletIsClosed(Rejected):
    pass


class Wallet(Aggregate):
    closed = False
    """Class default: wallets snapshotted before closing existed were all open."""

    @staticmethod
    def create_id(wallet_id: str, **_: object) -> uuid.UUID:
        return uuid.UUID(wallet_id)

    @event("WalletOpened")
    def __init__(self, wallet_id: str, tenant_id: str, currency: str):
        self.tenant_id = tenant_id
        self.currency = currency
        self.balance = 0
        self.reserved = 0
        self.reservations: dict[str, int] = {}

    @property
    def available(self) -> int:
        return self.balance - self.reserved

    def credit(self, entry_id: str, amount: int, reference: str = "") -> None:
        check_is_open(self)
        check_amount(amount)
        check_amount(self.balance + amount)
        self._funds_credited(entry_id, amount, self.balance + amount, reference)

    def debit(self, entry_id: str, amount: int, reference: str = "") -> None:
        check_is_open(self)
        check_amount(amount)
        check_has_sufficient_funds(self, amount)
        self._funds_debited(entry_id, amount, self.balance - amount, reference)

    def reserve(self, reservation_id: str, amount: int) -> None:
        check_is_open(self)
        check_amount(amount)
        check_reference(reservation_id, "reservation_id")
        if reservation_id in self.reservations:
            raise DuplicateReservation(f"reservation {reservation_id} is already open")
        check_has_sufficient_funds(self, amount)
        self._funds_reserved(reservation_id, amount, self.reserved + amount)

    def release(self, reservation_id: str) -> None:
        amount = check_reservation_is_open(self, reservation_id)
        self._reservation_released(reservation_id, amount, self.reserved - amount)

    def capture(self, reservation_id: str) -> None:
        amount = check_reservation_is_open(self, reservation_id)
        self._reservation_captured(reservation_id, amount, self.balance - amount, self.reserved - amount)

    def close(self, reason: str) -> None:
        check_is_open(self)
        if len(reason) > 200:
            raise InvalidCommand("reason must be at most 200 characters")
        if self.balance != 0 or self.reserved != 0:
            raise WalletNotEmpty(f"a wallet closes only when empty (balance {self.balance}, reserved {self.reserved})")
        self._wallet_closed(reason)

    @event("WalletClosed")
    def _wallet_closed(self, reason: str) -> None:
        self.closed = True

    @event("FundsCredited")
    def _funds_credited(self, entry_id: str, amount: int, balance_after: int, reference: str) -> None:
        self.balance = balance_after

    @event("FundsDebited")
    def _funds_debited(self, entry_id: str, amount: int, balance_after: int, reference: str) -> None:
        self.balance = balance_after

    @event("FundsReserved")
    def _funds_reserved(self, reservation_id: str, amount: int, reserved_after: int) -> None:
        self.reservations[reservation_id] = amount
        self.reserved = reserved_after

    @event("ReservationReleased")
    def _reservation_released(self, reservation_id: str, amount: int, reserved_after: int) -> None:
        del self.reservations[reservation_id]
        self.reserved = reserved_after

    @event("ReservationCaptured")
    def _reservation_captured(self, reservation_id: str, amount: int, balance_after: int, reserved_after: int) -> None:
        del self.reservations[reservation_id]
        self.balance = balance_after
        self.reserved = reserved_after


def check_amount(amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidCommand(f"amount must be a positive integer in minor units, not {amount!r}")
    if amount > MAX_AMOUNT:
        raise InvalidCommand(f"amount {amount} exceeds the maximum of {MAX_AMOUNT}")


def check_has_sufficient_funds(wallet: Wallet, amount: int) -> None:
    if wallet.available < amount:
        raise InsufficientFunds(
            f"{amount} {wallet.currency} requested but only {wallet.available} available "
            f"(balance {wallet.balance}, reserved {wallet.reserved})"
        )


def check_is_open(wallet: Wallet) -> None:
    if wallet.closed:
        raise WalletIsClosed("the wallet is closed")


def check_reservation_is_open(wallet: Wallet, reservation_id: str) -> int:
    try:
        return wallet.reservations[reservation_id]
    except KeyError:
        raise UnknownReservation(f"no open reservation {reservation_id!r} on this wallet") from None


def check_reference(value: str, name: str) -> None:
    if not value or len(value) > 200:
        raise InvalidCommand(f"{name} must be 1 to 200 characters")


def check_wallet_id(wallet_id: str) -> None:
    # Only the canonical spelling: the id is also the Kafka key and the table key,
    # so two spellings of one UUID would otherwise be two wallets.
    try:
        canonical = str(uuid.UUID(wallet_id))
    except (ValueError, TypeError, AttributeError):
        raise InvalidCommand(f"wallet id must be a UUID, not {wallet_id!r}") from None
    if canonical != wallet_id:
        raise InvalidCommand(f"wallet id must be a lower-case hyphenated UUID ({canonical}), not {wallet_id!r}")


def handle(wallet: Wallet | None, command: Command) -> Wallet:
    """The one handler of every wallet command: returns the wallet with its new
    pending events, or raises a Rejected subclass before changing anything."""
    meta = command.meta
    if isinstance(command, OpenWallet):
        if wallet is not None:
            raise AggregateAlreadyExists(f"wallet {meta.aggregate_id} is already open")
        check_wallet_id(meta.aggregate_id)
        if not _CURRENCY.match(command.currency or ""):
            raise InvalidCommand(f"currency must be an ISO 4217 code like EUR, not {command.currency!r}")
        return Wallet(wallet_id=meta.aggregate_id, tenant_id=meta.tenant_id, currency=command.currency)
    if wallet is None:
        raise AggregateNotFound(f"wallet {meta.aggregate_id} does not exist")
    if isinstance(command, CreditFunds):
        wallet.credit(meta.command_id, command.amount, command.reference)
    elif isinstance(command, DebitFunds):
        wallet.debit(meta.command_id, command.amount, command.reference)
    elif isinstance(command, ReserveFunds):
        wallet.reserve(command.reservation_id, command.amount)
    elif isinstance(command, ReleaseFunds):
        wallet.release(command.reservation_id)
    elif isinstance(command, CaptureFunds):
        wallet.capture(command.reservation_id)
    elif isinstance(command, CloseWallet):
        wallet.close(command.reason)
    else:
        raise InvalidCommand(f"the wallet hub has no handler for {type(command).__name__}")
    return wallet
