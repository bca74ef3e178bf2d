"""App gRPC queries (GetApp, ListApps, GetSubscription, ListSubscriptions,
CheckGuards) over the app read store, and AppConnections.ConnectBot (a tenant
admin connects its subscription to its own bot: the webhook secret is sealed for
the tenant and app here, before it enters any command, and never answered back).
Parsing, role checks and answering only: SQL lives in projections/app/queries.py,
the routing decision in hubs/app/guards.py."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import grpc

from hubs.app.aggregate import KINDS, MAX_NAME, PLATFORM_TENANT, VISIBILITIES
from hubs.app.bot import MAX_SECRET, MIN_SECRET, WEBHOOK_ID, webhook_secret_context
from hubs.app.commands import (
    ConnectBot,
    RegisterApp,
    SetSubscriptionGuards,
    SubscribeApp,
    UnsubscribeApp,
    subscription_id,
)
from hubs.app.guards import CHANNELS, AppFacts, Guards, SubscriptionFacts, evaluate_subscription
from infra.arguments import tenant, uuid_of
from infra.command_client import new_meta
from infra.grpc_server import InvalidArgument, NotFound, QueryService, ServiceDeps, refusal, to_timestamp
from infra.paging import page_size, paginate, parse_token
from infra.rest import UUID_FIELD, Route, methods
from infra.sealing import Sealer, credential_keys_dir
from infra.security import current_principal
from projections.app import PROJECTION, queries
from schemas.protos import app_pb2, app_pb2_grpc

TOKEN_VERSION = "a1"
READ_ROLE = "viewer"
CONNECT_ROLE = "admin"
COMMAND_TIMEOUT_S = 15.0
PROJECTION_WAIT_S = 3.0


class AppQueries(app_pb2_grpc.AppQueryServicer):
    def __init__(self, deps: ServiceDeps):
        self.pool, self.authorizer = deps.pool, deps.authorizer

    async def GetApp(self, request: app_pb2.GetAppRequest, context: grpc.aio.ServicerContext) -> app_pb2.App:
        tenant_id, app_id = tenant(request.tenant_id), uuid_of(request.app_id, "app_id")
        await self.authorizer.require(tenant_id, READ_ROLE)
        row = await queries.app(self.pool, tenant_id, app_id)
        if row is None:
            raise NotFound(f"app {app_id} not found for tenant {tenant_id}")
        return _app(row, tenant_id)

    async def ListApps(self, request: app_pb2.ListAppsRequest, context: grpc.aio.ServicerContext) -> app_pb2.AppPage:
        tenant_id = tenant(request.tenant_id)
        size, after = page_size(request.page_size), _after(request.page_token)
        await self.authorizer.require(tenant_id, READ_ROLE)
        rows = await queries.apps_page(self.pool, tenant_id, after, size + 1)
        page, next_token = paginate(rows, size, "app_id", TOKEN_VERSION)
        return app_pb2.AppPage(apps=[_app(r, tenant_id) for r in page], next_page_token=next_token)

    async def GetSubscription(
        self, request: app_pb2.GetSubscriptionRequest, context: grpc.aio.ServicerContext
    ) -> app_pb2.Subscription:
        tenant_id, app_id = tenant(request.tenant_id), uuid_of(request.app_id, "app_id")
        await self.authorizer.require(tenant_id, READ_ROLE)
        row = await queries.subscription(self.pool, tenant_id, app_id)
        if row is None:
            raise NotFound(f"tenant {tenant_id} has no subscription to app {app_id}")
        return _subscription(row)

    async def ListSubscriptions(
        self, request: app_pb2.ListSubscriptionsRequest, context: grpc.aio.ServicerContext
    ) -> app_pb2.SubscriptionPage:
        tenant_id = tenant(request.tenant_id)
        size, after = page_size(request.page_size), _after(request.page_token)
        await self.authorizer.require(tenant_id, READ_ROLE)
        rows = await queries.subscriptions_page(self.pool, tenant_id, after, request.active_only, size + 1)
        page, next_token = paginate(rows, size, "app_id", TOKEN_VERSION)
        return app_pb2.SubscriptionPage(subscriptions=[_subscription(r) for r in page], next_page_token=next_token)

    async def CheckGuards(self, request: app_pb2.CheckGuardsRequest, context: grpc.aio.ServicerContext) -> app_pb2.GuardDecision:
        tenant_id, app_id = tenant(request.tenant_id), uuid_of(request.app_id, "app_id")
        if request.channel not in CHANNELS:
            raise InvalidArgument(f"channel must be one of {', '.join(sorted(CHANNELS))}, not {request.channel!r}")
        at = request.at.ToDatetime(tzinfo=UTC) if request.HasField("at") else datetime.now(UTC)
        await self.authorizer.require(tenant_id, READ_ROLE)
        row = await queries.routing(self.pool, tenant_id, app_id)
        subscription = app = None
        if row is not None:
            subscription = SubscriptionFacts(row["active"], _guards(row))
            if row["app_tenant_id"] is not None:
                app = AppFacts(row["app_tenant_id"], row["app_visibility"], frozenset(row["app_channels"]))
        decision = evaluate_subscription(tenant_id, str(app_id), app, subscription, request.channel, request.page_id, at)
        return app_pb2.GuardDecision(allowed=decision.allowed, rule=decision.rule, reason=decision.reason, at=to_timestamp(at))


class AppConnections(app_pb2_grpc.AppConnectionsServicer):
    def __init__(self, deps: ServiceDeps):
        assert deps.commands is not None, "the app service declares sends_commands"
        self.pool, self.authorizer, self.commands = deps.pool, deps.authorizer, deps.commands
        self.sealer = Sealer(credential_keys_dir(deps.settings))

    async def ConnectBot(
        self, request: app_pb2.ConnectBotRequest, context: grpc.aio.ServicerContext
    ) -> app_pb2.BotConnectionReply:
        tenant_id, app_id = tenant(request.tenant_id), uuid_of(request.app_id, "app_id")
        await self.authorizer.require(tenant_id, CONNECT_ROLE)  # before the request's fields: another tenant learns nothing
        if not WEBHOOK_ID.match(request.webhook_id):
            # The value is not echoed: pasted in the wrong field, it would be the secret.
            raise InvalidArgument("webhook_id must be 1 to 128 of A-Z a-z 0-9 _ -")
        secret = request.webhook_secret
        if not MIN_SECRET <= len(secret) <= MAX_SECRET or not secret.isprintable():
            raise InvalidArgument(f"webhook_secret must be {MIN_SECRET} to {MAX_SECRET} printable characters")
        if len(request.command_id) > 200:
            raise InvalidArgument("command_id must be at most 200 characters")
        app = await queries.app(self.pool, tenant_id, app_id)
        if app is None or app["kind"] != "bot":
            raise NotFound(f"no bot app {app_id} for tenant {tenant_id}")
        sealed = self.sealer.seal(secret.encode(), webhook_secret_context(tenant_id, str(app_id)))
        del secret  # the clear secret goes no further than the seal
        aggregate_id, caller = subscription_id(tenant_id, str(app_id)), current_principal()
        meta = new_meta(aggregate_id, tenant_id, actor=caller.id, command_id=request.command_id or None)
        command = ConnectBot(meta, app_id=str(app_id), webhook_id=request.webhook_id, sealed_webhook_secret=sealed)
        result = await self.commands.send(command, timeout=COMMAND_TIMEOUT_S)
        if not result.accepted:
            raise refusal(result)
        projected = await _projected(self.pool, tenant_id, app_id, result.version)
        return app_pb2.BotConnectionReply(
            tenant_id=tenant_id,
            app_id=str(app_id),
            webhook_id=request.webhook_id,
            command_id=result.command_id,
            version=result.version,
            duplicate=result.duplicate,
            projected=projected,
        )


class AppSubscriptions(app_pb2_grpc.AppSubscriptionsServicer):
    """A tenant admin's subscription writes: each an App hub command on the subscription."""

    def __init__(self, deps: ServiceDeps):
        assert deps.commands is not None, "the app service declares sends_commands"
        self.pool, self.authorizer, self.commands = deps.pool, deps.authorizer, deps.commands

    async def Subscribe(self, request: app_pb2.SubscriptionRequest, context) -> app_pb2.SubscriptionChange:
        tenant_id, app_id = await self._visible_app(request)
        return await self._decide(tenant_id, app_id, SubscribeApp, request.command_id)

    async def Unsubscribe(self, request: app_pb2.SubscriptionRequest, context) -> app_pb2.SubscriptionChange:
        tenant_id, app_id = await self._visible_app(request)
        return await self._decide(tenant_id, app_id, UnsubscribeApp, request.command_id)

    async def SetGuards(self, request: app_pb2.SetGuardsRequest, context) -> app_pb2.SubscriptionChange:
        tenant_id, app_id = await self._visible_app(request)
        g = request.guards
        hours = None
        if g.HasField("business_hours"):
            windows = [{"day": w.day, "opens": w.opens, "closes": w.closes} for w in g.business_hours.windows]
            hours = {"timezone": g.business_hours.timezone, "windows": windows}
        fields = {"channels": list(g.channels), "page_ids": list(g.page_ids), "business_hours": hours}
        return await self._decide(tenant_id, app_id, SetSubscriptionGuards, request.command_id, **fields)

    async def _visible_app(self, request) -> tuple[str, uuid.UUID]:
        tenant_id, app_id = tenant(request.tenant_id), uuid_of(request.app_id, "app_id")
        await self.authorizer.require(tenant_id, CONNECT_ROLE)  # before the request's fields: another tenant learns nothing
        if len(request.command_id) > 200:
            raise InvalidArgument("command_id must be at most 200 characters")
        if await queries.app(self.pool, tenant_id, app_id) is None:
            raise NotFound(f"no app {app_id} for tenant {tenant_id}")
        return tenant_id, app_id

    async def _decide(self, tenant_id: str, app_id: uuid.UUID, command_type, command_id: str, **fields):
        aggregate_id = subscription_id(tenant_id, str(app_id))
        meta = new_meta(aggregate_id, tenant_id, actor=current_principal().id, command_id=command_id or None)
        result = await self.commands.send(command_type(meta, app_id=str(app_id), **fields), timeout=COMMAND_TIMEOUT_S)
        if not result.accepted:
            raise refusal(result)
        return app_pb2.SubscriptionChange(
            tenant_id=tenant_id,
            app_id=str(app_id),
            subscription_id=aggregate_id,
            version=result.version,
            duplicate=result.duplicate,
            projected=await _projected(self.pool, tenant_id, app_id, result.version),
        )


