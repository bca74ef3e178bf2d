"""The App hub's declaration to the shared machinery (processor, CLI)."""

from hubs.app.aggregate import AppHubAggregate, handle
from hubs.app.commands import COMMANDS, SubscribeApp, UnsubscribeApp
from infra.hub import HubSpec

HUB = HubSpec(
    name="app",
    grpc_port=50054,
    ops_index=4,
    # The base of App and Subscription: the processor restores the concrete class
    # from each aggregate's snapshot (see hubs/app/aggregate.py).
    aggregate=AppHubAggregate,
    commands=COMMANDS,
    handle=handle,
    # RegisterApp and SetSubscriptionGuards take lists and a record, which the
    # generated CLI cannot express yet; they are sent with the CommandClient.
    cli_verbs={"subscribe": SubscribeApp, "unsubscribe": UnsubscribeApp},
    aggregate_option="subscription",
)
