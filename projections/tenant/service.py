"""Tenant gRPC service: queries over the tenant read store (TenantQuery), the
membership commands (TenantMembership) and the channel registry's commands
(TenantChannels) sent on the caller's behalf, each guarded by the caller's role
in the tenant it names (ResolveChannel: platform principals only). Parsing,
authorising and answering only; SQL lives in projections/tenant/queries.py,
rules in the aggregates.

Connecting a Facebook page is a two-step flow (Facebook Login for Business), not
ConnectChannel, which refuses Facebook pages (ProofRequired): StartFacebookConnect
answers the Login dialog URL with a sealed `state` (tenant, caller, redirect_uri,
expiry: nobody else can complete the flow, nor for another tenant, nor late);
CompleteFacebookConnect proves control through the composition root's PageControl
(the Facebook spoke's Graph calls under the spokes' one call policy; this layer may
not import the spokes), seals the page token for the tenant and page before it
enters any command, and connects (or moves, then connects) the page. The clear
token lives only in this call's memory."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

import grpc

from hubs.tenant.aggregate import (
    ACCOUNT_ID,
    CHANNEL,
    MAX_NAME,
    MAX_ODOO_FIELD,
    MAX_REASON,
    ODOO_PROTOCOLS,
    ODOO_URL,
    ROLES,
    TENANT_ID,
)
from hubs.tenant.commands import (
    AcceptInvitation,
    ChangeMemberRole,
    ConnectChannel,
    ConnectOdoo,
    CreateTenant,
    DisconnectChannel,
    InviteMember,
    MoveChannel,
    RemoveMember,
    channel_account_id,
)
from hubs.tenant.erp import ODOO_CHECK, ODOO_UNAVAILABLE, OdooRefused, OdooSettings, odoo_key_context
from hubs.tenant.proof import FACEBOOK_PAGE_CONTROL, RATE_LIMITED, UNAVAILABLE, ConnectRefused, page_token_context
from infra.arguments import required, tenant
from infra.command_client import CommandResult, new_meta
from infra.grpc_server import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    QueryService,
    ResourceExhausted,
    ServiceDeps,
    Unavailable,
    refusal,
    to_timestamp,
)
from infra.paging import decode_token, page_size, paginate
from infra.rest import Route, methods
from infra.sealing import Sealer, SealError, credential_keys_dir
from infra.security import PLATFORM_SCOPE, PermissionDenied, Principal, current_principal
from projections.tenant import PROJECTION, queries
from schemas.contracts import Command
from schemas.protos import tenant_pb2, tenant_pb2_grpc

COMMAND_TIMEOUT_S = 15.0
NEW_TENANT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:poseidon:tenant:new")
"""The id of a tenant created without one but with a command id: the same for a resend."""
PROJECTION_WAIT_S = 3.0
"""How long a command reply waits for the read store to show its effect, so the
caller's next query (and every role check) already sees it."""
CONNECT_STATE_TTL_S = 600
"""How long a started Facebook connect flow may be completed (Facebook's codes live 10 minutes too)."""
STATE_CONTEXT = "tenant/facebook-connect-state"
FACEBOOK_PROOF = "facebook_login"
MAX_REDIRECT_URI, MAX_CODE, MAX_STATE = 2000, 2048, 4096
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class TenantQueries(tenant_pb2_grpc.TenantQueryServicer):
    def __init__(self, deps: ServiceDeps):
        self.pool, self.authorizer = deps.pool, deps.authorizer

    async def GetTenant(self, request: tenant_pb2.GetTenantRequest, context: grpc.aio.ServicerContext) -> tenant_pb2.Tenant:
        tenant_id = tenant(request.tenant_id)
        await self.authorizer.require(tenant_id, "viewer")
        row = await queries.tenant(self.pool, tenant_id)
        if row is None:  # only a platform principal gets here for a tenant that does not exist
            raise NotFound(f"tenant {tenant_id} not found")
        return tenant_pb2.Tenant(
            tenant_id=row["tenant_id"],
            name=row["name"],
            version=row["version"],
            member_count=row["member_count"],
            created_at=to_timestamp(row["created_at"]),
            updated_at=to_timestamp(row["updated_at"]),
        )

    async def ListMembers(
        self, request: tenant_pb2.ListMembersRequest, context: grpc.aio.ServicerContext
    ) -> tenant_pb2.MemberPage:
        tenant_id = tenant(request.tenant_id)
        await self.authorizer.require(tenant_id, "viewer")
        size, after = page_size(request.page_size), decode_token(request.page_token)
        rows = await queries.members_page(self.pool, tenant_id, after, size + 1)
        page, token = paginate(rows, size, "principal_id")
        return tenant_pb2.MemberPage(
            members=[
                tenant_pb2.Member(principal_id=r["principal_id"], role=r["role"], joined_at=to_timestamp(r["joined_at"]))
                for r in page
            ],
            next_page_token=token,
        )

    async def GetMyRole(self, request: tenant_pb2.GetMyRoleRequest, context: grpc.aio.ServicerContext) -> tenant_pb2.MyRole:
        tenant_id = tenant(request.tenant_id)
        role = await self.authorizer.require(tenant_id, "viewer")
        caller = current_principal()
        return tenant_pb2.MyRole(tenant_id=tenant_id, principal_id=caller.id, role=role, platform=_is_platform(caller))

    async def ListMyTenants(
        self, request: tenant_pb2.ListMyTenantsRequest, context: grpc.aio.ServicerContext
    ) -> tenant_pb2.MyTenantPage:
        caller = _member_caller()
        size, after = page_size(request.page_size), decode_token(request.page_token)
        rows = await queries.tenants_of(self.pool, caller.id, after, size + 1)
        page, token = paginate(rows, size, "tenant_id")
        return tenant_pb2.MyTenantPage(
            tenants=[
                tenant_pb2.MyTenant(
                    tenant_id=r["tenant_id"], name=r["name"], role=r["role"], joined_at=to_timestamp(r["joined_at"])
                )
                for r in page
            ],
            next_page_token=token,
        )

    async def ListInvitations(
        self, request: tenant_pb2.ListInvitationsRequest, context: grpc.aio.ServicerContext
    ) -> tenant_pb2.InvitationPage:
        tenant_id = tenant(request.tenant_id)
        await self.authorizer.require(tenant_id, "admin")
        size, after = page_size(request.page_size), decode_token(request.page_token)
        rows = await queries.invitations_page(self.pool, tenant_id, after, size + 1)
        page, token = paginate(rows, size, "principal_id")
        return tenant_pb2.InvitationPage(
            invitations=[_invitation(r, tenant_id=tenant_id) for r in page],
            next_page_token=token,
        )

    async def ListMyInvitations(
        self, request: tenant_pb2.ListMyInvitationsRequest, context: grpc.aio.ServicerContext
    ) -> tenant_pb2.MyInvitationPage:
        caller = _member_caller()
        size, after = page_size(request.page_size), decode_token(request.page_token)
        rows = await queries.invitations_of(self.pool, caller.id, after, size + 1)
        page, token = paginate(rows, size, "tenant_id")
        return tenant_pb2.MyInvitationPage(
            invitations=[_invitation(r, principal_id=caller.id) for r in page],
            next_page_token=token,
        )

    async def ResolveChannel(
        self, request: tenant_pb2.ResolveChannelRequest, context: grpc.aio.ServicerContext
    ) -> tenant_pb2.ChannelAccount:
        channel, account_id = _channel(request.channel), _account(request.account_id)
        # Which tenant owns a page is another tenant's business: only the platform
        # (the router) may ask it of an arbitrary account.
        if not _is_platform(current_principal()):
            raise PermissionDenied("only platform principals may resolve a channel account")
        row = await queries.channel_account(self.pool, channel, account_id)
        if row is None:
            raise NotFound(f"no tenant connected {channel} account {account_id}")
        return _channel_account(row)

    async def ListChannels(
        self, request: tenant_pb2.ListChannelsRequest, context: grpc.aio.ServicerContext
    ) -> tenant_pb2.ChannelPage:
        tenant_id = tenant(request.tenant_id)
        await self.authorizer.require(tenant_id, "viewer")
        size = page_size(request.page_size)
        channel, _, account_id = decode_token(request.page_token).partition("/")
        rows = await queries.channels_page(self.pool, tenant_id, (channel, account_id), size + 1)
        page, token = paginate(rows, size, lambda last: f"{last['channel']}/{last['account_id']}")
        return tenant_pb2.ChannelPage(channels=[_channel_account(r) for r in page], next_page_token=token)

    async def GetOdooConnection(
        self, request: tenant_pb2.GetOdooConnectionRequest, context: grpc.aio.ServicerContext
    ) -> tenant_pb2.OdooConnection:
        tenant_id = tenant(request.tenant_id)
        await self.authorizer.require(tenant_id, "admin")
        row = await queries.odoo_connection(self.pool, tenant_id)
        if row is None:
            raise NotFound(f"tenant {tenant_id} has no Odoo connection of its own")
        return tenant_pb2.OdooConnection(
            tenant_id=tenant_id,
            url=row["url"],
            database=row["database"],
            login=row["login"],
            protocol=row["protocol"],
            version=row["version"],
            connected_at=to_timestamp(row["connected_at"]),
            updated_at=to_timestamp(row["updated_at"]),
        )


