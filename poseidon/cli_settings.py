"""The settings every CLI command starts from: read once from the environment,
an invalid value shown as a usage error, logging and tracing configured from them."""

from __future__ import annotations

import click

from base.logging import configure
from base.settings import Settings, SettingsError
from infra import tracing
from poseidon import bootstrap


def cli_settings() -> Settings:
    try:
        settings = bootstrap.settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    configure(settings.log_level, settings.log_format)
    tracing.configure(settings, _service_name())
    return settings


ROLE_ARGUMENTS = ("hub_name", "name")
"""The only arguments a trace service name takes (a hub, a read model, a spoke): never
an option's value, which may be a secret (`poseidon connect bot`'s webhook secret), a
tenant or an id — a service name goes out with every span."""


def _service_name() -> str:
    """The trace service of this process: the command and its role argument (`poseidon-processor-message`)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return "poseidon"
    words, at = [], ctx
    while at.parent is not None:  # the command's path below the root (`connect bot`), whatever ran the root
        words.insert(0, at.info_name or "")
        at = at.parent
    words += [str(ctx.params[name]) for name in ROLE_ARGUMENTS if isinstance(ctx.params.get(name), str)]
    return "-".join(["poseidon", *words])
