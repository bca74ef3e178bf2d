"""The Tenant aggregate: a workspace and its memberships. Decides (public verbs,
small named checks) and evolves (the @event methods only assign state). Pure: no I/O.

Who may do what: an actor who is a member of the tenant needs admin or owner to
invite, change roles or remove others, and owner to grant owner or to touch an
owner; any member may leave and any invitee may decline or accept their own
invitation. An actor who is not a member is a platform principal or an operator
whose authority was checked before the command was sent (the gRPC service does
that against the read store); the aggregate re-checks members here so a stale
read store can never let a demoted admin act."""

from __future__ import annotations

import re
import uuid

from eventsourcing.domain import Aggregate, event

from hubs.domain import (
    AggregateAlreadyExists,
    AggregateNotFound,
    Command,
    InvalidCommand,
    Rejected,
    TenantMismatch,
)
from hubs.tenant.commands import AcceptInvitation, ChangeMemberRole, CreateTenant, InviteMember, RemoveMember

ROLES = ("viewer", "agent", "admin", "owner")
"""Weakest first; the same order as infra.security.ROLES, which reads the projected roles."""
OWNER, ADMIN = "owner", "admin"
MAX_NAME = 200
MAX_PRINCIPAL_ID = 200
RESERVED_TENANT_IDS = frozenset({"platform", "system", "global"})
TENANT_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
"""A slug: lower-case letters, digits and inner hyphens, 1..63 characters (a DNS
label). A lower-case hyphenated UUID is one too."""
# Fixed forever: tenant ids are slugs, the aggregate machinery wants UUIDs.
TENANT_NAMESPACE = uuid.UUID("5b0e4c1e-7f64-4d38-9a8e-0c6d1f3a2b71")


class AlreadyMember(Rejected):
    pass


class AlreadyInvited(Rejected):
    pass


class NoInvitation(Rejected):
    pass


class NotAMember(Rejected):
    pass


class RoleUnchanged(Rejected):
    pass


class LastOwnerRequired(Rejected):
    pass


class InsufficientRole(Rejected):
    pass


class Tenant(Aggregate):
    @staticmethod
    def create_id(tenant_id: str, **_: object) -> uuid.UUID:
        return uuid.uuid5(TENANT_NAMESPACE, tenant_id)

    @classmethod
    def create(cls, tenant_id: str, name: str, owner_id: str) -> Tenant:
        check_tenant_id(tenant_id)
        check_name(name)
        check_principal_id(owner_id, "owner_id")
        tenant = cls(tenant_id=tenant_id, name=name)
        tenant._member_joined(owner_id, OWNER)
        return tenant

    @event("TenantCreated")
    def __init__(self, tenant_id: str, name: str):
        self.tenant_id = tenant_id
        self.name = name
        self.members: dict[str, str] = {}
        self.invitations: dict[str, str] = {}

    @property
    def owners(self) -> list[str]:
        return [p for p, role in self.members.items() if role == OWNER]

    def invite(self, principal_id: str, role: str, actor: str) -> None:
        check_principal_id(principal_id)
        check_role(role)
        check_actor_may_manage(self, actor, role)
        if principal_id in self.members:
            raise AlreadyMember(f"{principal_id} is already a member ({self.members[principal_id]})")
        if principal_id in self.invitations:
            raise AlreadyInvited(f"{principal_id} already has a pending invitation ({self.invitations[principal_id]})")
        self._member_invited(principal_id, role)

    def accept(self, principal_id: str, actor: str) -> None:
        check_principal_id(principal_id)
        if principal_id in self.members:
            raise AlreadyMember(f"{principal_id} is already a member ({self.members[principal_id]})")
        role = self.invitations.get(principal_id)
        if role is None:
            raise NoInvitation(f"{principal_id} has no pending invitation to this tenant")
        if actor != principal_id and actor in self.members:
            raise InsufficientRole("only the invitee may accept an invitation")
        self._member_joined(principal_id, role)

    def change_role(self, principal_id: str, role: str, actor: str) -> None:
        check_principal_id(principal_id)
        check_role(role)
        check_actor_may_manage(self, actor)
        previous = check_is_member(self, principal_id)
        if previous == role:
            raise RoleUnchanged(f"{principal_id} is already {role}")
        check_actor_may_manage(self, actor, previous, role)
        if previous == OWNER:
            check_another_owner_remains(self, principal_id)
        self._member_role_changed(principal_id, role, previous)

    def remove(self, principal_id: str, actor: str) -> None:
        check_principal_id(principal_id)
        if actor != principal_id:  # leaving (or declining) needs no authority
            check_actor_may_manage(self, actor)
        if principal_id in self.members:
            role = self.members[principal_id]
            if actor != principal_id:
                check_actor_may_manage(self, actor, role)
            if role == OWNER:
                check_another_owner_remains(self, principal_id)
            self._member_removed(principal_id, role)
        elif principal_id in self.invitations:
            if actor != principal_id:
                check_actor_may_manage(self, actor, self.invitations[principal_id])
            self._invitation_withdrawn(principal_id)
        else:
            raise NotAMember(f"{principal_id} is neither a member of nor invited to this tenant")

    @event("MemberInvited")
    def _member_invited(self, principal_id: str, role: str) -> None:
        self.invitations[principal_id] = role

    @event("InvitationWithdrawn")
    def _invitation_withdrawn(self, principal_id: str) -> None:
        del self.invitations[principal_id]

    @event("MemberJoined")
    def _member_joined(self, principal_id: str, role: str) -> None:
        self.invitations.pop(principal_id, None)
        self.members[principal_id] = role

    @event("MemberRoleChanged")
    def _member_role_changed(self, principal_id: str, role: str, previous_role: str) -> None:
        self.members[principal_id] = role

    @event("MemberRemoved")
    def _member_removed(self, principal_id: str, role: str) -> None:
        del self.members[principal_id]