class TenantMembership(tenant_pb2_grpc.TenantMembershipServicer):
    """Sends tenant commands as the caller (the command's actor). The role check
    here reads the read store; the aggregate repeats it for member actors
    against its own state, so a stale read store cannot widen anyone's rights."""

    def __init__(self, deps: ServiceDeps):
        assert deps.commands is not None, "the tenant service declares sends_commands"
        self.pool, self.authorizer, self.commands = deps.pool, deps.authorizer, deps.commands

    async def CreateTenant(
        self, request: tenant_pb2.CreateTenantRequest, context: grpc.aio.ServicerContext
    ) -> tenant_pb2.CommandReply:
        caller = current_principal()
        if request.tenant_id:
            tenant_id = _canonical_tenant(request.tenant_id)
        elif request.command_id:  # a resend of the same command must name the same new tenant
            tenant_id = str(uuid.uuid5(NEW_TENANT_NAMESPACE, f"{caller.id}\n{request.command_id}"))
        else:
            tenant_id = str(uuid.uuid4())
        if not request.name.strip() or len(request.name) > MAX_NAME:
            raise InvalidArgument(f"name must be 1 to {MAX_NAME} characters and not blank")
        if _is_platform(caller):
            owner = _principal(request.owner_id, "owner_id")
        elif request.owner_id and request.owner_id != caller.id:
            raise PermissionDenied("only platform principals may name another owner")
        else:
            owner = caller.id
        command = CreateTenant(self._meta(tenant_id, caller, request.command_id), name=request.name, owner_id=owner)
        return await self._send(command)

    async def InviteMember(
        self, request: tenant_pb2.InviteMemberRequest, context: grpc.aio.ServicerContext
    ) -> tenant_pb2.CommandReply:
        tenant_id, principal_id, role = tenant(request.tenant_id), _principal(request.principal_id), _role(request.role)
        await self.authorizer.require(tenant_id, "owner" if role == "owner" else "admin")
        caller = current_principal()
        command = InviteMember(self._meta(tenant_id, caller, request.command_id), principal_id=principal_id, role=role)
        return await self._send(command)

    async def AcceptInvitation(
        self, request: tenant_pb2.AcceptInvitationRequest, context: grpc.aio.ServicerContext
    ) -> tenant_pb2.CommandReply:
        tenant_id, caller = tenant(request.tenant_id), current_principal()
        principal_id = _on_behalf_of(caller, request.principal_id)
        command = AcceptInvitation(self._meta(tenant_id, caller, request.command_id), principal_id=principal_id)
        # Not a member yet, so no role to check: the aggregate only lets the
        # invitee (or a platform principal) accept. Missing tenant and missing
        # invitation answer alike, so this reveals no other tenant.
        nothing = f"no pending invitation for {principal_id} in tenant {tenant_id}"
        return await self._send(command, not_found={"AggregateNotFound": nothing, "NoInvitation": nothing})

    async def ChangeMemberRole(
        self, request: tenant_pb2.ChangeMemberRoleRequest, context: grpc.aio.ServicerContext
    ) -> tenant_pb2.CommandReply:
        tenant_id, principal_id, role = tenant(request.tenant_id), _principal(request.principal_id), _role(request.role)
        await self.authorizer.require(tenant_id, "admin")
        if role == "owner" or await self.authorizer.role_of(tenant_id, principal_id) == "owner":
            await self.authorizer.require(tenant_id, "owner")
        caller = current_principal()
        command = ChangeMemberRole(self._meta(tenant_id, caller, request.command_id), principal_id=principal_id, role=role)
        return await self._send(command)

    async def RemoveMember(
        self, request: tenant_pb2.RemoveMemberRequest, context: grpc.aio.ServicerContext
    ) -> tenant_pb2.CommandReply:
        tenant_id, principal_id, caller = tenant(request.tenant_id), _principal(request.principal_id), current_principal()
        command = RemoveMember(self._meta(tenant_id, caller, request.command_id), principal_id=principal_id)
        if principal_id == caller.id:
            # Leaving, or declining one's own invitation: needs no role, and a
            # tenant one has nothing to do with answers like a missing one.
            nothing = f"no membership or invitation for {principal_id} in tenant {tenant_id}"
            return await self._send(command, not_found={"AggregateNotFound": nothing, "NotAMember": nothing})
        await self.authorizer.require(tenant_id, "admin")
        if await self.authorizer.role_of(tenant_id, principal_id) == "owner":
            await self.authorizer.require(tenant_id, "owner")
        return await self._send(command)

    def _meta(self, tenant_id: str, caller: Principal, command_id: str):
        if len(command_id) > 200:
            raise InvalidArgument("command_id must be at most 200 characters")
        return new_meta(tenant_id, tenant_id, actor=caller.id, command_id=command_id or None)

    async def _send(self, command: Command, not_found: dict[str, str] | None = None) -> tenant_pb2.CommandReply:
        result = await self.commands.send(command, timeout=COMMAND_TIMEOUT_S)
        tenant_id = command.meta.tenant_id
        if not result.accepted:
            raise _refusal(result, not_found or {})
        projected = await _wait_until_projected(self.pool, tenant_id, result.version)
        return tenant_pb2.CommandReply(
            tenant_id=tenant_id,
            command_id=result.command_id,
            version=result.version,
            duplicate=result.duplicate,
            projected=projected,
        )


