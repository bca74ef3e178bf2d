"""The User hub's declaration to the shared machinery (processor, CLI)."""

from hubs.user.aggregate import Profile, handle
from hubs.user.commands import COMMANDS, CreateProfile, RemovePreference, SetPreference, UpdateProfile
from infra.hub import HubSpec

HUB = HubSpec(
    name="user",
    grpc_port=50052,
    ops_index=2,
    aggregate=Profile,
    commands=COMMANDS,
    handle=handle,
    cli_verbs={
        "create": CreateProfile,
        "update": UpdateProfile,
        "set-preference": SetPreference,
        "remove-preference": RemovePreference,
    },
    aggregate_option="profile",
)
