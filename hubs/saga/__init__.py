"""The Saga hub: every saga's state, event-sourced (SagaStarted, StepRequested,
StepSucceeded, StepFailed, CompensationRequested, Compensated, CompensationFailed,
SagaCompleted, SagaAborted, OperatorActed), so any saga can be replayed and shown.
The aggregate decides with the pure saga definitions (sagas/); its processor sends
each step's command with the event that records it and reads the answers sent back
(hubs/saga/dispatch.py); the saga driver (sagas/driver.py) keeps the timers and
starts the sagas that start by themselves."""
