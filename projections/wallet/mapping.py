"""Pure mapping of wallet events to read-store statements. Every statement is
idempotent on its own (guards on version and keys), so a replayed event changes
nothing; the projector's stored offsets make replays rare in the first place."""

from __future__ import annotations

import uuid

from infra.projection import Statement

# Phases: the wallet row exists before anything updates it; ledger rows depend on
# nothing; wallet updates run in event order (their version guard needs it).
OPENED, LEDGERED, UPDATED = 0, 1, 2

OPEN = """INSERT INTO wallets (wallet_id, tenant_id, currency, balance, reserved, version, opened_at, updated_at)
VALUES ($1, $2, $3, 0, 0, $4, $5, $5) ON CONFLICT (wallet_id) DO NOTHING"""
LEDGER = """INSERT INTO ledger (wallet_id, version, tenant_id, kind, amount, balance_delta, reserved_delta,
    entry_id, reservation_id, reference, event_id, correlation_id, occurred_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING"""
# One statement for every movement (NULL keeps a column), so a batch of them is one executemany.
UPDATE = """UPDATE wallets SET balance = COALESCE($2, balance), reserved = COALESCE($3, reserved), version = $4,
    updated_at = $5 WHERE wallet_id = $1 AND version < $4"""

CLOSE = """UPDATE wallets SET closed_at = $3, version = $2, updated_at = $3 WHERE wallet_id = $1 AND version < $2"""


def apply(event_type: str, record: dict) -> list[Statement]:
    env = record["envelope"]
    wallet_id = uuid.UUID(env["aggregate_id"])
    version, at = env["aggregate_version"], env["occurred_at"]
    kind = event_type.rsplit(".", 1)[-1]

    def ledger(kind: str, amount: int, balance_delta: int, reserved_delta: int, **refs: str) -> Statement:
        return Statement(
            LEDGER,
            (
                wallet_id, version, env["tenant_id"], kind, amount, balance_delta, reserved_delta,
                refs.get("entry_id", ""), refs.get("reservation_id", ""), refs.get("reference", ""),
                uuid.UUID(env["event_id"]), env["correlation_id"], at,
            ),
            phase=LEDGERED,
        )  # fmt: skip

    def update(balance: int | None, reserved: int | None) -> Statement:
        return Statement(UPDATE, (wallet_id, balance, reserved, version, at), phase=UPDATED)

    if kind == "WalletOpened":
        return [Statement(OPEN, (wallet_id, env["tenant_id"], record["currency"], version, at), phase=OPENED)]
    if kind == "FundsCredited":
        a = record["amount"]
        return [
            ledger("credit", a, a, 0, entry_id=record["entry_id"], reference=record["reference"]),
            update(record["balance_after"], None),
        ]
    if kind == "FundsDebited":
        a = record["amount"]
        return [
            ledger("debit", a, -a, 0, entry_id=record["entry_id"], reference=record["reference"]),
            update(record["balance_after"], None),
        ]
    if kind == "FundsReserved":
        a = record["amount"]
        return [
            ledger("reserve", a, 0, a, reservation_id=record["reservation_id"]),
            update(None, record["reserved_after"]),
        ]
    if kind == "ReservationReleased":
        a = record["amount"]
        return [
            ledger("release", a, 0, -a, reservation_id=record["reservation_id"]),
            update(None, record["reserved_after"]),
        ]
    if kind == "ReservationCaptured":
        a = record["amount"]
        return [
            ledger("capture", a, -a, -a, reservation_id=record["reservation_id"]),
            update(record["balance_after"], record["reserved_after"]),
        ]
    if kind == "WalletClosed":
        return [Statement(CLOSE, (wallet_id, version, at), phase=UPDATED)]
    raise ValueError(f"the wallet read model has no mapping for {event_type}")
