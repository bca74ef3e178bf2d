"""What a saga is, as pure data and one pure reaction: a `SagaDefinition` (ordered
`Step`s, each with the business command that does it, the one that compensates it,
its retry policy and its deadline) and `react(definition, state, fact)`, which
turns a saga's current state and one fact (started, a step's result, an overdue
step, an operator's action) into the saga events to record. No I/O: the Saga
aggregate (hubs/saga) calls `react` and records what it returns; its processor
sends the commands those events carry (hubs/saga/dispatch.py).

Rules the reaction holds:
* Retry before compensate: a failed step is requested again (attempt + 1) while
  attempts < `max_attempts`; only then are the steps done so far compensated, in
  reverse order, skipping steps without a compensation.
* A compensation is retried the same way; when its attempts are exhausted the saga
  stops in `needs_attention` (CompensationFailed with will_retry false) — never
  silently stuck: an operator retries it, skips it (compensate from here) or aborts.
* Deadlines: every request carries `deadline_at` = command time + `deadline_s`; a
  FailOverdueStep after it counts as a failed attempt (same retry policy). A
  saga's input may shorten or lengthen one step's deadline with
  `"deadlines_s": {"<step>": seconds}` (urgent sagas; tests).
* Command ids are deterministic — uuid5(saga id / step / attempt, plus
  "compensate" for compensations) — so a driver that re-sends after a crash gets
  the first outcome from the target hub's command-outcome table, never a second
  application. A retry after an attempt that got no answer (its deadline passed)
  re-sends that attempt's command id: the command may still be applied late, and
  a new id would do the thing twice (a second reservation refused as a
  duplicate, a release of what a late first release already released). A retry
  after an answered failure gets a new id, so it is really tried again.
* A result for anything but the pending (step, attempt) is stale and refused.
* A step with a `when` runs only if `when(view)` holds when its turn comes (ask
  the bot only for messages routed to the bot); a skipped step is not done, so it
  is never compensated. `when` reads the input and the results of earlier steps.
* A step's result (a hub's answer, a spoke's `result_json`) is in the view of
  every later step's action and every compensation.
* Reset to a step (an operator's, with a reason): while a step waits, the saga
  may run again from a step that succeeded (or the waiting one): it and the
  steps after it run again, in order; nothing is compensated first, and what
  the first run did stays done, so a later compensation undoes it (once each).
  Attempt numbers never repeat for a step (a run after a reset goes on from the
  step's highest attempt), so every re-run request has a new command id and its
  answer a new result id; the retry budget counts from the re-run's first attempt.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from schemas.contracts import Command, CommandMeta

SAGA_NAMESPACE = uuid.UUID("0f6c1f49-3f0e-5b7e-9a55-6a3c2d7e8b10")
"""Fixed forever: command ids and derived aggregate ids of every saga come from it."""

# Saga states (the read store's `sagas.state` uses the same words).
RUNNING, WAITING, FAILED, COMPENSATING = "running", "waiting", "failed", "compensating"
COMPENSATED, COMPLETED, ABORTED, NEEDS_ATTENTION = "compensated", "completed", "aborted", "needs_attention"
STATES = (RUNNING, WAITING, FAILED, COMPENSATING, COMPENSATED, COMPLETED, ABORTED, NEEDS_ATTENTION)
FINISHED = frozenset({COMPENSATED, COMPLETED, ABORTED})
ACTION, COMPENSATION = "action", "compensation"


@dataclass(frozen=True)
class SagaView:
    """What a step's action or compensation may read: the saga's identity, its
    input and the results of the steps done so far."""

    saga_id: str
    tenant_id: str
    saga_type: str
    correlation_id: str
    input: Mapping[str, Any]
    results: Mapping[str, Any] = field(default_factory=dict)

    def derived_id(self, name: str) -> str:
        """A stable UUID for an aggregate this saga creates (a wallet, …): the same
        on every attempt and every replay."""
        return str(uuid.uuid5(SAGA_NAMESPACE, f"{self.saga_id}/{name}"))

    def meta(self, aggregate_id: str, tenant_id: str | None = None) -> CommandMeta:
        """Meta for a step's command; `react` replaces its command id, causation and
        actor with the saga's deterministic ones."""
        return CommandMeta(
            command_id="",
            aggregate_id=aggregate_id,
            tenant_id=tenant_id if tenant_id is not None else self.tenant_id,
            correlation_id=self.correlation_id,
            causation_id=self.saga_id,
            actor=f"saga:{self.saga_type}",
        )


