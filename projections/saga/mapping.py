"""Pure mapping of saga events to read-store statements: the saga's row (state,
current step, error, pending attempt and deadline — what the driver's timer
reads; the message and contact ids of its input, which the dashboard finds it
by) and one timeline row per event. Every statement is idempotent (version
guard, keys), so a replayed event changes nothing."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from hubs.saga.definition import ABORTED, COMPENSATED, COMPENSATING, COMPLETED, FAILED, NEEDS_ATTENTION, RUNNING, WAITING
from infra.projection import Const, Insert, Keep, P, Statement, Update, When

# Phases: the saga row exists first; timeline rows depend on nothing; row updates
# run in event order (their version guard needs it).
STARTED, TIMELINE, UPDATED = 0, 1, 2

START_ROW = Insert(
    "sagas",
    {"saga_id": 1, "tenant_id": 2, "saga_type": 3, "state": Const("'running'", "running"), "current_step": Const("''", ""),
     "correlation_id": 4, "started_at": 5, "updated_at": 5, "version": 6, "error": Const("''", ""), "input_json": 7,
     "message_id": 8, "contact_id": 9, "trace_id": 10},
    key=("saga_id",),
)  # fmt: skip
START = START_ROW.sql
TIMELINE_ENTRY = Insert(
    "saga_events",
    {"saga_id": 1, "version": 2, "tenant_id": 3, "event_type": 4, "step": 5, "summary": 6, "payload_json": 7,
     "occurred_at": 8, "actor": 9, "event_id": 10},
    key=("saga_id", "version"),
    unique=(("event_id",),),
    any_conflict=True,
)  # fmt: skip
TIMELINE_ROW = TIMELINE_ENTRY.sql
# NULL keeps a column; $6 says whether the pending request (attempt, deadline) changes.
UPDATE_ROW = Update(
    "sagas",
    key={"saga_id": 1},
    set={"state": Keep(3), "current_step": Keep(4), "error": Keep(5),
         "pending_attempt": When(P(6, "boolean"), P(7, "integer")),
         "deadline_at": When(P(6, "boolean"), P(8, "timestamptz")), "version": 2, "updated_at": 9},
    guard=2,
)  # fmt: skip
UPDATE = UPDATE_ROW.sql


def summary(kind: str, r: dict) -> str:
    """A one-line account of the event; names and payloads stay out (the payload
    column has them, for masked display)."""
    if kind == "SagaStarted":
        return f"{r['saga_type']} started"
    if kind in ("StepRequested", "CompensationRequested"):
        what = "compensation " if kind == "CompensationRequested" else ""
        return f"{what}{r['command_type'].rsplit('.', 1)[-1]} sent to {r['target_hub']} (attempt {r['attempt']})"
    if kind == "StepSucceeded":
        return f"{r['step']} succeeded (attempt {r['attempt']})"
    if kind in ("StepFailed", "CompensationFailed"):
        then = "will retry" if r["will_retry"] else ("compensating" if kind == "StepFailed" else "needs operator attention")
        return f"{r['step']} {'compensation ' if kind == 'CompensationFailed' else ''}failed: {r['reason']} ({then})"
    if kind == "Compensated":
        return f"{r['step']} compensated"
    if kind == "SagaCompleted":
        return "completed"
    if kind == "SagaAborted":
        return f"{'compensated' if r['compensated'] else 'aborted'}: {r['reason']}"
    if kind == "OperatorActed":
        return f"{r['operator']} chose {r['action']}: {r['reason']}"
    return kind


SEARCHABLE_INPUT = ("message_id", "contact_id")
"""Input fields copied into indexed columns of the saga row (the inbound-message
saga's; '' for a saga whose input has none)."""
MAX_ID = 200


def searchable_ids(input_json: str) -> tuple[str, ...]:
    """The input's message and contact ids ('' when absent, not a string, or
    longer than any id: such a value is no id to find a saga by)."""
    try:
        value = json.loads(input_json)
    except (TypeError, ValueError):
        value = None
    found = value if isinstance(value, dict) else {}
    ids = []
    for name in SEARCHABLE_INPUT:
        v = found.get(name)
        text = v if isinstance(v, str) else ""
        ids.append(text if len(text) <= MAX_ID else "")
    return tuple(ids)


def _jsonable(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def apply(event_type: str, record: dict) -> list[Statement]:
    env = record["envelope"]
    saga_id = uuid.UUID(env["aggregate_id"])
    version, at, tenant = env["aggregate_version"], env["occurred_at"], env["tenant_id"]
    kind = event_type.rsplit(".", 1)[-1]
    payload = {k: _jsonable(v) for k, v in record.items() if k != "envelope"}
    r = record
    # state, current step, error, pending changes?, attempt, deadline
    if kind == "SagaStarted":
        change = (None, None, None, True, None, None)
    elif kind == "StepRequested":
        change = (WAITING, r["step"], None, True, r["attempt"], r["deadline_at"])
    elif kind == "CompensationRequested":
        change = (COMPENSATING, r["step"], None, True, r["attempt"], r["deadline_at"])
    elif kind == "StepSucceeded":
        change = (RUNNING, r["step"], "", True, None, None)
    elif kind == "StepFailed":
        change = (FAILED, r["step"], f"{r['step']}: {r['reason']}", True, None, None)
    elif kind == "Compensated":
        change = (COMPENSATING, r["step"], None, True, None, None)
    elif kind == "CompensationFailed":
        state = COMPENSATING if r["will_retry"] else NEEDS_ATTENTION
        change = (state, r["step"], f"{r['step']} (compensation): {r['reason']}", True, None, None)
    elif kind == "SagaCompleted":
        change = (COMPLETED, "", "", True, None, None)
    elif kind == "SagaAborted":
        change = (COMPENSATED if r["compensated"] else ABORTED, None, None, True, None, None)
    elif kind == "OperatorActed":
        change = (None, None, None, False, None, None)
    else:
        raise ValueError(f"the saga read model has no mapping for {event_type}")

    statements = []
    if kind == "SagaStarted":
        message_id, contact_id = searchable_ids(r["input_json"])
        row = (saga_id, tenant, r["saga_type"], r["correlation_id"], at, version, r["input_json"], message_id, contact_id,
               r.get("trace_id", ""))  # fmt: skip
        statements.append(START_ROW.statement(row, phase=STARTED))
    step = payload.get("step", "")
    timeline = (saga_id, version, tenant, kind, step, summary(kind, r)[:1000], json.dumps(payload, sort_keys=True), at,
                env["actor"], uuid.UUID(env["event_id"]))  # fmt: skip
    statements.append(TIMELINE_ENTRY.statement(timeline, phase=TIMELINE))
    state, current, error, touch, attempt, deadline = change
    statements.append(
        UPDATE_ROW.statement((saga_id, version, state, current, error, touch, attempt, deadline, at), phase=UPDATED)
    )
    return statements
