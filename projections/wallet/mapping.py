"""Pure mapping of wallet events to read-store statements. Every statement is
idempotent on its own (guards on version and keys), so a replayed event changes
nothing; the projector's stored offsets make replays rare in the first place."""

from __future__ import annotations

from infra.projection import Const, Insert, Keep, Statement, Update, uuid_text

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


# A rebuild runs this once per event of the log: ids stay text (uuid_text checks
# them), and the helper is a module function, not closures made per call.
def apply(event_type: str, record: dict) -> list[Statement]:
    env = record["envelope"]
    wallet_id = uuid_text(env["aggregate_id"])
    kind = event_type.rsplit(".", 1)[-1]
    if kind == "WalletOpened":
        args = (wallet_id, env["tenant_id"], record["currency"], env["aggregate_version"], env["occurred_at"])
        return [OPEN_ROW.statement(args, OPENED)]
    if kind in ("FundsCredited", "FundsDebited"):
        a, entry = record["amount"], (record["entry_id"], "", record["reference"])
        if kind == "FundsCredited":
            return _moved(wallet_id, env, "credit", a, a, 0, entry, balance=record["balance_after"])
        return _moved(wallet_id, env, "debit", a, -a, 0, entry, balance=record["balance_after"])
    if kind in ("FundsReserved", "ReservationReleased", "ReservationCaptured"):
        a, held = record["amount"], ("", record["reservation_id"], "")
        if kind == "FundsReserved":
            return _moved(wallet_id, env, "reserve", a, 0, a, held, reserved=record["reserved_after"])
        if kind == "ReservationReleased":
            return _moved(wallet_id, env, "release", a, 0, -a, held, reserved=record["reserved_after"])
        return _moved(
            wallet_id, env, "capture", a, -a, -a, held, balance=record["balance_after"], reserved=record["reserved_after"]
        )
    if kind == "WalletClosed":
        return [CLOSE_ROW.statement((wallet_id, env["aggregate_version"], env["occurred_at"]), UPDATED)]
    raise ValueError(f"the wallet read model has no mapping for {event_type}")


def _moved(
    wallet_id: str,
    env: dict,
    kind: str,
    amount: int,
    balance_delta: int,
    reserved_delta: int,
    refs: tuple[str, str, str],
    *,
    balance: int | None = None,
    reserved: int | None = None,
) -> list[Statement]:
    """A movement's ledger row (`refs`: entry id, reservation id, reference) and the
    wallet's new balance and/or reservation (None keeps the column)."""
    version, at = env["aggregate_version"], env["occurred_at"]
    entry_id, reservation_id, reference = refs
    return [
        LEDGER_ROW.statement(
            (
                wallet_id, version, env["tenant_id"], kind, amount, balance_delta, reserved_delta,
                entry_id, reservation_id, reference, uuid_text(env["event_id"]), env["correlation_id"], at,
            ),
            LEDGERED,
        ),
        UPDATE_ROW.statement((wallet_id, balance, reserved, version, at), UPDATED),
    ]  # fmt: skip
