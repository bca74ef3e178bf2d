"""The Tenant hub's aggregates: a workspace and its memberships (`Tenant`), and
the channel accounts tenants connect (`ChannelAccount`). Decide (public verbs,
small named checks) and evolve (the @event methods only assign state). Pure: no I/O.

Who may do what: an actor who is a member of the tenant needs admin or owner to
invite, change roles or remove others, and owner to grant owner or to touch an
owner; any member may leave and any invitee may decline or accept their own
invitation. An actor who is not a member is a platform principal or an operator
whose authority was checked before the command was sent (the gRPC service does
that against the read store); the aggregate re-checks members here so a stale
read store can never let a demoted admin act.

Channel accounts (the channel registry the Message Hub's router resolves a page
id with) are aggregates of their own, not part of the Tenant: a channel account
must be unique on the whole platform, and its id `"<channel>/<account_id>"` makes
it so by construction — the first tenant to connect an account owns that
aggregate, and `infra.hub.decide` refuses any other tenant's command on it
(TenantMismatch), connecting included. Both classes subclass `TenantHubAggregate`,
which is what `HubSpec.aggregate` declares; the processor restores each from its
own snapshot. The id spaces cannot meet: a tenant id is a slug, a channel
account id contains a `/`. An account stays with its tenant, connected or not,
until another tenant proves control of it: then the platform moves it
(`MoveChannel`, under the owner's tenant, so the move is recorded there:
ChannelMoved) and the new owner connects it with its proof and token (recorded
under the new owner: ChannelReconnected).

Proof and credentials: a Facebook page connected through the connect flow
carries `proof="facebook_login"` and its page token sealed (never clear; the
aggregate refuses anything that is not a sealed value); connecting again with
proof rotates the token. Which proof a command claims was checked before it was
sent (the Tenant gRPC service makes the Graph calls); the gRPC door refuses a
Facebook page without proof. A command without proof or token (platform
provisioning by operators, tests and benchmarks straight on the commands topic)
still connects an account, with no token of its own. An invalidated token puts
the account into "needs reauthorization" (ChannelReauthorizationRequired) until
its owner proves control again."""

from __future__ import annotations

import re
import uuid

from eventsourcing.domain import Aggregate, event

from hubs.tenant.commands import (
    AcceptInvitation,
    ArchiveTenant,
    ChangeMemberRole,
    ConnectChannel,
    ConnectOdoo,
    CreateTenant,
    DisconnectChannel,
    InviteMember,
    MoveChannel,
    RemoveMember,
    RequireChannelReauthorization,
    channel_account_id,
)
from schemas.contracts import (
    SEALED_PREFIX,
    AggregateAlreadyExists,
    AggregateNotFound,
    Command,
    InvalidCommand,
    Rejected,
    TenantMismatch,
)

ROLES = ("viewer", "agent", "admin", "owner")
"""Weakest first; the same order as infra.security.ROLES, which reads the projected roles."""
OWNER, ADMIN = "owner", "admin"
MAX_NAME = 200
MAX_PRINCIPAL_ID = 200
RESERVED_TENANT_IDS = frozenset({"platform", "system", "global"})
OPERATORS_TENANT = "operators"
"""The platform's operator team: its admins and owners operate the platform (the
saga dashboard). Only `PLATFORM_ACTOR` may create it, so no self-service sign-up
can claim the name first."""
PLATFORM_ACTOR = "platform"
TENANT_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
"""A slug: lower-case letters, digits and inner hyphens, 1..63 characters (a DNS
label). A lower-case hyphenated UUID is one too."""
# Fixed forever: tenant ids are slugs, the aggregate machinery wants UUIDs.
TENANT_NAMESPACE = uuid.UUID("5b0e4c1e-7f64-4d38-9a8e-0c6d1f3a2b71")
# uuid5(NAMESPACE_URL, "urn:poseidon:tenant:channel-account"). Fixed forever too:
# channel account UUIDs (eventsourcing ids) derive from it.
CHANNEL_ACCOUNT_NAMESPACE = uuid.UUID("23b32071-72f0-5454-902f-e642c20b703a")
CHANNEL = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
"""The chat platform the account is on, as ingress and conversations name it
(`facebook`, …): the Message hub's spelling of a channel."""
ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
"""A platform account id (Facebook page id, Botpress bot id): the same alphabet as
the App hub's page guards, so every connected account can be named in a guard,
and never a `/`, so a channel account id splits one way only."""
MAX_REASON = 200
MAX_SEALED = 4096
ODOO_PROTOCOLS = ("xmlrpc", "json2")
ODOO_URL = re.compile(r"^https?://[^\s/?#@]+(/[^\s?#]*[^\s/?#])?$")
"""No user:password@ part: a credential in the URL would be kept in clear in the events."""
MAX_ODOO_FIELD = 500
PROOFS = ("facebook_login",)
"""How a tenant may prove control of an account: `facebook_login` — the page was
among those the Facebook user who logged in (Facebook Login for Business) manages."""
PROOF_REQUIRED_CHANNELS = {"facebook": "facebook_login"}
"""Channels whose stored token needs a proof of control to be recorded, and that proof."""


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


