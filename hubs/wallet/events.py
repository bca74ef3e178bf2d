"""Wallet events other parts may depend on, by their Avro names (the contract is
the .avsc files under schemas/wallet/events)."""

WALLET_OPENED = "poseidon.wallet.WalletOpened"
FUNDS_CREDITED = "poseidon.wallet.FundsCredited"
FUNDS_DEBITED = "poseidon.wallet.FundsDebited"
FUNDS_RESERVED = "poseidon.wallet.FundsReserved"
RESERVATION_RELEASED = "poseidon.wallet.ReservationReleased"
RESERVATION_CAPTURED = "poseidon.wallet.ReservationCaptured"
WALLET_CLOSED = "poseidon.wallet.WalletClosed"
