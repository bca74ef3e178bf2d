"""Config gRPC service: effective values (now and at a past moment) over the
config read store, and SetValue/UnsetValue, which check the caller's right to the
scope here, on the server, and send the commands to the Config hub. Parsing,
authorising and answering only: SQL lives in projections/config/queries.py, the
resolution rules in hubs/config/resolve.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC

import grpc

from hubs.config.aggregate import (
    ENVIRONMENT,
    GLOBAL,
    TENANT,
    canonical_json,
    check_environment,
    check_key,
    check_key_prefix,
    check_scope,
    check_tenant_id,
    entry_id,
    owner_tenant,
)
from hubs.config.commands import SetConfigValue, UnsetConfigValue
from hubs.config.resolve import Change, ScopedValue, effective, effective_at, effective_by_key
from infra.arguments import tenant
from infra.command_client import CommandResult, CommandTimeout, new_meta
from infra.grpc_server import FailedPrecondition, InvalidArgument, NotFound, QueryService, ServiceDeps, to_timestamp
from infra.paging import decode_token, page_size, paginate
from infra.rest import Route, methods
from infra.security import PLATFORM_SCOPE, PermissionDenied, current_principal
from projections.config import PROJECTION, queries
from schemas.contracts import Command, CommandMeta, InvalidCommand
from schemas.protos import config_pb2, config_pb2_grpc

DEFAULT_PAGE = 100
MAX_REQUEST_ID = 200
WRITER_ROLE = "admin"
"""Tenant roles from this one up may set their tenant's values."""
COMMAND_TIMEOUT_S = 20.0
"""Longest wait for the hub's decision; shorter when the caller's deadline is nearer."""
REQUEST_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:poseidon:config:request")

_SCOPE_TO_PROTO = {
    GLOBAL: config_pb2.SCOPE_KIND_GLOBAL,
    ENVIRONMENT: config_pb2.SCOPE_KIND_ENVIRONMENT,
    TENANT: config_pb2.SCOPE_KIND_TENANT,
}
_SCOPE_FROM_PROTO = {v: k for k, v in _SCOPE_TO_PROTO.items()}


