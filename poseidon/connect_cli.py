"""`poseidon connect bot|odoo`: a tenant admin (or an operator) connects the tenant's
own bot and Odoo through the same gRPC commands the REST API exposes
(AppConnections.ConnectBot, TenantChannels.ConnectOdoo). Acts as POSEIDON_TOKEN (an
admin's access token) when set, otherwise as a platform operator. Secrets are read
from a hidden prompt or an environment variable, never from the command line (which
`ps` shows to everyone), and never printed."""

from __future__ import annotations

import asyncio
import json

import click
import grpc
from google.protobuf.json_format import MessageToDict

from infra import grpc_client
from schemas.protos import app_pb2, app_pb2_grpc, tenant_pb2, tenant_pb2_grpc


def _call(hub: str, call):
    settings = click.get_current_context().find_root().obj()

    async def run():
        async with grpc_client.channel(settings, hub, grpc_client.operator_token(settings)) as channel:
            return await call(channel)

    try:
        reply = asyncio.run(run())
    except grpc.aio.AioRpcError as exc:
        raise click.ClickException(f"{exc.code().name}: {exc.details()}") from None
    click.echo(json.dumps(MessageToDict(reply, preserving_proto_field_name=True), indent=2))


@click.group("connect")
def connect() -> None:
    """Connect a tenant's own bot or Odoo (pages: the Facebook connect flow, StartFacebookConnect)."""


@connect.command("bot")
@click.option("--tenant", required=True, help="Tenant id.")
@click.option("--app", "app_id", required=True, help="The bot app (UUID) the tenant subscribed to.")
@click.option("--webhook-id", required=True, help="The Botpress Chat integration's webhook id.")
@click.option(
    "--webhook-secret",
    envvar="POSEIDON_CONNECT_WEBHOOK_SECRET",
    prompt=True,
    hide_input=True,
    show_envvar=True,
    help="The Chat integration's webhook secret (prompted, or from the environment variable).",
)
@click.option("--command-id", default="", help="Reuse to resend safely.")
def connect_bot(tenant: str, app_id: str, webhook_id: str, webhook_secret: str, command_id: str) -> None:
    """Connect the tenant's subscription to its own bot (saving again rotates the secret)."""
    request = app_pb2.ConnectBotRequest(
        tenant_id=tenant, app_id=app_id, webhook_id=webhook_id, webhook_secret=webhook_secret, command_id=command_id
    )
    _call("app", lambda ch: app_pb2_grpc.AppConnectionsStub(ch).ConnectBot(request, timeout=30))


@connect.command("odoo")
@click.option("--tenant", required=True, help="Tenant id.")
@click.option("--url", required=True, help="The Odoo server's https URL (https://acme.odoo.com).")
@click.option("--database", required=True, help="The Odoo database.")
@click.option("--login", required=True, help="The Odoo user's login.")
@click.option("--protocol", type=click.Choice(["xmlrpc", "json2"]), default="xmlrpc", show_default=True)
@click.option(
    "--api-key",
    envvar="POSEIDON_CONNECT_ODOO_API_KEY",
    prompt=True,
    hide_input=True,
    show_envvar=True,
    help="The Odoo user's API key (prompted, or from the environment variable).",
)
@click.option("--command-id", default="", help="Reuse to resend safely.")
def connect_odoo(tenant: str, url: str, database: str, login: str, protocol: str, api_key: str, command_id: str) -> None:
    """Save the tenant's own Odoo connection, after the platform authenticated with it."""
    request = tenant_pb2.ConnectOdooRequest(
        tenant_id=tenant, url=url, database=database, login=login, api_key=api_key, protocol=protocol, command_id=command_id
    )
    _call("tenant", lambda ch: tenant_pb2_grpc.TenantChannelsStub(ch).ConnectOdoo(request, timeout=60))


@connect.command("odoo-show")
@click.option("--tenant", required=True, help="Tenant id.")
def show_odoo(tenant: str) -> None:
    """The tenant's own Odoo connection (never its API key)."""
    request = tenant_pb2.GetOdooConnectionRequest(tenant_id=tenant)
    _call("tenant", lambda ch: tenant_pb2_grpc.TenantQueryStub(ch).GetOdooConnection(request, timeout=10))
