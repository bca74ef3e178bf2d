"""The Config hub's declaration to the shared machinery (processor, CLI). No CLI
verbs: an entry's aggregate id is derived from scope and key, which the generic
command CLI cannot do; operators set values through the gRPC SetValue method."""

from hubs.config.aggregate import ConfigEntry, handle
from hubs.config.commands import COMMANDS
from infra.hub import HubSpec

HUB = HubSpec(
    name="config",
    grpc_port=50057,
    ops_index=7,
    aggregate=ConfigEntry,
    commands=COMMANDS,
    handle=handle,
    aggregate_option="entry",
)
