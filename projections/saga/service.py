"""Saga gRPC queries (GetSaga, ListSagas) over the saga read store, for operators
(admin of the tenant, or a platform principal). Parsing and answering only; SQL
lives in projections/saga/queries.py. The operator dashboard reads the store directly."""

from __future__ import annotations

import uuid

import grpc

from hubs.saga.definition import STATES
from infra.arguments import tenant, uuid_of
from infra.grpc_server import InvalidArgument, NotFound, QueryService, ServiceDeps, to_timestamp
from infra.paging import decode_token, page_size, paginate
from infra.rest import UUID_FIELD, Route, methods
from projections.saga import PROJECTION, queries
from schemas.protos import saga_pb2, saga_pb2_grpc

MINIMUM_ROLE = "admin"


class SagaQueries(saga_pb2_grpc.SagaQueryServicer):
    def __init__(self, deps: ServiceDeps):
        self.pool, self.authorizer = deps.pool, deps.authorizer

    async def GetSaga(self, request: saga_pb2.GetSagaRequest, context: grpc.aio.ServicerContext) -> saga_pb2.SagaDetail:
        tenant_id, saga_id = tenant(request.tenant_id), uuid_of(request.saga_id, "saga_id")
        await self.authorizer.require(tenant_id, MINIMUM_ROLE)
        row = await queries.saga(self.pool, tenant_id, saga_id)
        if row is None:
            raise NotFound(f"saga {saga_id} not found for tenant {tenant_id}")
        events = await queries.timeline(self.pool, tenant_id, saga_id)
        return saga_pb2.SagaDetail(
            saga=_saga(row),
            timeline=[
                saga_pb2.TimelineEntry(
                    version=e["version"],
                    event_type=e["event_type"],
                    step=e["step"],
                    summary=e["summary"],
                    actor=e["actor"],
                    occurred_at=to_timestamp(e["occurred_at"]),
                )
                for e in events
            ],
        )

    async def ListSagas(self, request: saga_pb2.ListSagasRequest, context: grpc.aio.ServicerContext) -> saga_pb2.SagaPage:
        tenant_id = tenant(request.tenant_id)
        if request.state and request.state not in STATES:
            raise InvalidArgument(f"state must be empty or one of {', '.join(STATES)}, not {request.state!r}")
        size = page_size(request.page_size)
        after = uuid_of(decode_token(request.page_token, str(uuid.UUID(int=0))), "page_token")
        await self.authorizer.require(tenant_id, MINIMUM_ROLE)
        rows = await queries.saga_page(self.pool, tenant_id, request.state, after, size + 1)
        page, next_token = paginate(rows, size, "saga_id")
        return saga_pb2.SagaPage(sagas=[_saga(r) for r in page], next_page_token=next_token)


def _saga(row) -> saga_pb2.Saga:
    return saga_pb2.Saga(
        saga_id=str(row["saga_id"]),
        tenant_id=row["tenant_id"],
        saga_type=row["saga_type"],
        state=row["state"],
        current_step=row["current_step"],
        correlation_id=row["correlation_id"],
        error=row["error"],
        version=row["version"],
        started_at=to_timestamp(row["started_at"]),
        updated_at=to_timestamp(row["updated_at"]),
    )


def _add_to_server(server: grpc.aio.Server, deps: ServiceDeps) -> None:
    saga_pb2_grpc.add_SagaQueryServicer_to_server(SagaQueries(deps), server)


def _routes() -> tuple[Route, ...]:
    """The REST operations of this service (the API gateway answers them with these methods)."""
    m = methods(saga_pb2, "SagaQuery")
    return (
        Route("GET", "/v1/tenants/{tenant_id}/sagas", m.ListSagas, "The tenant's sagas (optionally in one state)."),
        Route("GET", "/v1/tenants/{tenant_id}/sagas/{saga_id}", m.GetSaga, "One saga with its steps."),
    )


SERVICE = QueryService(
    hub="saga",
    read_model=PROJECTION,
    service_names=(saga_pb2.DESCRIPTOR.services_by_name["SagaQuery"].full_name,),
    add_to_server=_add_to_server,
    http_routes=_routes(),
    http_fields={"saga_id": UUID_FIELD},
)
