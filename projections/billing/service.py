"""Billing gRPC queries (GetEntitlement, CheckEntitlement, GetQuota) over the
billing read store, and a CLI helper printing a tenant's entitlement id. Parsing
and answering only: SQL lives in projections/billing/queries.py, the answers'
logic in hubs/billing/answers.py (the Message Hub's router judges with it too).
No method changes billing state."""

from __future__ import annotations

from datetime import UTC, datetime

import click
import grpc

from hubs.billing import answers
from hubs.billing.aggregate import FEATURE
from hubs.billing.commands import entitlement_id
from infra.arguments import tenant
from infra.grpc_server import InvalidArgument, NotFound, QueryService, ServiceDeps, to_timestamp
from infra.rest import Route, methods
from projections.billing import PROJECTION, queries
from schemas.protos import billing_pb2, billing_pb2_grpc


class BillingQueries(billing_pb2_grpc.BillingQueryServicer):
    def __init__(self, deps: ServiceDeps):
        self.pool, self.authorizer = deps.pool, deps.authorizer

    async def GetEntitlement(
        self, request: billing_pb2.GetEntitlementRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.Entitlement:
        tenant_id = tenant(request.tenant_id)
        await self.authorizer.require(tenant_id, "viewer")
        row = await self._row(tenant_id)
        terms = answers.Terms.from_row(row)
        quota = answers.quota(terms, datetime.now(UTC))
        return billing_pb2.Entitlement(
            tenant_id=row["tenant_id"],
            entitlement_id=str(row["entitlement_id"]),
            plan=row["plan"],
            status=row["status"],
            cancel_reason=row["cancel_reason"],
            message_quota=quota.quota,
            used=quota.used,
            remaining=quota.remaining,
            features=list(row["features"]),
            period_start=to_timestamp(row["period_start"]),
            period_end=to_timestamp(row["period_end"]),
            reason=billing_pb2.Reason.Value(quota.reason),
            version=row["version"],
            updated_at=to_timestamp(row["updated_at"]),
        )

    async def CheckEntitlement(
        self, request: billing_pb2.CheckEntitlementRequest, context: grpc.aio.ServicerContext
    ) -> billing_pb2.EntitlementCheck:
        tenant_id = tenant(request.tenant_id)
        if not FEATURE.match(request.feature):
            raise InvalidArgument(f"feature must be 1 to 64 lower-case letters, digits or . _ : -, not {request.feature!r}")
        await self.authorizer.require(tenant_id, "viewer")
        row = await queries.entitlement(self.pool, tenant_id)
        terms = answers.Terms.from_row(row) if row is not None else None
        entitled, reason = answers.check(terms, request.feature, datetime.now(UTC))
        return billing_pb2.EntitlementCheck(
            tenant_id=tenant_id, feature=request.feature, entitled=entitled, reason=billing_pb2.Reason.Value(reason)
        )

    async def GetQuota(self, request: billing_pb2.GetQuotaRequest, context: grpc.aio.ServicerContext) -> billing_pb2.Quota:
        tenant_id = tenant(request.tenant_id)
        await self.authorizer.require(tenant_id, "viewer")
        row = await self._row(tenant_id)
        quota = answers.quota(answers.Terms.from_row(row), datetime.now(UTC))
        return billing_pb2.Quota(
            tenant_id=tenant_id,
            quota=quota.quota,
            used=quota.used,
            remaining=quota.remaining,
            reason=billing_pb2.Reason.Value(quota.reason),
            period_start=to_timestamp(row["period_start"]),
            period_end=to_timestamp(row["period_end"]),
        )

    async def _row(self, tenant_id: str):
        row = await queries.entitlement(self.pool, tenant_id)
        if row is None:
            raise NotFound(f"tenant {tenant_id} has no entitlement")
        return row


def _add_to_server(server: grpc.aio.Server, deps: ServiceDeps) -> None:
    billing_pb2_grpc.add_BillingQueryServicer_to_server(BillingQueries(deps), server)


def _routes() -> tuple[Route, ...]:
    """The REST operations of this service (the API gateway answers them with these methods)."""
    m = methods(billing_pb2, "BillingQuery")
    return (
        Route("GET", "/v1/tenants/{tenant_id}/entitlement", m.GetEntitlement, "The tenant's plan and entitlement."),
        Route(
            "GET",
            "/v1/tenants/{tenant_id}/entitlement/features/{feature}",
            m.CheckEntitlement,
            "Is a feature included in the tenant's plan?",
        ),
        Route("GET", "/v1/tenants/{tenant_id}/quota", m.GetQuota, "The tenant's message quota and use."),
    )


SERVICE = QueryService(
    hub="billing",
    read_model=PROJECTION,
    service_names=(billing_pb2.DESCRIPTOR.services_by_name["BillingQuery"].full_name,),
    add_to_server=_add_to_server,
    http_routes=_routes(),
)


@click.command("entitlement-id")
@click.option("--tenant", required=True, help="Tenant id.")
def _entitlement_id_cli(tenant: str) -> None:
    """Print the id of a tenant's entitlement (the --entitlement of the command verbs)."""
    click.echo(entitlement_id(tenant))


# Only a local helper: gRPC query verbs like wallet's would copy its client
# plumbing (reported; grpcurl works meanwhile through reflection).
CLI_QUERIES = [_entitlement_id_cli]