class AlreadyConnected(Rejected):
    pass


class NotConnected(Rejected):
    pass


class TenantIsArchived(Rejected):
    pass


class ProofRequired(Rejected):
    """Connecting with a token, or taking an account from another tenant, needs proof of control."""


class ReauthorizationAlreadyRequired(Rejected):
    pass


class TenantHubAggregate(Aggregate):
    """Base of the Tenant hub's aggregates; every one sets its owning `tenant_id`."""


class Tenant(TenantHubAggregate):
    archived = False
    """Class default: tenants snapshotted before archiving existed were all active."""
    odoo: dict | None = None
    """The tenant's own Odoo connection (url, database, login, sealed_api_key, protocol); None: none saved."""

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
        check_not_archived(self)
        check_principal_id(principal_id)
        check_role(role)
        check_actor_may_manage(self, actor, role)
        if principal_id in self.members:
            raise AlreadyMember(f"{principal_id} is already a member ({self.members[principal_id]})")
        if principal_id in self.invitations:
            raise AlreadyInvited(f"{principal_id} already has a pending invitation ({self.invitations[principal_id]})")
        self._member_invited(principal_id, role)

    def accept(self, principal_id: str, actor: str) -> None:
        check_not_archived(self)
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
        check_not_archived(self)
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
        check_not_archived(self)
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

    def archive(self, reason: str) -> None:
        check_not_archived(self)
        check_reason(reason)
        self._tenant_archived(reason)

    def connect_odoo(self, url: str, database: str, login: str, sealed_api_key: str, protocol: str, actor: str) -> None:
        check_not_archived(self)
        check_actor_may_manage(self, actor)
        check_odoo_connection(url, database, login, sealed_api_key, protocol)
        self._odoo_connected(url, database, login, sealed_api_key, protocol)

    @event("OdooConnected")
    def _odoo_connected(self, url: str, database: str, login: str, sealed_api_key: str, protocol: str) -> None:
        self.odoo = {"url": url, "database": database, "login": login, "sealed_api_key": sealed_api_key, "protocol": protocol}

    @event("TenantArchived")
    def _tenant_archived(self, reason: str) -> None:
        self.archived = True

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


