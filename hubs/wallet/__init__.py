"""Wallet hub: per-tenant wallets in one currency, with a ledger of movements and
reservations that sagas capture or release."""
