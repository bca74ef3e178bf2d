"""App gRPC queries (GetApp, ListApps, GetSubscription, ListSubscriptions,
CheckGuards) over the app read store. Parsing, role checks and answering only:
SQL lives in projections/app/queries.py, the routing decision in hubs/app/guards.py."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import asyncpg
import grpc

from hubs.app.aggregate import PLATFORM_TENANT
from hubs.app.guards import CHANNELS, AppFacts, Guards, SubscriptionFacts, evaluate_subscription
from infra.arguments import tenant, uuid_of
from infra.grpc_server import InvalidArgument, NotFound, QueryService, ServiceDeps, to_timestamp
from infra.paging import page_size, paginate, parse_token
from infra.rest import UUID_FIELD, Route, methods
from projections.app import PROJECTION, queries
from schemas.protos import app_pb2, app_pb2_grpc

TOKEN_VERSION = "a1"
READ_ROLE = "viewer"


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


def _routes() -> tuple[Route, ...]:
    """The REST operations of this service (the API gateway answers them with these methods)."""
    m = methods(app_pb2, "AppQuery")
    return (
        Route("GET", "/v1/tenants/{tenant_id}/apps", m.ListApps, "The tenant's apps, a page at a time."),
        Route("GET", "/v1/tenants/{tenant_id}/apps/{app_id}", m.GetApp, "One app."),
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
    )


SERVICE = QueryService(
    hub="app",
    read_model=PROJECTION,
    service_names=(app_pb2.DESCRIPTOR.services_by_name["AppQuery"].full_name,),
    add_to_server=_add_to_server,
    http_routes=_routes(),
    http_fields={"app_id": UUID_FIELD},
)