class ChannelAccount(TenantHubAggregate):
    # Class defaults: accounts snapshotted before proofs and tokens existed had neither.
    proof = ""
    sealed_token = ""
    needs_reauthorization = False

    @staticmethod
    def create_id(channel_account_id: str, **_: object) -> uuid.UUID:
        return uuid.uuid5(CHANNEL_ACCOUNT_NAMESPACE, channel_account_id)

    @event("ChannelConnected")
    def __init__(
        self, channel_account_id: str, tenant_id: str, channel: str, account_id: str, proof: str = "", sealed_token: str = ""
    ):
        self.tenant_id = tenant_id
        self.channel = channel
        self.account_id = account_id
        self.connected = True
        self.proof = proof
        self.sealed_token = sealed_token
        self.needs_reauthorization = False

    def reconnect(self, proof: str = "", sealed_token: str = "") -> None:
        # With proof, connecting again is how a token is rotated or reauthorized.
        if self.connected and not proof:
            raise AlreadyConnected(f"{self.channel} account {self.account_id} is already connected to this tenant")
        self._reconnected(self.channel, self.account_id, proof, sealed_token)

    def disconnect(self, reason: str) -> None:
        check_reason(reason)
        if not self.connected:
            raise NotConnected(f"{self.channel} account {self.account_id} is not connected")
        self._disconnected(self.channel, self.account_id, reason)

    def move(self, to_tenant_id: str, proof: str) -> None:
        check_proof_given(self.channel, proof)
        check_tenant_id(to_tenant_id)
        if to_tenant_id == self.tenant_id:
            raise InvalidCommand(f"{self.channel} account {self.account_id} already belongs to tenant {to_tenant_id}")
        self._moved(self.channel, self.account_id, self.tenant_id, to_tenant_id, proof)

    def require_reauthorization(self, reason: str) -> None:
        check_reason(reason)
        if not self.connected:
            raise NotConnected(f"{self.channel} account {self.account_id} is not connected")
        if self.needs_reauthorization:
            raise ReauthorizationAlreadyRequired(f"{self.channel} account {self.account_id} already awaits reauthorization")
        self._reauthorization_required(self.channel, self.account_id, reason)

    @event("ChannelReconnected")
    def _reconnected(self, channel: str, account_id: str, proof: str, sealed_token: str) -> None:
        self.connected = True
        if sealed_token:
            self.proof, self.sealed_token = proof, sealed_token
            self.needs_reauthorization = False

    @event("ChannelDisconnected")
    def _disconnected(self, channel: str, account_id: str, reason: str) -> None:
        self.connected = False

    @event("ChannelMoved")
    def _moved(self, channel: str, account_id: str, from_tenant_id: str, to_tenant_id: str, proof: str) -> None:
        # The old owner's token never serves the new owner: it connects with its own.
        self.tenant_id = to_tenant_id
        self.connected = False
        self.proof, self.sealed_token = "", ""
        self.needs_reauthorization = False

    @event("ChannelReauthorizationRequired")
    def _reauthorization_required(self, channel: str, account_id: str, reason: str) -> None:
        self.needs_reauthorization = True


def check_not_archived(tenant: Tenant) -> None:
    if tenant.archived:
        raise TenantIsArchived(f"tenant {tenant.tenant_id} is archived; its memberships can no longer change")


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


def check_actor_is_owner_or_platform(tenant: Tenant, actor: str) -> None:
    role = tenant.members.get(actor)
    if role is not None and role != OWNER:
        raise InsufficientRole(f"{actor} is {role}; archiving a tenant needs owner")


def check_odoo_connection(url: str, database: str, login: str, sealed_api_key: str, protocol: str) -> None:
    if protocol not in ODOO_PROTOCOLS:
        raise InvalidCommand(f"protocol must be one of {', '.join(ODOO_PROTOCOLS)}, not {str(protocol)[:40]!r}")
    if not isinstance(url, str) or not ODOO_URL.match(url) or len(url) > MAX_ODOO_FIELD:
        raise InvalidCommand("url must be an http(s) URL of the Odoo server, without a trailing slash, query or fragment")
    for name, value in (("database", database), ("login", login)):
        if not isinstance(value, str) or not value or len(value) > MAX_ODOO_FIELD or not value.isprintable():
            raise InvalidCommand(f"{name} must be 1 to {MAX_ODOO_FIELD} printable characters")
    if not isinstance(sealed_api_key, str) or not sealed_api_key.startswith(SEALED_PREFIX) or len(sealed_api_key) > MAX_SEALED:
        raise InvalidCommand(f"sealed_api_key must be a sealed value ({SEALED_PREFIX}…), never a clear key")


def check_channel(channel: str) -> None:
    if not isinstance(channel, str) or not CHANNEL.match(channel):
        raise InvalidCommand(
            f"channel must be a lower-case platform name like facebook (a-z, 0-9, _; at most 32), not {channel!r}"
        )


def check_account_id(account_id: str) -> None:
    if not isinstance(account_id, str) or not ACCOUNT_ID.match(account_id):
        raise InvalidCommand(f"account_id must be 1 to 128 of A-Z a-z 0-9 _ . : -, not {account_id!r}")


def check_channel_account_id(aggregate_id: str, channel: str, account_id: str) -> None:
    expected = channel_account_id(channel, account_id)
    if aggregate_id != expected:
        raise InvalidCommand(f"the aggregate id of {channel} account {account_id} is {expected!r}, not {aggregate_id!r}")


def check_proof_given(channel: str, proof: str) -> None:
    if not proof:
        needed = PROOF_REQUIRED_CHANNELS.get(channel, "a proof of control")
        raise ProofRequired(f"a {channel} account changes tenant only with proof of control ({needed})")
    check_proof(proof)


