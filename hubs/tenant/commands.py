"""Tenant commands: what callers may ask of a tenant. The aggregate id of every
membership command is the tenant id itself (meta.aggregate_id == meta.tenant_id);
the channel commands address one channel account (`channel_account_id`), which
the tenant of the command owns once it connected it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from schemas.contracts import Command


@dataclass(frozen=True)
class TenantCommand(Command):
    hub: ClassVar[str] = "tenant"


@dataclass(frozen=True)
class CreateTenant(TenantCommand):
    name: str
    owner_id: str


@dataclass(frozen=True)
class InviteMember(TenantCommand):
    principal_id: str
    role: str


@dataclass(frozen=True)
class AcceptInvitation(TenantCommand):
    principal_id: str


@dataclass(frozen=True)
class ChangeMemberRole(TenantCommand):
    principal_id: str
    role: str


@dataclass(frozen=True)
class RemoveMember(TenantCommand):
    principal_id: str


@dataclass(frozen=True)
class ArchiveTenant(TenantCommand):
    """Archives the tenant: its memberships are frozen (no invitation, join, role
    change or removal). The compensation of CreateTenant."""

    reason: str = ""


@dataclass(frozen=True)
class ConnectChannel(TenantCommand):
    """Aggregate id: `channel_account_id(channel, account_id)`. Connects the
    account (a Facebook page, …) to the command's tenant: its messages route there.
    `proof`: how the tenant proved control (`facebook_login`: the platform saw the
    page among those the logged-in Facebook user manages); `sealed_token`: the
    account's access token, sealed (infra/sealing.py) for this tenant and account —
    never a clear token. With proof on an account this tenant already holds, the
    token is rotated (and a needed reauthorization is done)."""

    channel: str
    account_id: str
    proof: str = ""
    sealed_token: str = ""


@dataclass(frozen=True)
class MoveChannel(TenantCommand):
    """Aggregate id: `channel_account_id(channel, account_id)`; meta.tenant_id is
    the account's current owner (the platform sends it once another tenant proved
    control). The account leaves its owner, disconnected and without its token,
    for `to_tenant_id`, which then connects it with its own proof and token."""

    to_tenant_id: str
    proof: str


@dataclass(frozen=True)
class RequireChannelReauthorization(TenantCommand):
    """Aggregate id: `channel_account_id(channel, account_id)`. The outside system
    refused the account's stored token (Graph error 190 and friends): the owner
    must prove control again (the connect flow) before it is used again."""

    reason: str = ""


@dataclass(frozen=True)
class DisconnectChannel(TenantCommand):
    """Aggregate id: `channel_account_id(channel, account_id)`. The account's
    messages no longer route to the tenant; the tenant may connect it again."""

    reason: str = ""


@dataclass(frozen=True)
class ConnectOdoo(TenantCommand):
    """Aggregate id: the tenant id. Sets (or rotates, by saving again) the tenant's own
    Odoo connection, which the Odoo spoke uses on every call for the tenant. Sent only
    after the platform authenticated against that Odoo with it (the Tenant gRPC
    service); `sealed_api_key` is sealed for this tenant (`hubs.tenant.erp`), never clear."""

    url: str
    database: str
    login: str
    sealed_api_key: str
    protocol: str = "xmlrpc"


def channel_account_id(channel: str, account_id: str) -> str:
    """The aggregate id of a channel account: readable in the log and as the Kafka
    key, and one per (channel, account) on the whole platform by construction."""
    return f"{channel}/{account_id}"


COMMANDS = (
    CreateTenant,
    InviteMember,
    AcceptInvitation,
    ChangeMemberRole,
    RemoveMember,
    ConnectChannel,
    DisconnectChannel,
    ArchiveTenant,
    MoveChannel,
    RequireChannelReauthorization,
    ConnectOdoo,
)
