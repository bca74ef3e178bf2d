"""Wallet commands: what callers may ask of a wallet. Amounts are integers in the
currency's minor unit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from schemas.contracts import Command


@dataclass(frozen=True)
class WalletCommand(Command):
    hub: ClassVar[str] = "wallet"


@dataclass(frozen=True)
class OpenWallet(WalletCommand):
    currency: str


@dataclass(frozen=True)
class CreditFunds(WalletCommand):
    amount: int
    reference: str = ""


@dataclass(frozen=True)
class DebitFunds(WalletCommand):
    amount: int
    reference: str = ""


@dataclass(frozen=True)
class ReserveFunds(WalletCommand):
    reservation_id: str
    amount: int


@dataclass(frozen=True)
class ReleaseFunds(WalletCommand):
    reservation_id: str


@dataclass(frozen=True)
class CaptureFunds(WalletCommand):
    reservation_id: str


@dataclass(frozen=True)
class CloseWallet(WalletCommand):
    """Closes an empty wallet (balance and reserved 0) for good: it refuses every
    movement afterwards. The compensation of OpenWallet."""

    reason: str = ""


COMMANDS = (OpenWallet, CreditFunds, DebitFunds, ReserveFunds, ReleaseFunds, CaptureFunds, CloseWallet)
