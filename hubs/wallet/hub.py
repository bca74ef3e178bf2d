"""The Wallet hub's declaration to the shared machinery (processor, CLI)."""

from hubs.wallet.aggregate import Wallet, handle
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
from infra.hub import HubSpec

HUB = HubSpec(
    name="wallet",
    grpc_port=50056,
    ops_index=6,
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
        "close": CloseWallet,
    },
    aggregate_option="wallet",
)
