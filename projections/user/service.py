"""User gRPC queries (GetProfile, ListProfiles, GetPreferences) over the user read
store. Decides who sees clear PII: the principal itself and the tenant's admins
and owners; agents and viewers get the masked directory. SQL lives in
projections/user/queries.py. Logs nothing of a profile."""

from __future__ import annotations

import uuid

import click
import grpc

from hubs.user.aggregate import profile_id
from infra.arguments import tenant, uuid_of
from infra.grpc_server import NotFound, QueryService, ServiceDeps, to_timestamp
from infra.paging import page_size, paginate, parse_token
from infra.rest import Route, methods
from infra.security import ROLES, PermissionDenied, current_principal
from projections.user import PROJECTION, queries
from schemas.protos import user_pb2, user_pb2_grpc

CLEAR_PII_ROLE = "admin"
"""Roles from this one up read every profile of their tenant with clear PII."""


class UserQueries(user_pb2_grpc.UserQueryServicer):
    def __init__(self, deps: ServiceDeps):
        self.pool, self.authorizer = deps.pool, deps.authorizer

    async def GetProfile(self, request: user_pb2.GetProfileRequest, context: grpc.aio.ServicerContext) -> user_pb2.Profile:
        tenant_id, principal_id = tenant(request.tenant_id), _principal_id(request.principal_id)
        role = await self.authorizer.require(tenant_id, "viewer")
        clear = _is_caller(principal_id) or _reads_clear_pii(role)
        row = await queries.profile(self.pool, tenant_id, principal_id, clear_pii=clear)
        if row is None:
            raise NotFound(f"no profile of principal {principal_id} in tenant {tenant_id}")
        return _profile(row, masked=not clear)

    async def ListProfiles(
        self, request: user_pb2.ListProfilesRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.ProfilePage:
        tenant_id, size, after = tenant(request.tenant_id), page_size(request.page_size), _after(request.page_token)
        role = await self.authorizer.require(tenant_id, "viewer")
        clear = _reads_clear_pii(role)
        rows = await queries.profile_page(self.pool, tenant_id, after, size + 1, clear_pii=clear)
        page, next_token = paginate(rows, size, "principal_id")
        return user_pb2.ProfilePage(profiles=[_profile(row, masked=not clear) for row in page], next_page_token=next_token)

    async def GetPreferences(
        self, request: user_pb2.GetPreferencesRequest, context: grpc.aio.ServicerContext
    ) -> user_pb2.Preferences:
        tenant_id, principal_id = tenant(request.tenant_id), _principal_id(request.principal_id)
        role = await self.authorizer.require(tenant_id, "viewer")
        # Refused before any read, so the answer says nothing about whether the profile exists.
        if not (_is_caller(principal_id) or _reads_clear_pii(role)):
            raise PermissionDenied(f"preferences are readable by the principal itself and by {CLEAR_PII_ROLE}s or higher")
        pid = profile_id(tenant_id, str(principal_id))
        version = await queries.profile_version(self.pool, tenant_id, pid)
        if version is None:
            raise NotFound(f"no profile of principal {principal_id} in tenant {tenant_id}")
        rows = await queries.preferences(self.pool, tenant_id, pid)
        return user_pb2.Preferences(
            tenant_id=tenant_id,
            principal_id=str(principal_id),
            preferences=[
                user_pb2.Preference(key=r["key"], value=r["value"], updated_at=to_timestamp(r["updated_at"])) for r in rows
            ],
            version=version,
        )


def _is_caller(principal_id: uuid.UUID) -> bool:
    try:
        return uuid.UUID(current_principal().id) == principal_id
    except ValueError:
        return False  # a service principal's id need not be a UUID; it is nobody's profile


def _reads_clear_pii(role: str) -> bool:
    return ROLES.index(role) >= ROLES.index(CLEAR_PII_ROLE)


def _profile(row, *, masked: bool) -> user_pb2.Profile:
    return user_pb2.Profile(
        tenant_id=row["tenant_id"],
        principal_id=str(row["principal_id"]),
        display_name=row["display_name"],
        email=row["email"],
        phone=row["phone"],
        locale=row["locale"],
        timezone=row["timezone"],
        pii_masked=masked,
        version=row["version"],
        created_at=to_timestamp(row["created_at"]),
        updated_at=to_timestamp(row["updated_at"]),
    )


def _principal_id(value: str) -> uuid.UUID:
    return uuid_of(value, "principal_id", shown=64)


def _after(token: str) -> uuid.UUID | None:
    return parse_token(token, lambda key: uuid.UUID(key) if key else None, None)


def _add_to_server(server: grpc.aio.Server, deps: ServiceDeps) -> None:
    user_pb2_grpc.add_UserQueryServicer_to_server(UserQueries(deps), server)


def _routes() -> tuple[Route, ...]:
    """The REST operations of this service (the API gateway answers them with these methods)."""
    m = methods(user_pb2, "UserQuery")
    return (
        Route("GET", "/v1/tenants/{tenant_id}/profiles", m.ListProfiles, "The tenant's user profiles."),
        Route("GET", "/v1/tenants/{tenant_id}/profiles/{principal_id}", m.GetProfile, "A member's profile."),
        Route("GET", "/v1/tenants/{tenant_id}/profiles/{principal_id}/preferences", m.GetPreferences, "A member's preferences."),
    )


SERVICE = QueryService(
    hub="user",
    read_model=PROJECTION,
    service_names=(user_pb2.DESCRIPTOR.services_by_name["UserQuery"].full_name,),
    add_to_server=_add_to_server,
    http_routes=_routes(),
)


@click.command("profile-id")
@click.option("--tenant", required=True, help="Tenant id.")
@click.option("--principal", required=True, help="Principal id (UUID).")
def _profile_id_cli(tenant: str, principal: str) -> None:
    """Print the profile id (the --profile of every user command) of a principal in a tenant."""
    click.echo(profile_id(tenant, principal))


CLI_QUERIES = [_profile_id_cli]