APP_IDS = uuid.UUID("0d7f3a52-5a0b-5c8e-9f41-7b2c6e1d8a93")
"""uuid5 namespace of app ids derived from a registration's command id. Never change it."""


class AppPublishing(app_pb2_grpc.AppPublishingServicer):
    """A tenant admin registers the tenant's own apps."""

    def __init__(self, deps: ServiceDeps):
        assert deps.commands is not None, "the app service declares sends_commands"
        self.pool, self.authorizer, self.commands = deps.pool, deps.authorizer, deps.commands

    async def RegisterApp(self, request: app_pb2.RegisterAppRequest, context) -> app_pb2.AppChange:
        tenant_id = tenant(request.tenant_id)
        await self.authorizer.require(tenant_id, CONNECT_ROLE)  # before the request's fields: another tenant learns nothing
        if len(request.command_id) > 200:
            raise InvalidArgument("command_id must be at most 200 characters")
        caller = current_principal()
        command_id = request.command_id or str(uuid.uuid4())
        # The app id follows from the command (per caller): a resend names the same app.
        app_id = str(uuid.uuid5(APP_IDS, f"{caller.id}\n{tenant_id}\n{command_id}"))
        meta = new_meta(app_id, tenant_id, actor=caller.id, command_id=command_id)
        command = RegisterApp(
            meta, name=request.name, kind=request.kind, channels=list(request.channels),
            visibility=request.visibility or "private",
        )  # fmt: skip
        result = await self.commands.send(command, timeout=COMMAND_TIMEOUT_S)
        if not result.accepted:
            raise refusal(result)
        return app_pb2.AppChange(
            tenant_id=tenant_id,
            app_id=app_id,
            version=result.version,
            duplicate=result.duplicate,
            projected=await _app_projected(self.pool, tenant_id, uuid.UUID(app_id), result.version),
        )