class TenantChannels(tenant_pb2_grpc.TenantChannelsServicer):
    """Sends the channel registry's commands as the caller. A channel account is
    its own aggregate, owned by the tenant that first connected it; another
    tenant's command on it is refused by the shared ownership rule."""

    def __init__(self, deps: ServiceDeps):
        assert deps.commands is not None, "the tenant service declares sends_commands"
        self.pool, self.authorizer, self.commands = deps.pool, deps.authorizer, deps.commands
        self.page_control = deps.extensions.get(FACEBOOK_PAGE_CONTROL)
        self.odoo_check = deps.extensions.get(ODOO_CHECK)
        self.sealer = Sealer(credential_keys_dir(deps.settings))

    async def StartFacebookConnect(
        self, request: tenant_pb2.StartFacebookConnectRequest, context: grpc.aio.ServicerContext
    ) -> tenant_pb2.FacebookConnectStart:
        tenant_id = tenant(request.tenant_id)
        await self.authorizer.require(tenant_id, "admin")  # before the URL: another tenant learns nothing
        redirect_uri = _redirect_uri(request.redirect_uri)
        control = self._control()
        expires = int(time.time()) + CONNECT_STATE_TTL_S
        claims = {"t": tenant_id, "p": current_principal().id, "r": redirect_uri, "e": expires, "n": uuid.uuid4().hex}
        state = self.sealer.seal(json.dumps(claims, separators=(",", ":")).encode(), STATE_CONTEXT)
        return tenant_pb2.FacebookConnectStart(
            dialog_url=control.dialog_url(redirect_uri, state),
            state=state,
            expires_at=to_timestamp(datetime.fromtimestamp(expires, UTC)),
        )

    async def CompleteFacebookConnect(
        self, request: tenant_pb2.CompleteFacebookConnectRequest, context: grpc.aio.ServicerContext
    ) -> tenant_pb2.FacebookConnectReply:
        tenant_id, page_id = tenant(request.tenant_id), _account(request.page_id)
        code = required(request.code, "code")
        if len(code) > MAX_CODE or len(request.command_id) > 200:
            raise InvalidArgument(f"code must be at most {MAX_CODE} and command_id at most 200 characters")
        await self.authorizer.require(tenant_id, "admin")
        caller = current_principal()
        redirect_uri = self._open_state(request.state, tenant_id, caller.id)
        try:
            proven = await self._control().prove(tenant_id, code, redirect_uri, page_id)
        except ConnectRefused as refused:
            raise _connect_refusal(refused) from None
        sealed = self.sealer.seal(proven.page_token.encode(), page_token_context(tenant_id, page_id))
        page_name = proven.name
        del proven  # the clear token goes no further than the seal
        aggregate_id = channel_account_id("facebook", page_id)
        owner = await queries.channel_account(self.pool, "facebook", page_id)
        moved = owner is not None and owner["tenant_id"] != tenant_id
        if moved:
            # Recorded under the owner it leaves (ChannelMoved); the connection below under this tenant.
            move = MoveChannel(
                new_meta(aggregate_id, owner["tenant_id"], actor=caller.id), to_tenant_id=tenant_id, proof=FACEBOOK_PROOF
            )
            result = await self.commands.send(move, timeout=COMMAND_TIMEOUT_S)
            if not result.accepted and result.rejection != "TenantMismatch":  # TenantMismatch: it moved already
                raise _refusal(result, {})
        meta = new_meta(aggregate_id, tenant_id, actor=caller.id, command_id=request.command_id or None)
        connect = ConnectChannel(meta, channel="facebook", account_id=page_id, proof=FACEBOOK_PROOF, sealed_token=sealed)
        result = await self.commands.send(connect, timeout=COMMAND_TIMEOUT_S)
        if result.rejection == "TenantMismatch":
            # Another tenant connected it a moment ago, before the read store showed it.
            raise FailedPrecondition(f"ChannelTaken: facebook account {page_id} changed hands meanwhile; complete the flow again")
        reply = await self._reply(result, tenant_id, "facebook", page_id)
        return tenant_pb2.FacebookConnectReply(
            tenant_id=tenant_id,
            page_id=page_id,
            page_name=page_name,
            command_id=reply.command_id,
            version=reply.version,
            duplicate=reply.duplicate,
            projected=reply.projected,
            moved=moved,
        )

    def _control(self):
        if self.page_control is None:
            raise Unavailable(f"{UNAVAILABLE}: the Facebook connect flow is not configured on this server")
        return self.page_control

    def _open_state(self, state: str, tenant_id: str, principal_id: str) -> str:
        """The redirect_uri of the flow `state` started, if it was started by this caller for this tenant and is not stale."""
        if not state or len(state) > MAX_STATE:
            raise InvalidArgument("state: pass the state StartFacebookConnect answered")
        try:
            claims = json.loads(self.sealer.unseal(state, STATE_CONTEXT))
        except (SealError, ValueError):
            raise InvalidArgument("state: not a state this platform issued; start the connect flow again") from None
        if claims.get("t") != tenant_id or claims.get("p") != principal_id:
            raise InvalidArgument("state: issued for another tenant or caller; start the connect flow again")
        if int(claims.get("e", 0)) < time.time():
            raise InvalidArgument("state: expired; start the connect flow again")
        return str(claims["r"])

    async def ConnectChannel(
        self, request: tenant_pb2.ConnectChannelRequest, context: grpc.aio.ServicerContext
    ) -> tenant_pb2.CommandReply:
        tenant_id, channel, account_id = tenant(request.tenant_id), _channel(request.channel), _account(request.account_id)
        await self.authorizer.require(tenant_id, "admin")
        if channel == "facebook":
            # First claim no longer wins: a page is connected by whoever proves control of it.
            raise FailedPrecondition(
                "ProofRequired: a Facebook page is connected only with proof of control — "
                "StartFacebookConnect, then CompleteFacebookConnect (Facebook Login)"
            )
        meta = _channel_meta(tenant_id, channel, account_id, request.command_id)
        result = await self.commands.send(ConnectChannel(meta, channel=channel, account_id=account_id), timeout=COMMAND_TIMEOUT_S)
        if result.rejection == "TenantMismatch":
            # Say that it is taken, never by whom.
            raise FailedPrecondition(f"ChannelTaken: {channel} account {account_id} is connected to another tenant")
        return await self._reply(result, tenant_id, channel, account_id)

    async def DisconnectChannel(
        self, request: tenant_pb2.DisconnectChannelRequest, context: grpc.aio.ServicerContext
    ) -> tenant_pb2.CommandReply:
        tenant_id, channel, account_id = tenant(request.tenant_id), _channel(request.channel), _account(request.account_id)
        if len(request.reason) > MAX_REASON:
            raise InvalidArgument(f"reason must be at most {MAX_REASON} characters")
        await self.authorizer.require(tenant_id, "admin")
        meta = _channel_meta(tenant_id, channel, account_id, request.command_id)
        result = await self.commands.send(DisconnectChannel(meta, reason=request.reason), timeout=COMMAND_TIMEOUT_S)
        if result.rejection in ("TenantMismatch", "AggregateNotFound"):
            # Another tenant's account answers exactly like one nobody connected.
            raise NotFound(f"tenant {tenant_id} has no {channel} account {account_id}")
        return await self._reply(result, tenant_id, channel, account_id)

    async def ConnectOdoo(
        self, request: tenant_pb2.ConnectOdooRequest, context: grpc.aio.ServicerContext
    ) -> tenant_pb2.OdooConnectionReply:
        tenant_id = tenant(request.tenant_id)
        await self.authorizer.require(tenant_id, "admin")  # before anything about the request: another tenant learns nothing
        odoo = _odoo_settings(request)
        if self.odoo_check is None:
            raise Unavailable(f"{ODOO_UNAVAILABLE}: checking Odoo connections is not configured on this server")
        try:
            learnt = await self.odoo_check.check(tenant_id, odoo)
        except OdooRefused as refused:
            if refused.rule == ODOO_UNAVAILABLE:
                raise Unavailable(f"{refused.rule}: {refused.message}") from None
            raise FailedPrecondition(f"{refused.rule}: {refused.message}") from None
        sealed = self.sealer.seal(odoo.api_key.encode(), odoo_key_context(tenant_id))
        if len(request.command_id) > 200:
            raise InvalidArgument("command_id must be at most 200 characters")
        meta = new_meta(tenant_id, tenant_id, actor=current_principal().id, command_id=request.command_id or None)
        command = ConnectOdoo(
            meta, url=odoo.url, database=odoo.database, login=odoo.login, sealed_api_key=sealed, protocol=odoo.protocol
        )
        del odoo  # the clear key goes no further than the seal
        result = await self.commands.send(command, timeout=COMMAND_TIMEOUT_S)
        if not result.accepted:
            raise _refusal(result, {})
        projected = await _wait_until(
            lambda: self.pool.fetchval("SELECT version FROM odoo_connections WHERE tenant_id = $1", tenant_id), result.version
        )
        return tenant_pb2.OdooConnectionReply(
            tenant_id=tenant_id,
            url=command.url,
            database=command.database,
            protocol=command.protocol,
            authenticated=learnt,
            command_id=result.command_id,
            version=result.version,
            duplicate=result.duplicate,
            projected=projected,
        )

    async def _reply(self, result: CommandResult, tenant_id: str, channel: str, account_id: str) -> tenant_pb2.CommandReply:
        if not result.accepted:
            raise _refusal(result, {})
        projected = await _wait_until(lambda: queries.channel_version(self.pool, tenant_id, channel, account_id), result.version)
        return tenant_pb2.CommandReply(
            tenant_id=tenant_id,
            command_id=result.command_id,
            version=result.version,
            duplicate=result.duplicate,
            projected=projected,
        )


