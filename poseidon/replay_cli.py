"""`poseidon replay`: rebuild a read store (whole or one tenant, to the present or
to an end position) into a shadow schema, show the difference from the live one,
and swap it in on confirmation. Parses options and prints; the work is infra/replay.py."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from poseidon import bootstrap
from poseidon.cli_settings import cli_settings


def parse_offsets(text: str | None) -> dict[int, int] | int | None:
    """`120` (every partition) or `0:120,1:98` (partition:offset, exclusive)."""
    if text is None:
        return None
    try:
        if ":" not in text:
            return int(text)
        return {int(p): int(o) for p, o in (part.split(":") for part in text.split(","))}
    except ValueError:
        raise click.BadParameter("expected OFFSET or PARTITION:OFFSET[,PARTITION:OFFSET…]", param_hint="--to-offset") from None


def parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter("expected an ISO 8601 time", param_hint="--to-time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def render(report: dict[str, Any], name: str) -> str:
    """The report as text: scope, per-table difference with sample keys, and what happened to the shadow."""
    scope = f"tenant {report['tenant']}" if report.get("tenant") else "all tenants"
    if report.get("partial"):
        scope += f", up to {report.get('to_time') or report.get('to_offsets')} (partial)"
    lines = [f"{report['read_model']}: {scope}; shadow {report['shadow_schema']}"]
    if "events" in report:
        lines.append(f"  {report['events']} events applied in {report['seconds']} s; end positions {report.get('end_positions')}")
    diff = report.get("diff")
    if diff is None:
        lines.append("  no live store to compare with")
    else:
        for table, d in diff.items():
            lines.append(f"  {table}: {d['only_live']} only live, {d['only_shadow']} only in rebuild")
            for side in ("only_live", "only_shadow"):
                for key in d[f"{side}_keys"]:
                    lines.append(f"    {side.replace('_', ' ')}: " + ", ".join(f"{k}={v}" for k, v in key.items()))
    shadow = report["shadow_schema"]
    if report.get("swapped"):
        lines.append(f"swapped in ({'tenant ' + report['tenant'] + ' rows replaced' if report.get('tenant') else 'whole store'})")
    elif report.get("kept"):
        lines.append(f"kept {shadow}. Swap it in:  poseidon replay {name} --swap {shadow}")
        lines.append(f"             or drop it:  poseidon replay {name} --drop {shadow}")
    else:
        lines.append("dropped (dry run)")
    return "\n".join(lines)


@click.command()
@click.argument("name")
@click.option("--tenant", help="Rebuild, compare and swap only this tenant's rows.")
@click.option("--to-offset", help="End position: OFFSET for every partition, or P:OFFSET,P:OFFSET (exclusive). Partial.")
@click.option("--to-time", help="End position: each partition stops at its first event later than this ISO time (UTC if naive).")
@click.option("--confirm", is_flag=True, help="Swap the rebuild in right away (otherwise it is kept to inspect).")
@click.option("--force-partial", is_flag=True, help="Allow swapping a partial (--to-offset/--to-time) rebuild in.")
@click.option("--dry-run", is_flag=True, help="Rebuild, show the difference, drop it (exit 1 if any).")
@click.option("--swap", "swap_name", metavar="SHADOW", help="Swap in a kept rebuild by name.")
@click.option("--drop", "drop_name", metavar="SHADOW", help="Drop a kept rebuild by name.")
@click.option("--samples", type=int, default=5, show_default=True, help="Sample keys shown per table and side.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-progress", is_flag=True, help="No progress bar (for logs).")
def replay(
    name: str,
    tenant: str | None,
    to_offset: str | None,
    to_time: str | None,
    confirm: bool,
    force_partial: bool,
    dry_run: bool,
    swap_name: str | None,
    drop_name: str | None,
    samples: int,
    as_json: bool,
    no_progress: bool,
) -> None:
    """Rebuild a read store into a shadow schema and show how it differs from the live one.

    Without --confirm the shadow is kept (its name and the commands to swap or
    drop it are printed); with --confirm it is swapped in: the whole store by an
    atomic schema rename, or with --tenant only that tenant's rows, replaced in
    one transaction. A partial rebuild (--to-offset/--to-time) is for
    investigation: swapping it needs --force-partial, which swaps the past store
    in with its positions so the live projector replays forward to the present;
    a partial tenant rebuild behind the live store is never swapped (its later
    events would be lost).
    """
    from infra import replay as r

    if sum(map(bool, (dry_run, confirm, swap_name, drop_name))) > 1:
        raise click.UsageError("--dry-run, --confirm, --swap and --drop exclude each other")
    if (swap_name or drop_name) and (tenant or to_offset or to_time):
        raise click.UsageError("--swap/--drop act on a kept rebuild: its tenant and end position are already fixed")
    settings = _settings()
    spec = bootstrap.projection(name)
    codec = bootstrap.codec(settings)
    try:
        if drop_name:
            asyncio.run(r.drop_shadow(spec, settings, drop_name))
            click.echo(json.dumps({"dropped": drop_name}) if as_json else f"dropped {drop_name}")
            return
        if swap_name:
            report = asyncio.run(r.swap_shadow(spec, settings, codec, swap_name, force_partial=force_partial, samples=samples))
        else:
            report = asyncio.run(
                r.rebuild(
                    spec,
                    settings,
                    codec,
                    swap=confirm,
                    keep=not dry_run,
                    progress=not no_progress,
                    tenant=tenant,
                    to_offsets=parse_offsets(to_offset),
                    to_time=parse_time(to_time),
                    force_partial=force_partial,
                    samples=samples,
                )
            )
    except r.ReplayError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(report, indent=2, default=str) if as_json else render(report, name))
    if dry_run and any((report.get("differences") or {}).values()):
        sys.exit(1)


_settings = cli_settings


if __name__ == "__main__":
    replay()
