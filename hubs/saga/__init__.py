"""The Saga hub: every saga's state, event-sourced (SagaStarted, StepRequested,
StepSucceeded, StepFailed, CompensationRequested, Compensated, CompensationFailed,
SagaCompleted, SagaAborted, OperatorActed), so any saga can be replayed and shown.
The aggregate decides with the pure saga definitions (sagas/); the saga driver
(sagas/driver.py) does the I/O."""