async def _app_projected(pool, tenant_id: str, app_id: uuid.UUID, version: int) -> bool:
    deadline = time.monotonic() + PROJECTION_WAIT_S
    while True:
        row = await queries.app(pool, tenant_id, app_id)
        if row is not None and row["version"] >= version:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.02)


async def _projected(pool, tenant_id: str, app_id: uuid.UUID, version: int) -> bool:
    """Whether the read store shows the subscription at `version` within PROJECTION_WAIT_S, so
    the caller's next query (and the spoke, within its cache's seconds) sees the connection."""
    deadline = time.monotonic() + PROJECTION_WAIT_S
    while True:
        row = await queries.subscription(pool, tenant_id, app_id)
        if row is not None and row["version"] >= version:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.02)


def _app(row: asyncpg.Record, tenant_id: str) -> app_pb2.App:
    return app_pb2.App(
        app_id=str(row["app_id"]),
        name=row["name"],
        kind=row["kind"],
        channels=row["channels"],
        visibility=row["visibility"],
        # The publisher is named only as "you" or "the platform": another tenant's id is its own business.
        owned=row["tenant_id"] == tenant_id,
        first_party=row["tenant_id"] == PLATFORM_TENANT,
        version=row["version"],
        registered_at=to_timestamp(row["registered_at"]),
    )


