"""Saga events other parts may depend on, by their Avro names (the contract is
the .avsc files under schemas/saga/events)."""

SAGA_STARTED = "poseidon.saga.SagaStarted"
STEP_REQUESTED = "poseidon.saga.StepRequested"
STEP_SUCCEEDED = "poseidon.saga.StepSucceeded"
STEP_FAILED = "poseidon.saga.StepFailed"
COMPENSATION_REQUESTED = "poseidon.saga.CompensationRequested"
COMPENSATED = "poseidon.saga.Compensated"
COMPENSATION_FAILED = "poseidon.saga.CompensationFailed"
SAGA_COMPLETED = "poseidon.saga.SagaCompleted"
SAGA_ABORTED = "poseidon.saga.SagaAborted"
OPERATOR_ACTED = "poseidon.saga.OperatorActed"
REQUESTS = frozenset({STEP_REQUESTED, COMPENSATION_REQUESTED})
"""Events that carry a command for the driver to send."""