@dataclass(frozen=True)
class SpokeRequest(Command):
    """A step done by a spoke (ask the bot, send through Facebook, …) rather than
    by a hub: same deterministic id, deadline and retry policy as a hub command.
    The event names it `poseidon.spoke.<spoke>.<action>` with target `spoke.<spoke>`;
    it travels as a `SpokeRequested` on `spoke.<spoke>.requests` (hubs/saga/dispatch.py)."""

    spoke: str = ""
    action: str = ""
    payload_json: str = "{}"

    @property
    def hub(self) -> str:  # type: ignore[override]
        return f"spoke.{self.spoke}"

    def avro_name(self) -> str:  # type: ignore[override]
        return f"poseidon.spoke.{self.spoke}.{self.action}"


@dataclass(frozen=True)
class Step:
    name: str
    action: Callable[[SagaView], Command]
    """Builds the hub command (or SpokeRequest) that does the step."""
    compensation: Callable[[SagaView], Command | None] | None = None
    """None (or returning None): the step changes nothing that needs undoing, or
    cannot be undone (a reply already delivered) — say which in the definition."""
    max_attempts: int = 3
    deadline_s: float = 30.0
    when: Callable[[SagaView], bool] | None = None
    """None: always runs. Otherwise the step is skipped when this is false at its turn."""


@dataclass(frozen=True)
class Trigger:
    """What starts a saga by itself: an event of another hub. The saga driver
    consumes `topic`, and for each `event` record calls `start(record, facts)`;
    a mapping it returns is the new saga's input (None: this record starts none).
    `facts` are what the driver looked up for it (`lookup`), so `start` stays pure.
    The saga id is `saga_id(record)`: deterministic, so a record read twice starts
    one saga."""

    topic: str
    event: str
    saga_id: Callable[[Mapping[str, Any]], str]
    start: Callable[[Mapping[str, Any], Mapping[str, Any]], Mapping[str, Any] | None]
    lookup: Callable[[Any, Any, Mapping[str, Any]], Any] | None = None
    """async (reads, settings, record) -> facts; `reads` (sagas.reads.ReadStores) reaches
    other hubs' read models through their query modules."""
    facts: Callable[[Any, Mapping[str, Any]], Mapping[str, Any] | None] | None = None
    """(settings, record) -> the facts `start` needs, from the record itself and the
    settings, or None when the record does not carry them (an older writer's). With
    it, the hub that records `event` starts the saga in that event's transaction
    (hubs/saga/dispatch.Starts): no driver hop, no lookup. A record it leaves
    (None) goes to the driver and `lookup`, as before."""


@dataclass(frozen=True)
class SagaDefinition:
    name: str
    steps: Sequence[Step]
    trigger: Trigger | None = None

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"saga {self.name} has no step {name!r}")

    def index(self, name: str) -> int:
        return [s.name for s in self.steps].index(name)


@dataclass(frozen=True)
class Pending:
    """The one request a saga is waiting for."""

    kind: str  # ACTION or COMPENSATION
    step: str
    attempt: int
    command_id: str
    deadline_at: datetime


@dataclass(frozen=True)
class SagaState:
    """The part of a saga's state the reaction reads (the aggregate keeps it)."""

    view: SagaView
    status: str
    pending: Pending | None
    done: tuple[str, ...]
    """Steps that succeeded, in order."""
    to_compensate: tuple[str, ...]
    """Steps still to compensate, next first (set when compensation starts)."""
    attempts: Mapping[str, int] = field(default_factory=dict)
    """The highest attempt requested of each step (actions): a new run goes on from it."""
    counted_from: Mapping[str, int] = field(default_factory=dict)
    """The attempt a step's retry budget counts from (1 unless the saga was reset to or before it)."""


