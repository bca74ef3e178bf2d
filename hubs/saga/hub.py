"""The Saga hub's declaration to the shared machinery (processor, CLI). The saga
types it runs are handed in by the composition root (`poseidon.bootstrap`):
the processes themselves live above the hubs, in `sagas/`."""

from collections.abc import Collection, Mapping
from functools import partial

from hubs.saga.aggregate import Saga, handle
from hubs.saga.commands import COMMANDS, AbortSaga, CompensateFromHere, FailOverdueStep, ResetToStep, RetryStep, StartSaga
from hubs.saga.definition import SagaDefinition
from hubs.saga.dispatch import Outbox, translate
from infra.hub import HubSpec


def saga_hub(definitions: Mapping[str, SagaDefinition], hubs: Collection[str] = (), spokes: Collection[str] = ()) -> HubSpec:
    """The Saga hub running these saga types (by name), sending their steps' commands
    itself to these hubs and spokes (hubs/saga/dispatch.py); a step whose target is
    in neither is left to the saga driver, as every step was before."""
    return HubSpec(
        name="saga",
        grpc_port=50059,
        ops_index=9,
        aggregate=Saga,
        commands=COMMANDS,
        handle=partial(handle, dict(definitions)),
        cli_verbs={
            "start": StartSaga,
            "retry": RetryStep,
            "reset": ResetToStep,
            "compensate": CompensateFromHere,
            "abort": AbortSaga,
            "fail-overdue": FailOverdueStep,
        },
        aggregate_option="saga",
        outbox=Outbox(hubs, spokes) if hubs or spokes else None,
        translate=translate,
    )
