"""The Wallet hub's declaration to the shared machinery (processor, CLI)."""

from infra.hub import HubSpec

from hubs.wallet.aggregate import Wallet, handle
from hubs.wallet.commands import (
    COMMANDS,
    CaptureFunds,
    CreditFunds,
    DebitFunds,
    OpenWallet,
    ReleaseFunds,
    ReserveFunds,
)

HUB = HubSpec(
    name="wallet",
    aggregate=Wallet,
    commands=COMMANDS,
    handle=handle,
    cli_verbs={
        "open": OpenWallet,
        "credit": CreditFunds,
        "debit": DebitFunds,
        "reserve": ReserveFunds,
        "release": ReleaseFunds,
        "capture": CaptureFunds,
    },
    aggregate_option="wallet",
)