def _subscription(row: asyncpg.Record) -> app_pb2.Subscription:
    guards = _guards(row)
    channels, page_ids, hours = guards.to_record()
    message = app_pb2.Subscription(
        tenant_id=row["tenant_id"],
        app_id=str(row["app_id"]),
        subscription_id=row["subscription_id"],
        active=row["active"],
        guards=app_pb2.Guards(channels=channels, page_ids=page_ids),
        version=row["version"],
        subscribed_at=to_timestamp(row["subscribed_at"]),
        updated_at=to_timestamp(row["updated_at"]),
        bot_webhook_id=row["bot_webhook_id"],
    )
    if hours is not None:
        message.guards.business_hours.CopyFrom(
            app_pb2.BusinessHours(timezone=hours["timezone"], windows=[app_pb2.BusinessWindow(**w) for w in hours["windows"]])
        )
    return message


def _guards(row: asyncpg.Record) -> Guards:
    hours = row["business_hours"]
    return Guards.parse(row["channels"], row["page_ids"], None if hours is None else json.loads(hours))


def _after(token: str) -> uuid.UUID | None:
    return parse_token(token, uuid.UUID, None, TOKEN_VERSION)


def _add_to_server(server: grpc.aio.Server, deps: ServiceDeps) -> None:
    app_pb2_grpc.add_AppQueryServicer_to_server(AppQueries(deps), server)
    app_pb2_grpc.add_AppConnectionsServicer_to_server(AppConnections(deps), server)
    app_pb2_grpc.add_AppSubscriptionsServicer_to_server(AppSubscriptions(deps), server)
    app_pb2_grpc.add_AppPublishingServicer_to_server(AppPublishing(deps), server)


def _routes() -> tuple[Route, ...]:
    """The REST operations of this service (the API gateway answers them with these methods)."""
    m, connections = methods(app_pb2, "AppQuery"), methods(app_pb2, "AppConnections")
    subscriptions = methods(app_pb2, "AppSubscriptions")
    subscription = "/v1/tenants/{tenant_id}/apps/{app_id}/subscription"
    write = {"idempotency_field": "command_id", "affects": subscription}
    return (
        Route("GET", "/v1/tenants/{tenant_id}/apps", m.ListApps, "The tenant's apps, a page at a time."),
        Route("GET", "/v1/tenants/{tenant_id}/apps/{app_id}", m.GetApp, "One app."),
        Route(
            "POST",
            "/v1/tenants/{tenant_id}/apps",
            methods(app_pb2, "AppPublishing").RegisterApp,
            "Register an app the tenant publishes (admin): a bot or an integration, private or public.",
            201,
            idempotency_field="command_id",
            affects="/v1/tenants/{tenant_id}/apps/{app_id}",
        ),
        Route("GET", "/v1/tenants/{tenant_id}/subscriptions", m.ListSubscriptions, "The tenant's app subscriptions."),
        Route(
            "GET",
            "/v1/tenants/{tenant_id}/apps/{app_id}/subscription",
            m.GetSubscription,
            "An app's subscription and its guards.",
        ),
        Route(
            "POST",
            "/v1/tenants/{tenant_id}/apps/{app_id}/guards/check",
            m.CheckGuards,
            "Would the app's guards let a message through now (or at `at`)?",
        ),
        Route(
            "PUT",
            "/v1/tenants/{tenant_id}/apps/{app_id}/subscription/bot",
            connections.ConnectBot,
            "Connect the subscription to the tenant's own bot (Botpress Chat integration), or rotate its secret.",
            idempotency_field="command_id",
            affects="/v1/tenants/{tenant_id}/apps/{app_id}/subscription",
        ),
        Route("PUT", subscription, subscriptions.Subscribe, "Subscribe the tenant to the app (admin).", **write),
        Route("DELETE", subscription, subscriptions.Unsubscribe, "End the tenant's subscription to the app (admin).", **write),
        Route(
            "PUT",
            subscription + "/guards",
            subscriptions.SetGuards,
            "Replace the subscription's guards: channels, pages, business hours (admin).",
            **write,
        ),
    )


SERVICE = QueryService(
    hub="app",
    read_model=PROJECTION,
    service_names=(
        app_pb2.DESCRIPTOR.services_by_name["AppQuery"].full_name,
        app_pb2.DESCRIPTOR.services_by_name["AppConnections"].full_name,
        app_pb2.DESCRIPTOR.services_by_name["AppSubscriptions"].full_name,
        app_pb2.DESCRIPTOR.services_by_name["AppPublishing"].full_name,
    ),
    add_to_server=_add_to_server,
    sends_commands=True,
    http_routes=_routes(),
    http_fields={
        "app_id": UUID_FIELD,
        "name": {"minLength": 1, "maxLength": MAX_NAME},
        "kind": {"enum": list(KINDS)},
        "visibility": {"enum": ["", *VISIBILITIES], "description": "private (the default) or public"},
        "webhook_id": {"pattern": WEBHOOK_ID.pattern},
        "webhook_secret": {"minLength": MIN_SECRET, "maxLength": MAX_SECRET, "format": "password", "writeOnly": True},
    },
)
