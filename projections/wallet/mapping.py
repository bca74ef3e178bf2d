"""Pure mapping of wallet events to read-store statements. Every statement is
idempotent on its own (guards on version and keys), so a replayed event changes
nothing; the projector's stored offsets make replays rare in the first place."""

from __future__ import annotations

import uuid

from infra.projection import Const, Insert, Keep, Statement, Update

# Phases: the wallet row exists before anything updates it; ledger rows depend on
# nothing; wallet updates run in event order (their version guard needs it).
OPENED, LEDGERED, UPDATED = 0, 1, 2

OPEN_ROW = Insert(
    "wallets",
    {"wallet_id": 1, "tenant_id": 2, "currency": 3, "balance": Const("0", 0), "reserved": Const("0", 0), "version": 4,
     "opened_at": 5, "updated_at": 5},
    key=("wallet_id",),
)  # fmt: skip
LEDGER_ROW = Insert(
    "ledger",
    {"wallet_id": 1, "version": 2, "tenant_id": 3, "kind": 4, "amount": 5, "balance_delta": 6, "reserved_delta": 7,
     "entry_id": 8, "reservation_id": 9, "reference": 10, "event_id": 11, "correlation_id": 12, "occurred_at": 13},
    key=("wallet_id", "version"),
    unique=(("event_id",),),
    any_conflict=True,
)  # fmt: skip
# One statement for every movement (NULL keeps a column), so a batch of them is one executemany.
UPDATE_ROW = Update(
    "wallets", key={"wallet_id": 1}, set={"balance": Keep(2), "reserved": Keep(3), "version": 4, "updated_at": 5}, guard=4
)
CLOSE_ROW = Update("wallets", key={"wallet_id": 1}, set={"closed_at": 3, "version": 2, "updated_at": 3}, guard=2)
OPEN, LEDGER, UPDATE, CLOSE = OPEN_ROW.sql, LEDGER_ROW.sql, UPDATE_ROW.sql, CLOSE_ROW.sql


def apply(event_type: str, record: dict) -> list[Statement]:
    env = record["envelope"]
    wallet_id = uuid.UUID(env["aggregate_id"])
    version, at = env["aggregate_version"], env["occurred_at"]
    kind = event_type.rsplit(".", 1)[-1]

    def ledger(kind: str, amount: int, balance_delta: int, reserved_delta: int, **refs: str) -> Statement:
        return LEDGER_ROW.statement(
            (
                wallet_id, version, env["tenant_id"], kind, amount, balance_delta, reserved_delta,
                refs.get("entry_id", ""), refs.get("reservation_id", ""), refs.get("reference", ""),
                uuid.UUID(env["event_id"]), env["correlation_id"], at,
            ),
            phase=LEDGERED,
        )  # fmt: skip

    def update(balance: int | None, reserved: int | None) -> Statement:
        return UPDATE_ROW.statement((wallet_id, balance, reserved, version, at), UPDATED)

    if kind == "WalletOpened":
        return [OPEN_ROW.statement((wallet_id, env["tenant_id"], record["currency"], version, at), OPENED)]
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
        return [CLOSE_ROW.statement((wallet_id, version, at), UPDATED)]
    raise ValueError(f"the wallet read model has no mapping for {event_type}")
