"""The Tenant hub's declaration to the shared machinery (processor, CLI)."""

from hubs.tenant.aggregate import Tenant, handle
from hubs.tenant.commands import (
    COMMANDS,
    AcceptInvitation,
    ChangeMemberRole,
    CreateTenant,
    InviteMember,
    RemoveMember,
)
from infra.hub import HubSpec

HUB = HubSpec(
    name="tenant",
    aggregate=Tenant,
    commands=COMMANDS,
    handle=handle,
    cli_verbs={
        "create": CreateTenant,
        "invite": InviteMember,
        "accept": AcceptInvitation,
        "change-role": ChangeMemberRole,
        "remove": RemoveMember,
    },
    aggregate_option="tenant",
    aggregate_is_tenant=True,
)
