"""Pure mapping of wallet events to read-store statements. Every statement is
idempotent on its own (guards on version and keys), so a replayed event changes
nothing; the projector's stored offsets make replays rare in the first place."""

from __future__ import annotations

import uuid

from infra.projection import Statement

OPEN = """INSERT INTO wallets (wallet_id, tenant_id, currency, balance, reserved, version, opened_at, updated_at)
VALUES ($1, $2, $3, 0, 0, $4, $5, $5) ON CONFLICT (wallet_id) DO NOTHING"""
LEDGER = """INSERT INTO ledger (wallet_id, version, tenant_id, kind, amount, balance_delta, reserved_delta,
    entry_id, reservation_id, reference, event_id, correlation_id, occurred_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING"""
SET_BALANCE = """UPDATE wallets SET balance = $2, version = $3, updated_at = $4 WHERE wallet_id = $1 AND version < $3"""
SET_RESERVED = """UPDATE wallets SET reserved = $2, version = $3, updated_at = $4 WHERE wallet_id = $1 AND version < $3"""
SET_BOTH = """UPDATE wallets SET balance = $2, reserved = $3, version = $4, updated_at = $5
WHERE wallet_id = $1 AND version < $4"""


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
        )  # fmt: skip

    if kind == "WalletOpened":
        return [Statement(OPEN, (wallet_id, env["tenant_id"], record["currency"], version, at))]
    if kind == "FundsCredited":
        a = record["amount"]
        return [
            ledger("credit", a, a, 0, entry_id=record["entry_id"], reference=record["reference"]),
            Statement(SET_BALANCE, (wallet_id, record["balance_after"], version, at)),
        ]
    if kind == "FundsDebited":
        a = record["amount"]
        return [
            ledger("debit", a, -a, 0, entry_id=record["entry_id"], reference=record["reference"]),
            Statement(SET_BALANCE, (wallet_id, record["balance_after"], version, at)),
        ]
    if kind == "FundsReserved":
        a = record["amount"]
        return [
            ledger("reserve", a, 0, a, reservation_id=record["reservation_id"]),
            Statement(SET_RESERVED, (wallet_id, record["reserved_after"], version, at)),
        ]
    if kind == "ReservationReleased":
        a = record["amount"]
        return [
            ledger("release", a, 0, -a, reservation_id=record["reservation_id"]),
            Statement(SET_RESERVED, (wallet_id, record["reserved_after"], version, at)),
        ]
    if kind == "ReservationCaptured":
        a = record["amount"]
        return [
            ledger("capture", a, -a, -a, reservation_id=record["reservation_id"]),
            Statement(SET_BOTH, (wallet_id, record["balance_after"], record["reserved_after"], version, at)),
        ]
    raise ValueError(f"the wallet read model has no mapping for {event_type}")
