"""Saga commands. The aggregate id is the saga id (a lower-case UUID); the tenant
is the tenant the saga concerns (for onboarding, the new tenant)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from schemas.contracts import Command


@dataclass(frozen=True)
class SagaCommand(Command):
    hub: ClassVar[str] = "saga"


@dataclass(frozen=True)
class StartSaga(SagaCommand):
    saga_type: str
    input_json: str
    trace_id: str = ""


@dataclass(frozen=True)
class RecordStepResult(SagaCommand):
    """The target hub's (or spoke's) answer to a step's (or a compensation's)
    command, as the Saga hub reads it from what was sent back (hubs/saga/dispatch.py)."""

    step: str
    attempt: int
    succeeded: bool
    detail: str
    result_json: str = "{}"


@dataclass(frozen=True)
class FailOverdueStep(SagaCommand):
    step: str
    attempt: int


@dataclass(frozen=True)
class RetryStep(SagaCommand):
    step: str
    operator: str
    reason: str


@dataclass(frozen=True)
class ResetToStep(SagaCommand):
    """Run the saga again from `step` (one that succeeded, or the waiting one)."""

    step: str
    operator: str
    reason: str


@dataclass(frozen=True)
class CompensateFromHere(SagaCommand):
    operator: str
    reason: str


@dataclass(frozen=True)
class AbortSaga(SagaCommand):
    operator: str
    reason: str


COMMANDS = (StartSaga, RecordStepResult, FailOverdueStep, RetryStep, ResetToStep, CompensateFromHere, AbortSaga)