def _channel_meta(tenant_id: str, channel: str, account_id: str, command_id: str):
    if len(command_id) > 200:
        raise InvalidArgument("command_id must be at most 200 characters")
    caller = current_principal()
    return new_meta(channel_account_id(channel, account_id), tenant_id, actor=caller.id, command_id=command_id or None)


def _odoo_settings(request: tenant_pb2.ConnectOdooRequest) -> OdooSettings:
    protocol = request.protocol or "xmlrpc"
    if protocol not in ODOO_PROTOCOLS:
        raise InvalidArgument(f"protocol must be one of {', '.join(ODOO_PROTOCOLS)}, not {protocol[:40]!r}")
    url = request.url.rstrip("/")
    if "@" in urlsplit(url).netloc:
        # A user:password in the URL would be kept in clear in events and answers: the key goes in api_key.
        raise InvalidArgument("url must not carry a user or password (user@host): give the login and api_key instead")
    parts = urlsplit(url) if ODOO_URL.match(url) and len(url) <= MAX_ODOO_FIELD else None
    if (
        parts is None
        or not parts.hostname
        or not (parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS))
    ):
        # The key travels to that URL: never in clear over the network.
        raise InvalidArgument("url must be the https URL of the Odoo server (http only on loopback), without query or fragment")
    for name in ("database", "login", "api_key"):
        value = getattr(request, name)
        if not value or len(value) > MAX_ODOO_FIELD or not value.isprintable():
            raise InvalidArgument(f"{name} must be 1 to {MAX_ODOO_FIELD} printable characters")
    return OdooSettings(url, request.database, request.login, request.api_key, protocol)


