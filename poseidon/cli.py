"""The `poseidon` command line: runs the platform's processes and gives operators
every hub's commands (`poseidon wallet credit --wallet W --amount 500`). Entry
points only parse input, build a command and hand it on."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import uuid

import click

from poseidon import bootstrap, roles
from poseidon.cli_settings import cli_settings

_settings = cli_settings


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """Poseidon Hub: event-sourced hub-and-spoke message broker."""
    # Commands declared below poseidon/ (a read model's CLI queries) get their
    # settings from here, built when they need them: nothing below looks them up.
    ctx.obj = _settings


@main.command("hubs")
def list_hubs() -> None:
    """Print the hubs this installation runs, one per line."""
    for name in bootstrap.hubs():
        click.echo(name)


@main.group("tls")
def tls_group() -> None:
    """TLS certificates of the gRPC wires (infra/tls.py)."""


@tls_group.command("init")
def tls_init() -> None:
    """Write a development CA with server and client certificates for 127.0.0.1, ::1 and
    localhost to <state dir>/tls (or POSEIDON_TLS_DIR), unless one is there. Development only:
    production points POSEIDON_TLS_CERT / _KEY / _CA at real certificates."""
    from infra import tls

    folder = tls.files(_settings()).ca.parent
    click.echo(f"{'created' if tls.init_dev_ca(folder) else 'kept'} the development CA in {folder}")


@main.command("prometheus-config")
@click.option("--rules", default="infra/prometheus/rules.yml", show_default=True, help="Rules file Prometheus loads.")
def prometheus_config(rules: str) -> None:
    """Print a Prometheus configuration scraping every role of this platform (its ops ports)."""
    from poseidon.devstack import prometheus_config as config

    click.echo(config(_settings(), rules), nl=False)


@main.command("spokes")
def list_spokes() -> None:
    """Print the spokes this installation runs, one per line."""
    for name in bootstrap.spokes():
        click.echo(name)


@main.group()
def topics() -> None:
    """Kafka topics of the platform."""


@topics.command("create")
@click.option("--hub", "hub_names", multiple=True, help="Only these hubs (default: all).")
def topics_create(hub_names: tuple[str, ...]) -> None:
    """Create every missing topic with its partitions, cleanup policy and retention."""
    from infra.topics import ensure_topics, hub_topics

    settings = _settings()
    if hub_names:
        specs = [spec for name, hub in bootstrap.hubs().items() if name in hub_names for spec in hub_topics(hub)]
    else:
        specs = bootstrap.all_topics()
    created = asyncio.run(ensure_topics(settings, specs))
    click.echo(f"{len(created)} topics created, {len(specs) - len(created)} already existed")


@main.command()
@click.argument("hub_name")
def processor(hub_name: str) -> None:
    """Run a hub's aggregate processor."""
    from infra.hub import answer_topics
    from infra.processor import AggregateProcessor

    settings = _settings()
    answers = answer_topics(bootstrap.hubs().values(), settings.topic)
    AggregateProcessor(bootstrap.processor_hub(hub_name, settings), settings, bootstrap.codec(settings), answers).run()


@main.command()
@click.argument("name")
def projector(name: str) -> None:
    """Run a read model's projector (events → PostgreSQL)."""
    from infra.projector import Projector

    settings = _settings()
    proj = Projector(bootstrap.projection(name), settings, bootstrap.codec(settings))
    asyncio.run(proj.serve())


@main.command()
@click.argument("hub_name")
def grpc(hub_name: str) -> None:
    """Serve a hub's gRPC queries (with health and reflection)."""
    asyncio.run(roles.grpc(hub_name, _settings()))


@main.command()
def ingress() -> None:
    """Serve the webhook ingress (Facebook, Botpress callbacks) with /healthz (metrics on the ops port, 9080 by default)."""
    asyncio.run(roles.ingress(_settings()))


@main.command()
def gateway() -> None:
    """Serve the REST API (OpenAPI at /openapi.json, OAuth2 token endpoint, JWKS) over the hubs' gRPC methods."""
    asyncio.run(roles.gateway(_settings()))


@main.command()
def router() -> None:
    """Run the Message Hub's router: ingress.inbound → routing decisions (MessageRouted / MessageRejected)."""
    asyncio.run(roles.router(_settings()))


@main.command("saga-driver")
def saga_driver() -> None:
    """Run the saga driver: sends requested steps and compensations, feeds results and deadlines back."""
    asyncio.run(roles.saga_driver(_settings()))


@main.command()
def dashboard() -> None:
    """Serve the operator saga dashboard (login, live saga list and timelines, actions, dead letters)."""
    asyncio.run(roles.dashboard(_settings()))


