"""The Identity hub's declaration to the shared machinery (processor, CLI). The
CLI offers only the revocations: every secret-bearing command is built by the
Identity gRPC service, which seals and hashes before anything reaches Kafka."""

from hubs.identity.aggregate import Principal, handle
from hubs.identity.commands import COMMANDS, RevokeAllRefreshFamilies, RevokeRefreshFamily
from infra.hub import HubSpec

HUB = HubSpec(
    name="identity",
    grpc_port=50051,
    ops_index=1,
    aggregate=Principal,
    commands=COMMANDS,
    handle=handle,
    cli_verbs={"revoke-session": RevokeRefreshFamily, "revoke-all": RevokeAllRefreshFamilies},
    aggregate_option="principal",
)