def _connect_refusal(refused: ConnectRefused) -> Exception:
    if refused.rule == RATE_LIMITED:
        wait = max(1, round(refused.retry_after or 60))
        return ResourceExhausted(f"{refused.rule}: {refused.message}; retry in {wait} s")
    if refused.rule == UNAVAILABLE:
        return Unavailable(f"{refused.rule}: {refused.message}")
    return FailedPrecondition(f"{refused.rule}: {refused.message}")


def _redirect_uri(value: str) -> str:
    """Where Facebook sends the admin's browser back: https, or http on this machine (development)."""
    if not value or len(value) > MAX_REDIRECT_URI:
        raise InvalidArgument(f"redirect_uri must be 1 to {MAX_REDIRECT_URI} characters")
    parts = urlsplit(value)
    if (
        not parts.hostname
        or parts.fragment
        or not (parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS))
    ):
        raise InvalidArgument("redirect_uri must be an absolute https URL without a fragment (http only on loopback)")
    return value


def _refusal(result: CommandResult, not_found: dict[str, str]) -> Exception:
    return refusal(result, not_found)


async def _wait_until_projected(pool, tenant_id: str, version: int) -> bool:
    return await _wait_until(lambda: pool.fetchval("SELECT version FROM tenants WHERE tenant_id = $1", tenant_id), version)


