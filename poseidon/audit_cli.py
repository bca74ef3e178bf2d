"""`poseidon audit`: the auditor's commands (verify the hash chains, replay a
history). Parses input and hands it to infra.audit; owns no audit logic."""

from __future__ import annotations

import asyncio
import json
import sys

import click

from poseidon import bootstrap
from poseidon.cli_settings import cli_settings

_settings = cli_settings


def _hubs(hub_name: str | None) -> list:
    try:
        return [bootstrap.hub(hub_name)] if hub_name else list(bootstrap.hubs().values())
    except KeyError as exc:
        raise click.BadParameter(exc.args[0], param_hint="--hub") from None


@click.group()
def audit() -> None:
    """Tamper evidence and replay for audit: verify the log, report a history."""


@audit.command("verify")
@click.option("--hub", "hub_name", help="Only this hub's events (default: every hub).")
@click.option("--aggregate", help="Only this aggregate's stream.")
@click.option("--tenant", help="Only the streams of this tenant (envelope tenant_id).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-progress", is_flag=True, help="No progress bar (for logs).")
def verify_command(hub_name: str | None, aggregate: str | None, tenant: str | None, as_json: bool, no_progress: bool) -> None:
    """Verify the hash chain of every aggregate's events from offset 0 and name
    the first broken link of each broken stream. Exits 1 when any link is broken."""
    from infra.audit import verify

    settings = _settings()
    hubs = _hubs(hub_name)
    try:
        report = asyncio.run(
            verify(
                settings,
                bootstrap.codec(settings),
                hubs,
                aggregate=aggregate,
                tenant=tenant,
                progress=not no_progress and not as_json,
            )
        )
    except LookupError as exc:
        raise click.ClickException(f"{exc}; run `poseidon topics create`") from None
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.render())
    if not report.ok:
        sys.exit(1)


@audit.command("history")
@click.option("--aggregate", help="The history of one aggregate.")
@click.option("--correlation", help="The history of one conversation or flow (correlation id), across every topic.")
@click.option("--tenant", help="The history of one tenant.")
@click.option("--hub", "hub_name", help="Only this hub's events and command results (no spoke or ingress records).")
@click.option("--from", "start_time", help="ISO-8601 time (UTC if no zone): occurred_at at or after it.")
@click.option("--to", "end_time", help="ISO-8601 time (UTC if no zone): occurred_at before it.")
@click.option("--from-offset", type=click.IntRange(min=0), help="First offset read in every partition.")
@click.option("--to-offset", type=click.IntRange(min=0), help="Offset where every partition's read stops (excluded).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-progress", is_flag=True, help="No progress bar (for logs).")
def history_command(
    aggregate: str | None,
    correlation: str | None,
    tenant: str | None,
    hub_name: str | None,
    start_time: str | None,
    end_time: str | None,
    from_offset: int | None,
    to_offset: int | None,
    as_json: bool,
    no_progress: bool,
) -> None:
    """The ordered history (by occurred_at, then topic and offset) of one
    aggregate, conversation or tenant, personal data masked."""
    from infra.audit import HistoryQuery, Window, history, history_topics, parse_time

    if sum(x is not None for x in (aggregate, correlation, tenant)) != 1:
        raise click.UsageError("name exactly one of --aggregate, --correlation, --tenant")
    if start_time is not None and from_offset is not None or end_time is not None and to_offset is not None:
        raise click.UsageError("--from and --from-offset (or --to and --to-offset) exclude each other")
    try:
        window = Window(
            start_time=parse_time(start_time) if start_time else None,
            end_time=parse_time(end_time) if end_time else None,
            start_offset=from_offset,
            end_offset=to_offset,
        )
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO-8601 time: {exc}", param_hint="--from/--to") from None
    settings = _settings()
    hubs = _hubs(hub_name)
    topics = history_topics(hubs, [] if hub_name else list(bootstrap.spokes()), ingress=not hub_name)
    query = HistoryQuery(aggregate=aggregate, correlation=correlation, tenant=tenant, window=window)
    report = asyncio.run(history(settings, bootstrap.codec(settings), topics, query, progress=not no_progress and not as_json))
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.render())


if __name__ == "__main__":
    audit()
