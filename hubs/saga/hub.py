"""The Saga hub's declaration to the shared machinery (processor, CLI)."""

from hubs.saga.aggregate import Saga, handle
from hubs.saga.commands import COMMANDS, AbortSaga, CompensateFromHere, FailOverdueStep, RetryStep, StartSaga
from infra.hub import HubSpec

HUB = HubSpec(
    name="saga",
    aggregate=Saga,
    commands=COMMANDS,
    handle=handle,
    cli_verbs={
        "start": StartSaga,
        "retry": RetryStep,
        "compensate": CompensateFromHere,
        "abort": AbortSaga,
        "fail-overdue": FailOverdueStep,
    },
    aggregate_option="saga",
)