async def _wait_until(projected_version, version: int) -> bool:
    deadline = time.monotonic() + PROJECTION_WAIT_S
    while True:
        if (await projected_version() or 0) >= version:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.02)


def _is_platform(principal: Principal) -> bool:
    return PLATFORM_SCOPE in principal.scopes


def _member_caller() -> Principal:
    caller = current_principal()
    if _is_platform(caller):
        raise InvalidArgument("caller: a platform principal is a member of no tenant; ask per tenant instead")
    return caller


def _on_behalf_of(caller: Principal, principal_id: str) -> str:
    if _is_platform(caller):
        return _principal(principal_id)
    if principal_id and principal_id != caller.id:
        raise PermissionDenied("only platform principals may act for another principal")
    return caller.id


def _canonical_tenant(value: str) -> str:
    if not TENANT_ID.match(value):
        raise InvalidArgument(f"tenant_id must be a lower-case slug of 1 to 63 letters, digits and inner hyphens, not {value!r}")
    return value


def _channel(value: str) -> str:
    if not CHANNEL.match(value):
        raise InvalidArgument(f"channel must be a lower-case platform name like facebook, not {value[:40]!r}")
    return value


def _account(value: str) -> str:
    if not ACCOUNT_ID.match(value):
        raise InvalidArgument(f"account_id must be 1 to 128 of A-Z a-z 0-9 _ . : -, not {value[:200]!r}")
    return value


