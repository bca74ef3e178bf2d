"""The settings every CLI command starts from: read once from the environment,
an invalid value shown as a usage error, logging configured from them."""

from __future__ import annotations

import click

from base.logging import configure
from base.settings import Settings, SettingsError
from poseidon import bootstrap


def cli_settings() -> Settings:
    try:
        settings = bootstrap.settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    configure(settings.log_level, settings.log_format)
    return settings