@main.command()
@click.argument("specs", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every role `make run` starts (stand-ins aside).")
def together(specs: tuple[str, ...], every: bool) -> None:
    """Run several roles in one process: processor:<hub>, projector:<hub>, grpc:<hub>,
    spoke:<name>, ingress, router, saga-driver, gateway, dashboard (the small layout
    of one machine; production runs one role per process)."""
    try:
        asyncio.run(roles.together([*(roles.every_role() if every else ()), *specs], _settings()))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


@main.command("spoke")
@click.argument("name")
def run_spoke(name: str) -> None:
    """Run a spoke (adapter to an outside system) on the shared spoke runtime."""
    asyncio.run(roles.spoke(name, _settings()))


@main.group()
def token() -> None:
    """Signing keys and tokens (needs the keyring: POSEIDON_JWT_KEYS_DIR)."""


@token.command("issue")
@click.option("--principal", required=True, help="Principal id (the `sub` claim).")
@click.option("--kind", type=click.Choice(["user", "service"]), default="service", show_default=True)
@click.option("--platform", "platform_scope", is_flag=True, help="Platform scope: every tenant, as owner.")
@click.option("--ttl", type=int, default=900, show_default=True, help="Seconds.")
def token_issue(principal: str, kind: str, platform_scope: bool, ttl: int) -> None:
    """Print an access token signed with the active key."""
    from infra.security import PLATFORM_SCOPE, Keyring, TokenIssuer

    settings = _settings()
    scopes = [PLATFORM_SCOPE] if platform_scope else []
    click.echo(TokenIssuer(Keyring.of(settings), settings).access_token(principal, kind, scopes, ttl_s=ttl))


@token.command("rotate")
def token_rotate() -> None:
    """Add a new signing key; tokens signed by older keys stay valid until they expire."""
    from infra.security import Keyring

    settings = _settings()
    click.echo(Keyring.of(settings).rotate())


@token.command("remove-key")
@click.argument("kid")
def token_remove_key(kid: str) -> None:
    """Revoke a signing key: its private and public files go, and every running
    verifier refuses the tokens it signed within a second (the newest remaining key signs)."""
    from infra.security import Keyring

    if not Keyring.of(_settings()).remove(kid):
        raise click.ClickException(f"no signing key {kid!r}")
    click.echo(f"removed {kid}")


_TYPES = {"int": int, "str": str, "int | None": int}


def _hub_group(hub) -> click.Group:
    group = click.Group(hub.name, help=f"Send commands to the {hub.name} hub and wait for their result.")
    for verb, command_cls in hub.cli_verbs.items():
        group.add_command(_command_cli(hub, verb, command_cls))
    for query in bootstrap.cli_queries(hub.name):
        group.add_command(query)
    return group


def _command_cli(hub, verb: str, command_cls) -> click.Command:
    payload_fields = [f for f in dataclasses.fields(command_cls) if f.name != "meta"]

    def run(**options) -> None:
        from infra.command_client import CommandClient, new_meta

        settings = _settings()
        aggregate_id = options.pop("aggregate_id") or (str(uuid.uuid4()) if verb == "open" else None)
        if aggregate_id is None:
            raise click.UsageError(f"--{hub.aggregate_option} is required")
        meta = new_meta(
            aggregate_id,
            aggregate_id if hub.aggregate_is_tenant else options.pop("tenant"),
            actor=options.pop("actor"),
            command_id=options.pop("command_id"),
            expected_version=options.pop("expected_version"),
        )
        command = command_cls(meta=meta, **{k.replace("-", "_"): v for k, v in options.items()})

        async def send():
            async with CommandClient(settings, bootstrap.codec(settings), [hub]) as client:
                return await client.send(command)

        from infra.command_client import CommandTimeout

        try:
            result = asyncio.run(send())
        except CommandTimeout as exc:
            raise click.ClickException(f"{exc} (is the {hub.name} processor running?)") from None
        click.echo(json.dumps({**dataclasses.asdict(result), hub.aggregate_option: aggregate_id}, indent=2))
        if not result.accepted:
            sys.exit(1)

    params = [
        click.Option([f"--{hub.aggregate_option}", "aggregate_id"], required=verb != "open", help=f"{hub.name} id."),
        *(
            []
            if hub.aggregate_is_tenant
            else [click.Option(["--tenant"], required=True, help="Tenant id that owns the aggregate.")]
        ),
        click.Option(["--actor"], default="operator-cli", show_default=True),
        click.Option(["--command-id"], default=None, help="Reuse to resend a command safely."),
        click.Option(["--expected-version"], type=int, default=None, help="Optimistic concurrency check."),
    ]
    for f in payload_fields:
        required = f.default is dataclasses.MISSING
        params.append(
            click.Option(
                [f"--{f.name.replace('_', '-')}"],
                type=_TYPES.get(str(f.type), str),
                required=required,
                default=None if required else f.default,
            )
        )
    return click.Command(verb, callback=run, params=params, help=f"Send {command_cls.__name__}.")


def _add_operator_commands() -> None:
    from poseidon.audit_cli import audit
    from poseidon.connect_cli import connect
    from poseidon.replay_cli import replay

    main.add_command(audit)
    main.add_command(connect)
    main.add_command(replay)


_add_operator_commands()

for _hub in bootstrap.hubs().values():
    main.add_command(_hub_group(_hub))


if __name__ == "__main__":
    main()