def check_tenant_id(tenant_id: str) -> None:
    # Only one spelling: the id is the Kafka key, the table key and what every
    # other hub's tenant_id refers to, so "Acme" and "acme" must not be two tenants.
    if not isinstance(tenant_id, str) or not TENANT_ID.match(tenant_id):
        raise InvalidCommand(
            f"tenant id must be a slug of 1 to 63 lower-case letters, digits and inner hyphens "
            f"(a lower-case UUID is fine), not {tenant_id!r}"
        )
    if tenant_id in RESERVED_TENANT_IDS:
        # Other hubs own platform-wide records under these ids (first-party apps,
        # global configuration, principals): nobody may become their member.
        raise InvalidCommand(f"tenant id {tenant_id!r} is reserved for the platform")


def check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise InvalidCommand(f"name must be 1 to {MAX_NAME} characters and not blank, not {name!r}")


def check_principal_id(principal_id: str, field: str = "principal_id") -> None:
    if (
        not isinstance(principal_id, str)
        or not principal_id
        or len(principal_id) > MAX_PRINCIPAL_ID
        or not principal_id.isprintable()
        or any(c.isspace() for c in principal_id)
    ):
        raise InvalidCommand(f"{field} must be 1 to {MAX_PRINCIPAL_ID} printable characters without spaces, not {principal_id!r}")


def check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidCommand(f"role must be one of {', '.join(ROLES)}, not {role!r}")


def check_is_member(tenant: Tenant, principal_id: str) -> str:
    try:
        return tenant.members[principal_id]
    except KeyError:
        raise NotAMember(f"{principal_id} is not a member of this tenant") from None


def check_another_owner_remains(tenant: Tenant, leaving_owner: str) -> None:
    if not [p for p in tenant.owners if p != leaving_owner]:
        raise LastOwnerRequired(f"{leaving_owner} is the last owner; make another member owner first")


def check_actor_may_manage(tenant: Tenant, actor: str, *roles_involved: str) -> None:
    """A member acting on others needs admin, and owner where an owner role is
    granted or taken away. Non-members were authorised before sending."""
    actor_role = tenant.members.get(actor)
    if actor_role is None:
        return
    needed = OWNER if OWNER in roles_involved else ADMIN
    if ROLES.index(actor_role) < ROLES.index(needed):
        raise InsufficientRole(f"{actor} is {actor_role}; this needs {needed}")


def handle(tenant: Tenant | None, command: Command) -> Tenant:
    """The one handler of every tenant command: returns the tenant with its new
    pending events, or raises a Rejected subclass before changing anything."""
    meta = command.meta
    if isinstance(command, CreateTenant):
        if meta.tenant_id != meta.aggregate_id:
            raise TenantMismatch(f"a tenant's aggregate id is its tenant id: {meta.aggregate_id!r} != {meta.tenant_id!r}")
        if tenant is not None:
            raise AggregateAlreadyExists(f"tenant {meta.aggregate_id} already exists")
        return Tenant.create(meta.aggregate_id, command.name, command.owner_id)
    if tenant is None:
        raise AggregateNotFound(f"tenant {meta.aggregate_id} does not exist")
    if isinstance(command, InviteMember):
        tenant.invite(command.principal_id, command.role, meta.actor)
    elif isinstance(command, AcceptInvitation):
        tenant.accept(command.principal_id, meta.actor)
    elif isinstance(command, ChangeMemberRole):
        tenant.change_role(command.principal_id, command.role, meta.actor)
    elif isinstance(command, RemoveMember):
        tenant.remove(command.principal_id, meta.actor)
    else:
        raise InvalidCommand(f"the tenant hub has no handler for {type(command).__name__}")
    return tenant
