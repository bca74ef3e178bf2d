"""Wallet gRPC queries (GetBalance, ListLedger) over the wallet read store, and
the matching operator CLI queries. Parsing and answering only; SQL lives in
projections/wallet/queries.py."""

from __future__ import annotations

import asyncio
import json

import click
import grpc

from infra.arguments import tenant, uuid_of
from infra.grpc_server import NotFound, QueryService, ServiceDeps, to_timestamp
from infra.paging import MAX_PAGE, page_size, paginate, parse_token
from infra.rest import UUID_FIELD, Route, methods
from projections.wallet import PROJECTION, queries
from schemas.protos import wallet_pb2, wallet_pb2_grpc


class WalletQueries(wallet_pb2_grpc.WalletQueryServicer):
    def __init__(self, deps: ServiceDeps):
        self.pool, self.authorizer = deps.pool, deps.authorizer

    async def GetBalance(self, request: wallet_pb2.GetBalanceRequest, context: grpc.aio.ServicerContext) -> wallet_pb2.Balance:
        tenant_id, wallet_id = tenant(request.tenant_id), uuid_of(request.wallet_id, "wallet_id")
        await self.authorizer.require(tenant_id, "viewer")
        row = await queries.balance(self.pool, tenant_id, wallet_id)
        if row is None:
            raise NotFound(f"wallet {wallet_id} not found for tenant {tenant_id}")
        return wallet_pb2.Balance(
            wallet_id=str(row["wallet_id"]),
            tenant_id=row["tenant_id"],
            currency=row["currency"],
            balance=row["balance"],
            reserved=row["reserved"],
            available=row["balance"] - row["reserved"],
            version=row["version"],
            updated_at=to_timestamp(row["updated_at"]),
        )

    async def ListLedger(self, request: wallet_pb2.ListLedgerRequest, context: grpc.aio.ServicerContext) -> wallet_pb2.LedgerPage:
        tenant_id, wallet_id = tenant(request.tenant_id), uuid_of(request.wallet_id, "wallet_id")
        await self.authorizer.require(tenant_id, "viewer")
        size = page_size(request.page_size)
        after = parse_token(request.page_token, int, 0)
        rows = await queries.ledger_page(self.pool, tenant_id, wallet_id, after, size + 1)
        if not rows and after == 0 and await queries.balance(self.pool, tenant_id, wallet_id) is None:
            raise NotFound(f"wallet {wallet_id} not found for tenant {tenant_id}")
        page, next_token = paginate(rows, size, "version")
        return wallet_pb2.LedgerPage(
            entries=[
                wallet_pb2.LedgerEntry(
                    version=r["version"],
                    kind=r["kind"],
                    amount=r["amount"],
                    balance_delta=r["balance_delta"],
                    reserved_delta=r["reserved_delta"],
                    entry_id=r["entry_id"],
                    reservation_id=r["reservation_id"],
                    reference=r["reference"],
                    event_id=str(r["event_id"]),
                    correlation_id=r["correlation_id"],
                    occurred_at=to_timestamp(r["occurred_at"]),
                )
                for r in page
            ],
            next_page_token=next_token,
        )


def _add_to_server(server: grpc.aio.Server, deps: ServiceDeps) -> None:
    wallet_pb2_grpc.add_WalletQueryServicer_to_server(WalletQueries(deps), server)


def _routes() -> tuple[Route, ...]:
    """The REST operations of this service (the API gateway answers them with these methods)."""
    m = methods(wallet_pb2, "WalletQuery")
    return (
        Route(
            "GET",
            "/v1/tenants/{tenant_id}/wallets/{wallet_id}",
            m.GetBalance,
            "A wallet's balance, reserved and available amounts.",
        ),
        Route("GET", "/v1/tenants/{tenant_id}/wallets/{wallet_id}/ledger", m.ListLedger, "A wallet's ledger, oldest first."),
    )


SERVICE = QueryService(
    hub="wallet",
    read_model=PROJECTION,
    service_names=(wallet_pb2.DESCRIPTOR.services_by_name["WalletQuery"].full_name,),
    add_to_server=_add_to_server,
    http_routes=_routes(),
    http_fields={"wallet_id": UUID_FIELD},
)


def _query_cli(name: str, method: str, build, **option_help: str) -> click.Command:
    def run(**opts) -> None:
        from google.protobuf.json_format import MessageToDict

        from infra import grpc_client

        # The CLI (poseidon/cli.py) hands every command its settings through click's context.
        settings = click.get_current_context().find_root().obj()

        async def call():
            async with grpc_client.channel(settings, "wallet", grpc_client.operator_token(settings)) as channel:
                stub = wallet_pb2_grpc.WalletQueryStub(channel)
                return await getattr(stub, method)(build(**opts), timeout=10)

        try:
            reply = asyncio.run(call())
        except grpc.aio.AioRpcError as exc:
            raise click.ClickException(f"{exc.code().name}: {exc.details()}") from None
        click.echo(json.dumps(MessageToDict(reply, preserving_proto_field_name=True), indent=2))

    params = [click.Option([f"--{k.replace('_', '-')}"], required=True, help=h) for k, h in option_help.items()]
    return click.Command(name, callback=run, params=params, help=f"Query {method} over gRPC.")


CLI_QUERIES = [
    _query_cli(
        "balance",
        "GetBalance",
        lambda wallet, tenant: wallet_pb2.GetBalanceRequest(tenant_id=tenant, wallet_id=wallet),
        wallet="Wallet id.",
        tenant="Tenant id.",
    ),
    _query_cli(
        "ledger",
        "ListLedger",
        lambda wallet, tenant: wallet_pb2.ListLedgerRequest(tenant_id=tenant, wallet_id=wallet, page_size=MAX_PAGE),
        wallet="Wallet id.",
        tenant="Tenant id.",
    ),
]