def _channel_account(row) -> tenant_pb2.ChannelAccount:
    return tenant_pb2.ChannelAccount(
        channel=row["channel"],
        account_id=row["account_id"],
        tenant_id=row["tenant_id"],
        connected=row["connected"],
        version=row["version"],
        connected_at=to_timestamp(row["connected_at"]),
        updated_at=to_timestamp(row["updated_at"]),
        proof=row["proof"],
        needs_reauthorization=row["needs_reauthorization"],
        reauthorization_reason=row["reauthorization_reason"],
    )


def _principal(value: str, field: str = "principal_id") -> str:
    return required(value, field)


def _role(value: str) -> str:
    if value not in ROLES:
        raise InvalidArgument(f"role must be one of {', '.join(ROLES)}, not {value!r}")
    return value


def _invitation(row, *, tenant_id: str = "", principal_id: str = "") -> tenant_pb2.Invitation:
    return tenant_pb2.Invitation(
        tenant_id=tenant_id or row["tenant_id"],
        tenant_name=row["name"],
        principal_id=principal_id or row["principal_id"],
        role=row["role"],
        invited_by=row["invited_by"],
        invited_at=to_timestamp(row["invited_at"]),
    )


def _add_to_server(server: grpc.aio.Server, deps: ServiceDeps) -> None:
    tenant_pb2_grpc.add_TenantQueryServicer_to_server(TenantQueries(deps), server)
    tenant_pb2_grpc.add_TenantMembershipServicer_to_server(TenantMembership(deps), server)
    tenant_pb2_grpc.add_TenantChannelsServicer_to_server(TenantChannels(deps), server)


