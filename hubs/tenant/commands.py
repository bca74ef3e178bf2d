"""Tenant commands: what callers may ask of a tenant. The aggregate id of every
tenant command is the tenant id itself (meta.aggregate_id == meta.tenant_id)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from hubs.domain import Command


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


COMMANDS = (CreateTenant, InviteMember, AcceptInvitation, ChangeMemberRole, RemoveMember)