def check_proof(proof: str) -> None:
    if proof and proof not in PROOFS:
        raise InvalidCommand(f"proof must be one of {', '.join(PROOFS)} (or empty), not {proof[:40]!r}")


def check_credentials(channel: str, proof: str, sealed_token: str) -> None:
    """A token is recorded only sealed and only with the proof its channel needs;
    a proof always comes with the token it yielded."""
    check_proof(proof)
    if sealed_token and (not sealed_token.startswith(SEALED_PREFIX) or len(sealed_token) > MAX_SEALED):
        raise InvalidCommand(f"sealed_token must be a sealed value ({SEALED_PREFIX}…), never a clear token")
    needed = PROOF_REQUIRED_CHANNELS.get(channel)
    if sealed_token and needed is not None and proof != needed:
        raise ProofRequired(f"a {channel} token is recorded only with proof of control ({needed}): use the connect flow")
    if proof and not sealed_token:
        raise InvalidCommand("a proof of control comes with the sealed token it yielded")


def check_reason(reason: str) -> None:
    if not isinstance(reason, str) or len(reason) > MAX_REASON or not reason.isprintable():
        raise InvalidCommand(f"reason must be at most {MAX_REASON} printable characters")


def handle(aggregate: TenantHubAggregate | None, command: Command) -> TenantHubAggregate:
    """The one handler of every tenant hub command: returns the aggregate with its
    new pending events, or raises a Rejected subclass before changing anything."""
    if isinstance(command, ConnectChannel | DisconnectChannel | MoveChannel | RequireChannelReauthorization):
        return handle_channel(aggregate, command)
    if aggregate is not None and not isinstance(aggregate, Tenant):
        raise InvalidCommand(f"{command.meta.aggregate_id} is a channel account, not a tenant")
    return handle_tenant(aggregate, command)


def handle_channel(
    account: TenantHubAggregate | None,
    command: ConnectChannel | DisconnectChannel | MoveChannel | RequireChannelReauthorization,
) -> ChannelAccount:
    meta = command.meta
    if account is not None and not isinstance(account, ChannelAccount):
        raise InvalidCommand(f"{meta.aggregate_id} is a tenant, not a channel account")
    if isinstance(command, ConnectChannel):
        check_channel(command.channel)
        check_account_id(command.account_id)
        check_channel_account_id(meta.aggregate_id, command.channel, command.account_id)
        # The reserved ids own no channel: a message of such an account would route nowhere.
        check_tenant_id(meta.tenant_id)
        check_credentials(command.channel, command.proof, command.sealed_token)
        if account is None:
            return ChannelAccount(
                channel_account_id=meta.aggregate_id,
                tenant_id=meta.tenant_id,
                channel=command.channel,
                account_id=command.account_id,
                proof=command.proof,
                sealed_token=command.sealed_token,
            )
        account.reconnect(command.proof, command.sealed_token)
        return account
    if account is None:
        raise AggregateNotFound(f"no channel account {meta.aggregate_id[:200]!r} is connected to tenant {meta.tenant_id}")
    if isinstance(command, MoveChannel):
        account.move(command.to_tenant_id, command.proof)
    elif isinstance(command, RequireChannelReauthorization):
        account.require_reauthorization(command.reason)
    else:
        account.disconnect(command.reason)
    return account


def handle_tenant(tenant: Tenant | None, command: Command) -> Tenant:
    meta = command.meta
    if isinstance(command, CreateTenant):
        if meta.tenant_id != meta.aggregate_id:
            raise TenantMismatch(f"a tenant's aggregate id is its tenant id: {meta.aggregate_id!r} != {meta.tenant_id!r}")
        if tenant is not None:
            raise AggregateAlreadyExists(f"tenant {meta.aggregate_id} already exists")
        if meta.aggregate_id == OPERATORS_TENANT and meta.actor != PLATFORM_ACTOR:
            raise InvalidCommand(
                f"tenant {OPERATORS_TENANT!r} is the platform's operator team: only actor {PLATFORM_ACTOR!r} creates it"
            )
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
    elif isinstance(command, ConnectOdoo):
        tenant.connect_odoo(command.url, command.database, command.login, command.sealed_api_key, command.protocol, meta.actor)
    elif isinstance(command, ArchiveTenant):
        check_actor_is_owner_or_platform(tenant, meta.actor)
        tenant.archive(command.reason)
    else:
        raise InvalidCommand(f"the tenant hub has no handler for {type(command).__name__}")
    return tenant