class ConfigServicer(config_pb2_grpc.ConfigServiceServicer):
    def __init__(self, deps: ServiceDeps):
        self.pool, self.authorizer, self.commands = deps.pool, deps.authorizer, deps.commands

    # -- reads: one tenant's view (global, one environment, its own scope) --

    async def GetEffectiveValue(
        self, request: config_pb2.GetEffectiveValueRequest, context: grpc.aio.ServicerContext
    ) -> config_pb2.EffectiveValue:
        tenant_id, environment, key = _tenant(request.tenant_id), _environment(request.environment), _key(request.key)
        await self.authorizer.require(tenant_id, "viewer")
        rows = await queries.values_of_key(self.pool, tenant_id, environment, key)
        winner = effective(_scoped(row) for row in rows)
        if winner is None:
            raise NotFound(f"{key} has no value for tenant {tenant_id}{_in(environment)}")
        return _effective_value(winner)

    async def ListEffective(
        self, request: config_pb2.ListEffectiveRequest, context: grpc.aio.ServicerContext
    ) -> config_pb2.EffectiveValuePage:
        tenant_id, environment = _tenant(request.tenant_id), _environment(request.environment)
        prefix = request.prefix
        _valid(lambda: check_key_prefix(prefix, "prefix"))
        size, after = page_size(request.page_size, DEFAULT_PAGE), _decode_token(request.page_token)
        await self.authorizer.require(tenant_id, "viewer")
        rows = await queries.values_page(self.pool, tenant_id, environment, prefix, after, size + 1)
        values = list(effective_by_key(_scoped(row) for row in rows).values())
        page, next_token = paginate(values, size, lambda value: value.key)
        return config_pb2.EffectiveValuePage(values=[_effective_value(v) for v in page], next_page_token=next_token)

    async def GetValueAt(
        self, request: config_pb2.GetValueAtRequest, context: grpc.aio.ServicerContext
    ) -> config_pb2.EffectiveValue:
        tenant_id, environment, key = _tenant(request.tenant_id), _environment(request.environment), _key(request.key)
        if not request.HasField("at"):
            raise InvalidArgument("at is required (the moment to reconstruct)")
        try:
            at = request.at.ToDatetime(tzinfo=UTC)
        except ValueError as exc:
            raise InvalidArgument(f"at is not a valid timestamp: {exc}") from None
        await self.authorizer.require(tenant_id, "viewer")
        rows = await queries.changes_until(self.pool, tenant_id, environment, key, at)
        winner = effective_at((_change(row) for row in rows), at)
        if winner is None:
            raise NotFound(f"{key} had no value for tenant {tenant_id}{_in(environment)} at {at.isoformat()}")
        return _effective_value(winner)

    # -- writes: the scope's rules checked here, the change decided by the hub --

    async def SetValue(self, request: config_pb2.SetValueRequest, context: grpc.aio.ServicerContext) -> config_pb2.SetValueReply:
        (scope_kind, scope_id), key = _scope(request.scope_kind, request.scope_id), _key(request.key)
        _valid(lambda: canonical_json(request.value_json))
        expected, request_id = _expected_version(request), _request_id(request.request_id)
        await self._require_writer(scope_kind, scope_id)
        meta = _meta(scope_kind, scope_id, key, request_id, expected)
        result = await self._send(context, SetConfigValue(meta, scope_kind, scope_id, key, request.value_json))
        return config_pb2.SetValueReply(entry_id=meta.aggregate_id, version=result.version, changed=bool(result.event_ids))

    async def UnsetValue(
        self, request: config_pb2.UnsetValueRequest, context: grpc.aio.ServicerContext
    ) -> config_pb2.UnsetValueReply:
        (scope_kind, scope_id), key = _scope(request.scope_kind, request.scope_id), _key(request.key)
        expected, request_id = _expected_version(request), _request_id(request.request_id)
        await self._require_writer(scope_kind, scope_id)
        meta = _meta(scope_kind, scope_id, key, request_id, expected)
        result = await self._send(context, UnsetConfigValue(meta, scope_kind, scope_id, key))
        return config_pb2.UnsetValueReply(entry_id=meta.aggregate_id, version=result.version)

    async def _require_writer(self, scope_kind: str, scope_id: str) -> None:
        if scope_kind == TENANT:
            await self.authorizer.require(scope_id, WRITER_ROLE)
        # Checked on the token's scope, not on a membership: anyone may create a
        # tenant and own it, but only platform principals speak for every tenant.
        elif PLATFORM_SCOPE not in current_principal().scopes:
            raise PermissionDenied(f"only platform principals may set {scope_kind} values")

    async def _send(self, context: grpc.aio.ServicerContext, command: Command) -> CommandResult:
        assert self.commands is not None, "SERVICE declares sends_commands"
        remaining = context.time_remaining()
        timeout = COMMAND_TIMEOUT_S if remaining is None else max(0.1, min(COMMAND_TIMEOUT_S, remaining - 0.2))
        try:
            result = await self.commands.send(command, timeout=timeout)
        except CommandTimeout:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"no decision from the config hub in {timeout:.1f}s; resend with the same request_id to learn the outcome",
            )
        if result.accepted:
            return result
        if result.rejection == InvalidCommand.__name__:
            raise InvalidArgument(result.reason)
        raise FailedPrecondition(f"{result.rejection}: {result.reason}")


def _meta(scope_kind: str, scope_id: str, key: str, request_id: str, expected_version: int | None) -> CommandMeta:
    actor = current_principal().id
    # Per caller, so one principal's request id never answers for another's.
    command_id = str(uuid.uuid5(REQUEST_NAMESPACE, f"{actor}\n{request_id}")) if request_id else None
    return new_meta(
        entry_id(scope_kind, scope_id, key),
        owner_tenant(scope_kind, scope_id),
        actor=actor,
        command_id=command_id,
        expected_version=expected_version,
    )


