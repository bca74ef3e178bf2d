"""The saga runtime's rules as given / when / then over `infra.hub.decide` (the
step the saga hub's processor runs), with the tenant onboarding definition: the
happy path, every compensation path, retries, deadlines and operator actions."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from hubs.saga.aggregate import Saga
from hubs.saga.commands import AbortSaga, CompensateFromHere, FailOverdueStep, RecordStepResult, RetryStep, StartSaga
from hubs.saga.definition import command_id
from hubs.saga.hub import saga_hub
from infra.hub import Decision, decide
from sagas.registry import DEFINITIONS
from sagas.tenant_onboarding.definition import TENANT_ONBOARDING
from schemas.contracts import CommandMeta

HUB = saga_hub(DEFINITIONS)
TENANT = "acme"
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
STEPS = [s.name for s in TENANT_ONBOARDING.steps]
INPUT = {
    "tenant_id": TENANT,
    "name": "Acme",
    "owner_id": "owner-1",
    "currency": "EUR",
    "default_app_id": "7d1c8d2e-0c1a-4b7e-9a55-1b2c3d4e5f60",
}


def names(decision: Decision) -> list[str]:
    return [type(e).__name__ for e in decision.events]


class Story:
    """One saga, driven through decide; `now` moves forward as the test says."""

    def __init__(self) -> None:
        self.saga_id = str(uuid.uuid4())
        self.saga: Saga | None = None
        self.now = T0
        self.log: list[str] = []

    def meta(self, tenant: str = TENANT) -> CommandMeta:
        cid = str(uuid.uuid4())
        return CommandMeta(cid, self.saga_id, tenant, "corr-1", cid, "test", issued_at=self.now)

    def run(self, command) -> Decision:
        decision = decide(HUB, self.saga, command)
        if decision.accepted:
            self.saga = decision.aggregate
            self.log += names(decision)
        return decision

    def start(self) -> Decision:
        return self.run(StartSaga(self.meta(), saga_type="tenant_onboarding", input_json=json.dumps(INPUT)))

    def answer(self, succeeded: bool = True, detail: str = "ok") -> Decision:
        pending = self.saga.pending
        return self.run(RecordStepResult(self.meta(), pending["step"], pending["attempt"], succeeded, detail, "{}"))

    def pending(self) -> tuple[str, str, int]:
        p = self.saga.pending
        return p["kind"], p["step"], p["attempt"]

    def requested(self, decision: Decision) -> list[tuple[str, str, int]]:
        return [
            (type(e).__name__, e.step, e.attempt)
            for e in decision.events
            if type(e).__name__ in ("StepRequested", "CompensationRequested")
        ]

    def succeed_until(self, step: str) -> None:
        """Answer success to every step before `step`."""
        while self.pending()[1] != step:
            assert self.answer().accepted

    def fail_attempts(self, n: int) -> list[Decision]:
        return [self.answer(False, "rejected: boom") for _ in range(n)]


def test_onboarding_happy_path_requests_every_step_in_order_and_completes():
    s = Story()
    first = s.start()
    assert names(first) == ["SagaStarted", "StepRequested"]
    seen = [s.pending()[1]]
    while s.saga.status != "completed":
        d = s.answer()
        assert d.accepted, d.rejection
        if s.saga.pending:
            seen.append(s.pending()[1])
    assert seen == STEPS
    assert s.log[-1] == "SagaCompleted"
    assert s.saga.done == STEPS


def test_step_requests_carry_the_target_command_with_a_deterministic_id_and_a_deadline():
    s = Story()
    request = s.start().events[-1]
    assert request.command_type == "poseidon.tenant.commands.CreateTenant"
    assert request.target_hub == "tenant"
    assert request.command_id == command_id(s.saga_id, "create_tenant", 1)
    record = json.loads(request.command_json)
    assert record["meta"]["command_id"] == request.command_id
    assert record["meta"]["aggregate_id"] == TENANT and record["meta"]["correlation_id"] == "corr-1"
    assert record["owner_id"] == "owner-1"
    assert request.deadline_at == T0 + timedelta(seconds=30)


@pytest.mark.parametrize("failing", STEPS)
def test_a_step_failing_every_attempt_compensates_the_done_steps_in_reverse_and_ends_compensated(failing):
    s = Story()
    s.start()
    s.succeed_until(failing)
    done = STEPS[: STEPS.index(failing)]
    failures = s.fail_attempts(3)
    assert [e.will_retry for d in failures for e in d.events if type(e).__name__ == "StepFailed"] == [True, True, False]
    compensated = []
    while s.saga.status == "compensating":
        compensated.append(s.pending()[1])
        assert s.pending()[0] == "compensation"
        assert s.answer().accepted
    assert compensated == list(reversed(done))
    assert s.saga.status == "compensated"
    assert s.log[-1] == "SagaAborted" and s.log.count("Compensated") == len(done)


def test_compensation_commands_are_the_business_reverse_of_each_step():
    s = Story()
    s.start()
    s.succeed_until("subscribe_default_app")
    last = s.fail_attempts(3)[-1]
    types = [json.loads(e.command_json) and e.command_type for e in last.events if type(e).__name__ == "CompensationRequested"]
    assert types == ["poseidon.config.commands.UnsetConfigValue"]
    seen = []
    while s.saga.status == "compensating":
        d = s.answer()
        seen += [e.command_type.rsplit(".", 1)[-1] for e in d.events if type(e).__name__ == "CompensationRequested"]
    assert seen == ["CloseWallet", "ArchiveTenant"]


def test_a_step_failing_once_then_succeeding_is_retried_not_compensated():
    s = Story()
    s.start()
    s.succeed_until("open_wallet")
    d = s.answer(False, "InsufficientFunds: transient")
    assert names(d) == ["StepFailed", "StepRequested"]
    assert s.requested(d) == [("StepRequested", "open_wallet", 2)]
    assert d.events[-1].command_id == command_id(s.saga_id, "open_wallet", 2)
    assert s.answer().accepted
    while s.saga.status != "completed":
        assert s.answer().accepted
    assert "CompensationRequested" not in s.log


def test_a_failing_compensation_leaves_the_saga_needing_operator_attention():
    s = Story()
    s.start()
    s.succeed_until("default_config")
    s.fail_attempts(3)
    assert s.pending() == ("compensation", "open_wallet", 1)
    d = s.fail_attempts(3)
    assert [e.will_retry for x in d for e in x.events if type(e).__name__ == "CompensationFailed"] == [True, True, False]
    assert s.saga.status == "needs_attention"
    assert "open_wallet (compensation)" in s.saga.error
    late = s.answer()
    assert late.rejection.rule == "StaleStepResult"


def test_an_operator_retry_of_a_stuck_compensation_records_who_and_why_and_goes_on():
    s = Story()
    s.start()
    s.succeed_until("default_config")
    s.fail_attempts(3)
    s.fail_attempts(3)
    d = s.run(RetryStep(s.meta(), step="open_wallet", operator="op-7", reason="wallet fixed"))
    assert names(d) == ["OperatorActed", "CompensationRequested"]
    acted = d.events[0]
    assert (acted.operator, acted.action, acted.reason, acted.step) == ("op-7", "retry", "wallet fixed", "open_wallet")
    assert s.pending() == ("compensation", "open_wallet", 4)
    s.answer()
    assert s.pending() == ("compensation", "create_tenant", 1)
    s.answer()
    assert s.saga.status == "compensated"


def test_compensate_from_here_skips_the_stuck_compensation_and_compensates_the_earlier_steps():
    s = Story()
    s.start()
    s.succeed_until("default_config")
    s.fail_attempts(3)
    s.fail_attempts(3)
    d = s.run(CompensateFromHere(s.meta(), operator="op-7", reason="closed the wallet by hand"))
    assert names(d) == ["OperatorActed", "CompensationRequested"]
    assert d.events[0].action == "compensate"
    assert s.pending() == ("compensation", "create_tenant", 1)
    s.answer()
    assert s.saga.status == "compensated"


def test_compensate_from_here_while_a_step_waits_abandons_it_and_compensates_the_done_steps():
    s = Story()
    s.start()
    s.succeed_until("default_config")
    d = s.run(CompensateFromHere(s.meta(), operator="op-7", reason="customer cancelled"))
    assert s.requested(d) == [("CompensationRequested", "open_wallet", 1)]
    stale = s.run(RecordStepResult(s.meta(), "default_config", 1, True, "late", "{}"))
    assert stale.rejection.rule == "StaleStepResult"


def test_an_operator_abort_ends_the_saga_without_compensating():
    s = Story()
    s.start()
    s.succeed_until("open_wallet")
    d = s.run(AbortSaga(s.meta(), operator="op-7", reason="test tenant"))
    assert names(d) == ["OperatorActed", "SagaAborted"]
    assert d.events[1].compensated is False
    assert s.saga.status == "aborted"
    again = s.run(RetryStep(s.meta(), step="open_wallet", operator="op-7", reason="oops"))
    assert again.rejection.rule == "SagaFinished"


def test_operator_actions_need_an_operator_and_a_reason():
    s = Story()
    s.start()
    assert s.run(AbortSaga(s.meta(), operator="op-7", reason=" ")).rejection.rule == "InvalidCommand"
    assert s.run(AbortSaga(s.meta(), operator="", reason="why")).rejection.rule == "InvalidCommand"


def test_an_overdue_step_fails_only_after_its_deadline_and_is_then_retried():
    s = Story()
    s.start()
    early = s.run(FailOverdueStep(s.meta(), step="create_tenant", attempt=1))
    assert early.rejection.rule == "DeadlineNotReached"
    s.now = T0 + timedelta(seconds=31)
    d = s.run(FailOverdueStep(s.meta(), step="create_tenant", attempt=1))
    assert names(d) == ["StepFailed", "StepRequested"]
    assert "deadline" in d.events[0].reason
    assert d.events[1].deadline_at == s.now + timedelta(seconds=30)
    late = s.run(RecordStepResult(s.meta(), "create_tenant", 1, True, "late", "{}"))
    assert late.rejection.rule == "StaleStepResult"


def test_a_retry_after_an_unanswered_attempt_resends_its_command_id_and_after_a_refusal_a_new_one():
    s = Story()
    first = s.start().events[-1]
    s.now = T0 + timedelta(seconds=31)
    overdue = s.run(FailOverdueStep(s.meta(), step="create_tenant", attempt=1)).events[-1]
    # The first command may still be applied late: the same id gets its real outcome, never a second application.
    assert (overdue.attempt, overdue.command_id) == (2, first.command_id)
    assert json.loads(overdue.command_json)["meta"]["command_id"] == first.command_id
    refused = s.answer(False, "TenantIsArchived: no").events[-1]
    assert refused.attempt == 3 and refused.command_id not in (first.command_id, command_id(s.saga_id, "create_tenant", 2))
    assert refused.command_id == command_id(s.saga_id, "create_tenant", 3)


def test_a_compensation_retried_after_no_answer_resends_the_same_command_id():
    s = Story()
    s.start()
    s.answer()  # create_tenant done
    s.fail_attempts(3)  # open_wallet refused three times: compensate create_tenant
    first = s.saga.pending["command_id"]
    s.now = T0 + timedelta(seconds=31)
    again = s.run(FailOverdueStep(s.meta(), step="create_tenant", attempt=1)).events[-1]
    assert type(again).__name__ == "CompensationRequested" and again.command_id == first


def test_a_result_for_a_step_that_is_not_pending_is_refused_as_stale():
    s = Story()
    s.start()
    d = s.run(RecordStepResult(s.meta(), "open_wallet", 1, True, "", "{}"))
    assert d.rejection.rule == "StaleStepResult"


def test_a_finished_saga_refuses_further_results():
    s = Story()
    s.start()
    while s.saga.status != "completed":
        s.answer()
    d = s.run(RecordStepResult(s.meta(), "subscribe_default_app", 1, True, "", "{}"))
    assert d.rejection.rule == "SagaFinished"


def test_starting_needs_a_known_saga_type_a_json_object_and_a_canonical_uuid():
    s = Story()
    unknown = s.run(StartSaga(s.meta(), saga_type="nope", input_json="{}"))
    assert unknown.rejection.rule == "InvalidCommand" and "unknown saga type" in str(unknown.rejection)
    assert s.run(StartSaga(s.meta(), saga_type="tenant_onboarding", input_json="[]")).rejection.rule == "InvalidCommand"
    s.saga_id = s.saga_id.upper()
    assert s.start().rejection.rule == "InvalidCommand"


def test_a_saga_id_cannot_be_started_twice_nor_commanded_by_another_tenant():
    s = Story()
    s.start()
    assert s.start().rejection.rule == "AggregateAlreadyExists"
    other = s.run(AbortSaga(s.meta(tenant="other"), operator="op", reason="x"))
    assert other.rejection.rule == "TenantMismatch"


def test_the_saga_state_survives_a_snapshot_round_trip_mid_compensation():
    from infra.hub import SnapshotCodec

    s = Story()
    s.start()
    s.succeed_until("default_config")
    s.fail_attempts(3)
    codec = SnapshotCodec()
    s.saga, _ = codec.loads(codec.dumps(s.saga, ""))
    assert s.pending() == ("compensation", "open_wallet", 1)
    s.answer()
    s.answer()
    assert s.saga.status == "compensated"


def test_the_input_may_set_one_steps_deadline():
    s = Story()
    decision = s.run(
        StartSaga(s.meta(), saga_type="tenant_onboarding", input_json=json.dumps({**INPUT, "deadlines_s": {"create_tenant": 2}}))
    )
    assert decision.events[-1].deadline_at == T0 + timedelta(seconds=2)
    s.now = T0 + timedelta(seconds=3)
    assert s.run(FailOverdueStep(s.meta(), step="create_tenant", attempt=1)).accepted


def reset(s: Story, step: str, operator: str = "op-7", reason: str = "wallet hub fixed") -> Decision:
    from hubs.saga.commands import ResetToStep

    return s.run(ResetToStep(s.meta(), step=step, operator=operator, reason=reason))


def test_a_reset_to_a_done_step_records_who_and_why_and_runs_it_and_every_later_step_again_with_new_ids():
    s = Story()
    first = [s.start().events[-1]]
    while s.pending()[1] != "default_config":
        first.append(s.answer().events[-1])
    d = reset(s, "open_wallet")
    assert names(d) == ["OperatorActed", "StepRequested"]
    acted, again = d.events
    assert (acted.operator, acted.action, acted.reason, acted.step) == ("op-7", "reset", "wallet hub fixed", "open_wallet")
    assert (again.step, again.attempt) == ("open_wallet", 2)
    assert again.command_id == command_id(s.saga_id, "open_wallet", 2)
    assert again.command_id not in {r.command_id for r in first}
    assert s.saga.done == ["create_tenant", "open_wallet"]  # what the first run did stays to compensate
    # The abandoned request's late answer is stale; the steps after the reset one run again, each on a new attempt.
    assert s.run(RecordStepResult(s.meta(), "default_config", 1, True, "late", "{}")).rejection.rule == "StaleStepResult"
    reruns = []
    while s.saga.status != "completed":
        d = s.answer()
        assert d.accepted, d.rejection
        reruns += s.requested(d)
    assert reruns == [("StepRequested", "default_config", 2), ("StepRequested", "subscribe_default_app", 1)]
    assert s.saga.done == STEPS


def test_a_rerun_that_fails_after_a_reset_compensates_what_every_run_did_once_each():
    s = Story()
    s.start()
    s.succeed_until("subscribe_default_app")
    reset(s, "open_wallet")
    s.fail_attempts(3)  # open_wallet fails on its re-run: create_tenant, open_wallet and default_config were done
    compensated = []
    while s.saga.status == "compensating":
        compensated.append(s.pending()[1:])
        assert s.answer().accepted
    assert compensated == [("default_config", 1), ("open_wallet", 1), ("create_tenant", 1)]
    assert s.saga.status == "compensated"


def test_a_reset_to_the_waiting_step_requests_it_again_with_a_fresh_retry_budget():
    s = Story()
    s.start()
    s.succeed_until("open_wallet")
    s.fail_attempts(2)  # attempt 3 of 3 pending: one more failure would compensate
    d = reset(s, "open_wallet")
    assert s.requested(d) == [("StepRequested", "open_wallet", 4)]
    failures = s.fail_attempts(3)
    assert [e.will_retry for f in failures for e in f.events if type(e).__name__ == "StepFailed"] == [True, True, False]
    assert s.pending() == ("compensation", "create_tenant", 1)


def test_a_reset_is_refused_for_a_step_that_has_not_run_while_compensating_and_once_finished():
    s = Story()
    s.start()
    s.succeed_until("default_config")
    later = reset(s, "subscribe_default_app")
    assert later.rejection.rule == "NotARunStep" and "create_tenant, open_wallet, default_config" in str(later.rejection)
    assert reset(s, "no_such_step").rejection.rule == "NotARunStep"
    assert reset(s, "open_wallet", reason=" ").rejection.rule == "InvalidCommand"
    s.fail_attempts(3)  # → compensating open_wallet
    assert reset(s, "create_tenant").rejection.rule == "NothingToReset"
    s.answer()
    s.answer()
    assert s.saga.status == "compensated"
    assert reset(s, "create_tenant").rejection.rule == "SagaFinished"


def test_attempt_counts_survive_a_snapshot_and_a_saga_from_an_older_snapshot_is_not_reset():
    from infra.hub import SnapshotCodec

    s = Story()
    s.start()
    s.succeed_until("default_config")
    codec = SnapshotCodec()
    s.saga, _ = codec.loads(codec.dumps(s.saga, ""))
    assert reset(s, "create_tenant").events[-1].attempt == 2
    older = Story()
    older.start()
    older.succeed_until("open_wallet")
    for name in ("attempts", "counted_from"):  # what a snapshot taken before they were kept holds
        del older.saga.__dict__[name]
    older.saga, _ = codec.loads(codec.dumps(older.saga, ""))
    assert reset(older, "create_tenant").rejection.rule == "ResetUnavailable"
    assert older.answer().accepted and older.pending()[1:] == ("default_config", 1)  # it still runs on
