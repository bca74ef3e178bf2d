"""The Saga aggregate: one running (or finished) saga. It decides by asking the
pure reaction of its saga type's definition (`hubs.saga.definition.react`) which
events follow from a command, and records them; the @event methods only assign
state. Pure: no I/O — the processor sends the commands the events carry
(hubs/saga/dispatch.py).
The saga types are handed in (`handle(definitions, …)`, bound by `saga_hub`):
the concrete processes live above the hubs, in `sagas/`.

State kept: the input, the one pending request (kind, step, attempt, command id,
deadline), the steps done (in order), the steps settled during compensation
(compensated, or skipped by an operator), each step's result, the last error,
and per step the highest attempt requested and where its retry budget counts
from (the latter moved only by a reset to a step: a step that runs again stays
done, so its first run is still compensated)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType

from eventsourcing.domain import Aggregate, event

from hubs.saga.commands import (
    AbortSaga,
    CompensateFromHere,
    FailOverdueStep,
    RecordStepResult,
    ResetToStep,
    RetryStep,
    StartSaga,
)
from hubs.saga.definition import (
    ABORTED,
    ACTION,
    COMPENSATED,
    COMPENSATING,
    COMPENSATION,
    COMPLETED,
    FAILED,
    NEEDS_ATTENTION,
    RUNNING,
    WAITING,
    Emit,
    OperatorAbort,
    OperatorCompensate,
    OperatorReset,
    OperatorRetry,
    Overdue,
    Pending,
    SagaDefinition,
    SagaRuleBroken,
    SagaState,
    SagaView,
    Started,
    StepResult,
    compensation_queue,
    json_object,
    react,
    rerun_after_reset,
)
from schemas.contracts import AggregateAlreadyExists, AggregateNotFound, Command, InvalidCommand, Rejected

MAX_TEXT = 500


class SagaRejected(Rejected):
    """A saga rule refused the command; `rule` is the definition's rule name."""

    def __init__(self, rule: str, message: str):
        super().__init__(message)
        self._rule = rule

    @property
    def rule(self) -> str:
        return self._rule


class Saga(Aggregate):
    # A snapshot taken before these were kept restores without them: no attempts
    # counted yet, every budget from attempt 1 (what held before resets existed).
    # Always replaced, never changed in place.
    attempts = MappingProxyType({})
    counted_from = MappingProxyType({})
    trace_id = ""  # a saga started before traces were recorded (SagaStarted v1)

    @staticmethod
    def create_id(saga_id: str, **_: object) -> uuid.UUID:
        return uuid.UUID(saga_id)

    @event("SagaStarted")
    def __init__(self, saga_id: str, tenant_id: str, saga_type: str, input_json: str, correlation_id: str, trace_id: str = ""):
        self.saga_id = saga_id
        self.trace_id = trace_id
        self.tenant_id = tenant_id
        self.saga_type = saga_type
        self.input_json = input_json
        self.correlation_id = correlation_id
        self.status = RUNNING
        self.pending: dict | None = None
        self.done: list[str] = []
        self.settled: list[str] = []
        self.results: dict[str, str] = {}
        self.error = ""
        self.attempts = {}
        self.counted_from = {}

    # -- deciding -------------------------------------------------------------

    def state(self, definition: SagaDefinition) -> SagaState:
        view = SagaView(
            saga_id=self.saga_id,
            tenant_id=self.tenant_id,
            saga_type=self.saga_type,
            correlation_id=self.correlation_id,
            input=json.loads(self.input_json),
            results={k: json_object(v) for k, v in self.results.items()},
        )
        pending = Pending(**self.pending) if self.pending else None
        queue = tuple(s for s in compensation_queue(definition, self.done) if s not in self.settled)
        return SagaState(
            view=view,
            status=self.status,
            pending=pending,
            done=tuple(self.done),
            to_compensate=queue,
            attempts=dict(self.attempts),
            counted_from=dict(self.counted_from),
        )

    def react(self, definition: SagaDefinition, fact: object, now: datetime) -> None:
        try:
            emits = react(definition, self.state(definition), fact, now)
        except SagaRuleBroken as broken:
            raise SagaRejected(broken.rule, str(broken)) from None
        for emit in emits:
            self._record(emit)

    def _record(self, emit: Emit) -> None:
        method = {
            "StepRequested": self._step_requested,
            "StepSucceeded": self._step_succeeded,
            "StepFailed": self._step_failed,
            "CompensationRequested": self._compensation_requested,
            "Compensated": self._compensated,
            "CompensationFailed": self._compensation_failed,
            "SagaCompleted": self._completed,
            "SagaAborted": self._aborted,
            "OperatorActed": self._operator_acted,
        }[emit.event]
        method(**emit.payload)

    # -- evolving -------------------------------------------------------------

    def _pend(self, kind: str, step: str, attempt: int, command_id: str, deadline_at: datetime) -> None:
        self.pending = {"kind": kind, "step": step, "attempt": attempt, "command_id": command_id, "deadline_at": deadline_at}

    @event("StepRequested")
    def _step_requested(self, step, attempt, command_type, target_hub, command_json, command_id, deadline_at) -> None:
        self._pend(ACTION, step, attempt, command_id, deadline_at)
        self.attempts = {**self.attempts, step: max(attempt, self.attempts.get(step, 0))}
        self.status = WAITING

    @event("StepSucceeded")
    def _step_succeeded(self, step: str, attempt: int, detail: str, result_json: str) -> None:
        self.pending = None
        self.done = [*self.done, step] if step not in self.done else self.done  # a re-run after a reset
        self.results = {**self.results, step: result_json}
        self.status = RUNNING

    @event("StepFailed")
    def _step_failed(self, step: str, attempt: int, reason: str, will_retry: bool) -> None:
        self.pending = None
        self.error = f"{step}: {reason}"
        self.status = FAILED

    @event("CompensationRequested")
    def _compensation_requested(self, step, attempt, command_type, target_hub, command_json, command_id, deadline_at) -> None:
        self._pend(COMPENSATION, step, attempt, command_id, deadline_at)
        self.status = COMPENSATING

    @event("Compensated")
    def _compensated(self, step: str, attempt: int, detail: str) -> None:
        self.pending = None
        self.settled = [*self.settled, step]

    @event("CompensationFailed")
    def _compensation_failed(self, step: str, attempt: int, reason: str, will_retry: bool) -> None:
        self.error = f"{step} (compensation): {reason}"
        if will_retry:
            self.pending = None
        else:
            self.status = NEEDS_ATTENTION  # the exhausted request stays pending: retry or skip it

    @event("SagaCompleted")
    def _completed(self) -> None:
        self.pending = None
        self.status = COMPLETED

    @event("SagaAborted")
    def _aborted(self, reason: str, compensated: bool) -> None:
        self.pending = None
        self.status = COMPENSATED if compensated else ABORTED

    @event("OperatorActed")
    def _operator_acted(self, operator: str, action: str, reason: str, step: str) -> None:
        if action == "compensate" and self.pending and self.pending["kind"] == COMPENSATION:
            self.settled = [*self.settled, self.pending["step"]]
        if action in ("compensate", "abort"):
            self.pending = None
        if action == "reset":  # the StepRequested recorded with it pends the step again
            rerun = rerun_after_reset(self.done, self.pending["step"], step)
            self.counted_from = {**self.counted_from, **{s: self.attempts.get(s, 0) + 1 for s in rerun}}
            self.pending = None


