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


def _service_name() -> str:
    """The trace service of this process: the command and its arguments (`poseidon-processor-message`)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return "poseidon"
    words = [ctx.info_name or "", *(v for v in ctx.params.values() if isinstance(v, str))]
    return "-".join(["poseidon", *words])
