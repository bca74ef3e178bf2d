"""The Tenant hub's declaration to the shared machinery (processor, CLI)."""

from hubs.tenant.aggregate import TenantHubAggregate, handle
from hubs.tenant.commands import (
    COMMANDS,
    AcceptInvitation,
    ArchiveTenant,
    ChangeMemberRole,
    CreateTenant,
    InviteMember,
    RemoveMember,
)
from infra.hub import HubSpec

HUB = HubSpec(
    name="tenant",
    grpc_port=50053,
    ops_index=3,
    # The base of Tenant and ChannelAccount: the processor restores the concrete
    # class from each aggregate's snapshot (see hubs/tenant/aggregate.py).
    aggregate=TenantHubAggregate,
    commands=COMMANDS,
    handle=handle,
    # ConnectChannel / DisconnectChannel address a channel account, not the tenant,
    # which the CLI's tenant-is-the-aggregate option cannot say: gRPC TenantChannels.
    cli_verbs={
        "create": CreateTenant,
        "invite": InviteMember,
        "accept": AcceptInvitation,
        "change-role": ChangeMemberRole,
        "remove": RemoveMember,
        "archive": ArchiveTenant,
    },
    aggregate_option="tenant",
    aggregate_is_tenant=True,
)