def check_saga_id(saga_id: str) -> None:
    try:
        canonical = str(uuid.UUID(saga_id))
    except (ValueError, TypeError, AttributeError):
        raise InvalidCommand(f"saga id must be a UUID, not {saga_id!r}") from None
    if canonical != saga_id:
        raise InvalidCommand(f"saga id must be a lower-case hyphenated UUID ({canonical}), not {saga_id!r}")


def check_text(value: str, name: str, required: bool = True) -> None:
    if not isinstance(value, str) or len(value) > MAX_TEXT or (required and not value.strip()):
        raise InvalidCommand(f"{name} must be {'1' if required else '0'} to {MAX_TEXT} characters")


def check_input(definitions: Mapping[str, SagaDefinition], saga_type: str, input_json: str) -> None:
    if saga_type not in definitions:
        raise InvalidCommand(f"unknown saga type {saga_type!r}; known: {', '.join(sorted(definitions))}")
    try:
        value = json.loads(input_json)
    except (TypeError, ValueError):
        raise InvalidCommand("input_json must be a JSON object") from None
    if not isinstance(value, dict):
        raise InvalidCommand("input_json must be a JSON object")


def handle(definitions: Mapping[str, SagaDefinition], saga: Saga | None, command: Command) -> Saga:
    """The one handler of every saga command: returns the saga with its new
    pending events, or raises a Rejected subclass before changing anything.
    `definitions` are the saga types by name (`sagas.registry.DEFINITIONS`)."""
    meta = command.meta
    now = meta.issued_at
    if isinstance(command, StartSaga):
        if saga is not None:
            raise AggregateAlreadyExists(f"saga {meta.aggregate_id} already exists")
        check_saga_id(meta.aggregate_id)
        check_input(definitions, command.saga_type, command.input_json)
        saga = Saga(
            saga_id=meta.aggregate_id,
            tenant_id=meta.tenant_id,
            saga_type=command.saga_type,
            input_json=command.input_json,
            correlation_id=meta.correlation_id,
            trace_id=command.trace_id,
        )
        saga.react(definitions[command.saga_type], Started(), now)
        return saga
    if saga is None:
        raise AggregateNotFound(f"saga {meta.aggregate_id} does not exist")
    definition = definitions.get(saga.saga_type)
    if definition is None:
        raise InvalidCommand(f"saga type {saga.saga_type!r} is not run by this installation")
    if isinstance(command, RecordStepResult):
        check_text(command.detail, "detail", required=False)
        saga.react(
            definition, StepResult(command.step, command.attempt, command.succeeded, command.detail, command.result_json), now
        )
    elif isinstance(command, FailOverdueStep):
        saga.react(definition, Overdue(command.step, command.attempt), now)
    elif isinstance(command, RetryStep | CompensateFromHere | AbortSaga | ResetToStep):
        check_text(command.operator, "operator")
        check_text(command.reason, "reason")
        if isinstance(command, RetryStep):
            saga.react(definition, OperatorRetry(command.operator, command.step, command.reason), now)
        elif isinstance(command, ResetToStep):
            check_text(command.step, "step")
            saga.react(definition, OperatorReset(command.operator, command.step, command.reason), now)
        elif isinstance(command, CompensateFromHere):
            saga.react(definition, OperatorCompensate(command.operator, command.reason), now)
        else:
            saga.react(definition, OperatorAbort(command.operator, command.reason), now)
    else:
        raise InvalidCommand(f"the saga hub has no handler for {type(command).__name__}")
    return saga