def _routes() -> tuple[Route, ...]:
    """The REST operations of this service (the API gateway answers them with these methods).
    Each write's Idempotency-Key is its command id; its reply waits for the read store."""
    q, members, channels = (methods(tenant_pb2, s) for s in ("TenantQuery", "TenantMembership", "TenantChannels"))
    tenant_path = "/v1/tenants/{tenant_id}"
    write = {"idempotency_field": "command_id", "affects": tenant_path}
    return (
        Route("GET", "/v1/tenants", q.ListMyTenants, "The tenants the caller is a member of."),
        Route("POST", "/v1/tenants", members.CreateTenant, "Create a tenant with the caller as its owner.", 201, **write),
        Route("GET", tenant_path, q.GetTenant, "One tenant."),
        Route("GET", tenant_path + "/my-role", q.GetMyRole, "The caller's role in the tenant."),
        Route("GET", tenant_path + "/members", q.ListMembers, "The tenant's members and their roles."),
        Route("PUT", tenant_path + "/members/{principal_id}/role", members.ChangeMemberRole, "Change a member's role.", **write),
        Route("DELETE", tenant_path + "/members/{principal_id}", members.RemoveMember, "Remove a member (or leave).", **write),
        Route("GET", tenant_path + "/invitations", q.ListInvitations, "The tenant's pending invitations."),
        Route("POST", tenant_path + "/invitations", members.InviteMember, "Invite a principal with a role.", 201, **write),
        Route("POST", tenant_path + "/invitations/accept", members.AcceptInvitation, "Accept the caller's invitation.", **write),
        Route("GET", "/v1/me/invitations", q.ListMyInvitations, "The caller's pending invitations."),
        Route("GET", tenant_path + "/channels", q.ListChannels, "The channel accounts (pages) connected to the tenant."),
        Route(
            "POST",
            tenant_path + "/channels",
            channels.ConnectChannel,
            "Connect a channel account.",
            201,
            idempotency_field="command_id",
        ),
        Route(
            "DELETE",
            tenant_path + "/channels/{channel}/{account_id}",
            channels.DisconnectChannel,
            "Disconnect a channel account.",
            idempotency_field="command_id",
        ),
        Route(
            "GET",
            "/v1/channels/{channel}/{account_id}",
            q.ResolveChannel,
            "The tenant a channel account routes to (platform only).",
        ),
        Route(
            "POST",
            tenant_path + "/facebook-connect",
            channels.StartFacebookConnect,
            "Start connecting a Facebook page: the Facebook Login dialog URL and the flow's state.",
        ),
        Route(
            "POST",
            tenant_path + "/facebook-connect/complete",
            channels.CompleteFacebookConnect,
            "Connect the Facebook page the admin proved control of (code and state from the Login redirect).",
            201,
            idempotency_field="command_id",
        ),
        Route("GET", tenant_path + "/odoo", q.GetOdooConnection, "The tenant's own Odoo connection (never its API key)."),
        Route(
            "PUT",
            tenant_path + "/odoo",
            channels.ConnectOdoo,
            "Save the tenant's own Odoo connection, after authenticating against that Odoo with it.",
            idempotency_field="command_id",
        ),
    )


SERVICE = QueryService(
    hub="tenant",
    read_model=PROJECTION,
    service_names=(
        tenant_pb2.DESCRIPTOR.services_by_name["TenantQuery"].full_name,
        tenant_pb2.DESCRIPTOR.services_by_name["TenantMembership"].full_name,
        tenant_pb2.DESCRIPTOR.services_by_name["TenantChannels"].full_name,
    ),
    add_to_server=_add_to_server,
    sends_commands=True,
    http_routes=_routes(),
    http_fields={
        "tenant_id": {"pattern": f"^({TENANT_ID.pattern[1:-1]})?$", "description": "A lower-case slug or UUID"},
        "name": {"minLength": 1, "maxLength": MAX_NAME},
        "role": {"enum": list(ROLES)},
        "channel": {"pattern": CHANNEL.pattern},
        "account_id": {"pattern": ACCOUNT_ID.pattern},
        "reason": {"maxLength": MAX_REASON},
        "owner_id": {"description": "Platform principals only: the new tenant's owner"},
        "protocol": {"enum": list(ODOO_PROTOCOLS)},
        "url": {"maxLength": MAX_ODOO_FIELD, "description": "The Odoo server's https URL"},
        "database": {"minLength": 1, "maxLength": MAX_ODOO_FIELD},
        "login": {"minLength": 1, "maxLength": MAX_ODOO_FIELD},
        "api_key": {"minLength": 1, "maxLength": MAX_ODOO_FIELD, "format": "password", "writeOnly": True},
    },
)