# Facts the reaction answers.
@dataclass(frozen=True)
class Started:
    pass


@dataclass(frozen=True)
class StepResult:
    step: str
    attempt: int
    succeeded: bool
    detail: str
    result_json: str = "{}"


@dataclass(frozen=True)
class Overdue:
    step: str
    attempt: int


@dataclass(frozen=True)
class OperatorRetry:
    operator: str
    step: str
    reason: str


@dataclass(frozen=True)
class OperatorCompensate:
    operator: str
    reason: str


@dataclass(frozen=True)
class OperatorAbort:
    operator: str
    reason: str


@dataclass(frozen=True)
class OperatorReset:
    operator: str
    step: str
    reason: str


@dataclass(frozen=True)
class Emit:
    """One saga event to record: its name (the @event name of the aggregate) and payload."""

    event: str
    payload: dict[str, Any]


class SagaRuleBroken(Exception):
    """The fact does not apply to the saga as it is; `rule` names why (the
    aggregate turns it into a Rejected subclass of the same name)."""

    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self.rule = rule


def command_id(saga_id: str, step: str, attempt: int, kind: str = ACTION) -> str:
    suffix = "" if kind == ACTION else "/compensate"
    return str(uuid.uuid5(SAGA_NAMESPACE, f"{saga_id}/{step}{suffix}/{attempt}"))


def record_of(command: Command) -> dict[str, Any]:
    """A command as a JSON-able record (issued_at as ISO text); `command_from_json` reverses it."""
    meta = dataclasses.asdict(command.meta)
    meta["issued_at"] = command.meta.issued_at.isoformat()
    return {"meta": meta, **command.payload()}


def command_json(command: Command) -> str:
    return json.dumps(record_of(command), sort_keys=True, separators=(",", ":"))


def request(
    definition: SagaDefinition,
    state: SagaState,
    kind: str,
    step_name: str,
    attempt: int,
    now: datetime,
    reuse_id: str | None = None,
) -> Emit | None:
    """The StepRequested / CompensationRequested event of one attempt, or None for
    a step without compensation. `reuse_id`: the command id of an unanswered
    earlier attempt, sent again instead of a new one."""
    step = definition.step(step_name)
    build = step.action if kind == ACTION else step.compensation
    command = build(state.view) if build is not None else None
    if command is None:
        return None
    cid = reuse_id or command_id(state.view.saga_id, step_name, attempt, kind)
    meta = dataclasses.replace(
        command.meta,
        command_id=cid,
        correlation_id=state.view.correlation_id,
        causation_id=state.view.saga_id,
        issued_at=now,
    )
    command = dataclasses.replace(command, meta=meta)
    deadline_s = deadline_of(step, state.view)
    return Emit(
        "StepRequested" if kind == ACTION else "CompensationRequested",
        {
            "step": step_name,
            "attempt": attempt,
            "command_type": command.avro_name(),
            "target_hub": command.hub,
            "command_json": command_json(command),
            "command_id": cid,
            "deadline_at": now + timedelta(seconds=deadline_s),
        },
    )