def _valid(check: Callable[[], object]) -> None:
    """Run one of the aggregate's checks on a request field: its refusal, which
    names the field, is INVALID_ARGUMENT."""
    try:
        check()
    except InvalidCommand as exc:
        raise InvalidArgument(str(exc)) from None


def _tenant(value: str) -> str:
    value = tenant(value)
    _valid(lambda: check_tenant_id(value, "tenant_id"))
    return value


def _environment(value: str) -> str:
    if value:
        _valid(lambda: check_environment(value, "environment"))
    return value


def _key(value: str) -> str:
    _valid(lambda: check_key(value, "key"))
    return value


def _request_id(value: str) -> str:
    if len(value) > MAX_REQUEST_ID:
        raise InvalidArgument(f"request_id must be at most {MAX_REQUEST_ID} characters")
    return value


def _scope(kind: int, scope_id: str) -> tuple[str, str]:
    scope_kind = _SCOPE_FROM_PROTO.get(kind)
    if scope_kind is None:
        raise InvalidArgument("scope_kind must be SCOPE_KIND_GLOBAL, SCOPE_KIND_ENVIRONMENT or SCOPE_KIND_TENANT")
    _valid(lambda: check_scope(scope_kind, scope_id))
    return scope_kind, scope_id


def _expected_version(request) -> int | None:
    if not request.HasField("expected_version"):
        return None
    if request.expected_version < 0:
        raise InvalidArgument(f"expected_version must be 0 or more, not {request.expected_version}")
    return request.expected_version


def _in(environment: str) -> str:
    return f" in environment {environment}" if environment else ""


def _scoped(row) -> ScopedValue:
    return ScopedValue(row["scope_kind"], row["scope_id"], row["key"], row["value_json"], row["version"], row["changed_at"])


def _change(row) -> Change:
    return Change(row["scope_kind"], row["scope_id"], row["key"], row["version"], row["changed_at"], row["value_json"])


def _effective_value(value: ScopedValue) -> config_pb2.EffectiveValue:
    return config_pb2.EffectiveValue(
        key=value.key,
        value_json=value.value_json,
        source_scope=_SCOPE_TO_PROTO[value.scope_kind],
        source_scope_id=value.scope_id,
        version=value.version,
        changed_at=to_timestamp(value.changed_at),
    )


def _decode_token(token: str) -> str:
    key = decode_token(token)
    if key:
        try:
            check_key(key)
        except InvalidCommand:
            raise InvalidArgument("page_token is not a token this service issued") from None
    return key


def _add_to_server(server: grpc.aio.Server, deps: ServiceDeps) -> None:
    config_pb2_grpc.add_ConfigServiceServicer_to_server(ConfigServicer(deps), server)


def _routes() -> tuple[Route, ...]:
    """The REST operations of this service (the API gateway answers them with these methods).
    A write's Idempotency-Key is its request id; If-Match its expected version."""
    m = methods(config_pb2, "ConfigService")
    values = "/v1/tenants/{tenant_id}/config/{environment}/values"
    write = {"idempotency_field": "request_id", "version_field": "expected_version"}
    return (
        Route("GET", values, m.ListEffective, "The values in effect for a tenant in an environment."),
        Route("GET", values + "/{key}", m.GetEffectiveValue, "The value in effect for one key."),
        Route("GET", values + "/{key}/history", m.GetValueAt, "The value that was in effect at `at`."),
        Route("PUT", "/v1/config/values/{key}", m.SetValue, "Set a key in a scope (global, environment or tenant).", **write),
        Route("DELETE", "/v1/config/values/{key}", m.UnsetValue, "Unset a key in a scope.", **write),
    )


SERVICE = QueryService(
    hub="config",
    read_model=PROJECTION,
    service_names=(config_pb2.DESCRIPTOR.services_by_name["ConfigService"].full_name,),
    add_to_server=_add_to_server,
    sends_commands=True,
    http_routes=_routes(),
)
