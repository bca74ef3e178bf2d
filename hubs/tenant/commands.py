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
    account (a Facebook page, …) to the command's tenant: its messages route there."""

    channel: str
    account_id: str


@dataclass(frozen=True)
class DisconnectChannel(TenantCommand):
    """Aggregate id: `channel_account_id(channel, account_id)`. The account's
    messages no longer route to the tenant; the tenant may connect it again."""

    reason: str = ""


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
)
