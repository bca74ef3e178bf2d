"""Wallet read model: balances and ledger in the `wallet` schema."""

from pathlib import Path

from infra.projection import ProjectionSpec
from projections.wallet.mapping import apply

PROJECTION = ProjectionSpec(
    name="wallet",
    topics=("wallet.events",),
    migrations=Path(__file__).parent / "migrations",
    apply=apply,
    tables=("wallets", "ledger"),
)