def deadline_of(step: Step, view: SagaView) -> float:
    overrides = view.input.get("deadlines_s")
    value = overrides.get(step.name) if isinstance(overrides, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 86_400:
        return float(value)
    return step.deadline_s


def _next_action(definition: SagaDefinition, state: SagaState, after: str | None, now: datetime) -> list[Emit]:
    """Request the first step after `after` (None: from the start) whose `when` holds."""
    start = 0 if after is None else definition.index(after) + 1
    for step in definition.steps[start:]:
        if step.when is None or step.when(state.view):
            emit = request(definition, state, ACTION, step.name, state.attempts.get(step.name, 0) + 1, now)
            assert emit is not None
            return [emit]
    return [Emit("SagaCompleted", {})]


def _compensate(definition: SagaDefinition, state: SagaState, queue: Sequence[str], now: datetime, reason: str) -> list[Emit]:
    """Request the first compensation in `queue` (next first) that has a command;
    when none is left the saga ends compensated."""
    for name in queue:
        emit = request(definition, state, COMPENSATION, name, 1, now)
        if emit is not None:
            return [emit]
    return [Emit("SagaAborted", {"reason": reason, "compensated": True})]


def compensation_queue(definition: SagaDefinition, done: Sequence[str]) -> tuple[str, ...]:
    """Done steps in reverse order: the order compensations run in."""
    order = [s.name for s in definition.steps]
    return tuple(sorted(done, key=order.index, reverse=True))


def _failure(
    definition: SagaDefinition, state: SagaState, pending: Pending, reason: str, now: datetime, unanswered: bool = False
) -> list[Emit]:
    step = definition.step(pending.step)
    first = state.counted_from.get(pending.step, 1) if pending.kind == ACTION else 1
    will_retry = pending.attempt - first + 1 < step.max_attempts
    reuse = pending.command_id if unanswered else None
    if pending.kind == ACTION:
        emits = [
            Emit("StepFailed", {"step": pending.step, "attempt": pending.attempt, "reason": reason, "will_retry": will_retry})
        ]
        if will_retry:
            retry = request(definition, state, ACTION, pending.step, pending.attempt + 1, now, reuse)
            assert retry is not None
            return [*emits, retry]
        queue = compensation_queue(definition, state.done)
        return [*emits, *_compensate(definition, state, queue, now, f"step {pending.step} failed: {reason}")]
    emits = [
        Emit("CompensationFailed", {"step": pending.step, "attempt": pending.attempt, "reason": reason, "will_retry": will_retry})
    ]
    if will_retry:
        retry = request(definition, state, COMPENSATION, pending.step, pending.attempt + 1, now, reuse)
        assert retry is not None
        emits.append(retry)
    return emits


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def check_pending(state: SagaState, step: str, attempt: int) -> Pending:
    pending = state.pending
    if state.status in FINISHED:
        raise SagaRuleBroken("SagaFinished", f"the saga is {state.status}")
    if state.status == NEEDS_ATTENTION:
        raise SagaRuleBroken("StaleStepResult", "the saga awaits an operator; a late answer changes nothing")
    if pending is None or pending.step != step or pending.attempt != attempt:
        waiting = f"{pending.step} attempt {pending.attempt}" if pending else "nothing"
        raise SagaRuleBroken("StaleStepResult", f"step {step} attempt {attempt} is not pending (waiting for {waiting})")
    return pending


def reset_steps(state: SagaState) -> tuple[str, ...]:
    """The steps a reset may go back to: those that succeeded, and the waiting one."""
    if state.pending is None or state.pending.kind != ACTION:
        return ()
    return tuple(dict.fromkeys((*state.done, state.pending.step)))


def rerun_after_reset(done: Sequence[str], pending_step: str, step: str) -> tuple[str, ...]:
    """The steps a reset to `step` may request again: it, the done steps after it,
    the waiting one (their retry budgets restart)."""
    tail = done[list(done).index(step) :] if step in done else ()
    return tuple(dict.fromkeys((step, *tail, pending_step)))


def check_not_finished(state: SagaState) -> None:
    if state.status in FINISHED:
        raise SagaRuleBroken("SagaFinished", f"the saga is {state.status}")


def react(definition: SagaDefinition, state: SagaState, fact: object, now: datetime) -> list[Emit]:
    """The saga events that follow from `fact` in `state`, in order; raises
    SagaRuleBroken when the fact does not apply. `now` is the command's time, so
    deadlines are reproducible."""
    if isinstance(fact, Started):
        return _next_action(definition, state, None, now)

    if isinstance(fact, StepResult):
        pending = check_pending(state, fact.step, fact.attempt)
        if not fact.succeeded:
            return _failure(definition, state, pending, fact.detail, now)
        if pending.kind == ACTION:
            ok = Emit(
                "StepSucceeded",
                {"step": fact.step, "attempt": fact.attempt, "detail": fact.detail, "result_json": fact.result_json},
            )
            result = json_object(fact.result_json)
            view = dataclasses.replace(state.view, results={**state.view.results, fact.step: result})
            moved = dataclasses.replace(state, view=view, done=tuple(dict.fromkeys((*state.done, fact.step))))
            return [ok, *_next_action(definition, moved, fact.step, now)]
        ok = Emit("Compensated", {"step": fact.step, "attempt": fact.attempt, "detail": fact.detail})
        rest = tuple(s for s in state.to_compensate if s != fact.step)
        return [ok, *_compensate(definition, state, rest, now, "compensated after a failed step")]

    if isinstance(fact, Overdue):
        pending = check_pending(state, fact.step, fact.attempt)
        if now < pending.deadline_at:
            raise SagaRuleBroken("DeadlineNotReached", f"step {fact.step} is due at {pending.deadline_at.isoformat()}")
        seconds = deadline_of(definition.step(fact.step), state.view)
        return _failure(definition, state, pending, f"no answer within {seconds:g}s (deadline passed)", now, unanswered=True)

    if isinstance(fact, OperatorRetry):
        check_not_finished(state)
        pending = state.pending
        if pending is None or pending.step != fact.step:
            raise SagaRuleBroken("NothingToRetry", f"step {fact.step} is not the saga's current step")
        acted = Emit("OperatorActed", {"operator": fact.operator, "action": "retry", "reason": fact.reason, "step": fact.step})
        again = request(definition, state, pending.kind, pending.step, pending.attempt + 1, now)
        assert again is not None
        return [acted, again]

    if isinstance(fact, OperatorReset):
        check_not_finished(state)
        pending = state.pending
        if pending is None or pending.kind != ACTION:
            raise SagaRuleBroken("NothingToReset", "only a saga waiting on a step may be reset (not while it compensates)")
        if fact.step != pending.step and fact.step not in state.done:
            raise SagaRuleBroken(
                "NotARunStep", f"step {fact.step} neither succeeded nor waits: reset to one of {', '.join(reset_steps(state))}"
            )
        if any(state.attempts.get(s, 0) < 1 for s in rerun_after_reset(state.done, pending.step, fact.step)):
            # Restored from a snapshot older than attempt counting: a re-run could
            # reuse an answered command id and be answered with the first outcome.
            raise SagaRuleBroken("ResetUnavailable", "this saga's attempts were not counted: retry, compensate or abort it")
        acted = Emit("OperatorActed", {"operator": fact.operator, "action": "reset", "reason": fact.reason, "step": fact.step})
        again = request(definition, state, ACTION, fact.step, state.attempts.get(fact.step, 0) + 1, now)
        assert again is not None
        return [acted, again]

    if isinstance(fact, OperatorCompensate):
        check_not_finished(state)
        step = state.pending.step if state.pending else ""
        acted = Emit("OperatorActed", {"operator": fact.operator, "action": "compensate", "reason": fact.reason, "step": step})
        if state.pending is not None and state.pending.kind == COMPENSATION:
            # Compensate from here: give up on the stuck compensation, go on with the earlier ones.
            queue = tuple(s for s in state.to_compensate if s != state.pending.step)
        else:
            # The pending action is abandoned: a late answer to it is refused as stale.
            queue = compensation_queue(definition, state.done)
        return [acted, *_compensate(definition, state, queue, now, f"compensated by {fact.operator}: {fact.reason}")]

    if isinstance(fact, OperatorAbort):
        check_not_finished(state)
        step = state.pending.step if state.pending else ""
        return [
            Emit("OperatorActed", {"operator": fact.operator, "action": "abort", "reason": fact.reason, "step": step}),
            Emit("SagaAborted", {"reason": f"aborted by {fact.operator}: {fact.reason}", "compensated": False}),
        ]

    raise TypeError(f"react has no rule for {type(fact).__name__}")
