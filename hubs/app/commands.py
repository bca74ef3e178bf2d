"""App hub commands: what callers may ask — register an app (a bot, an
integration), and, for a tenant, subscribe to an app, unsubscribe, and set the
guards of its subscription, and connect the subscription to the tenant's own bot."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from schemas.contracts import Command


@dataclass(frozen=True)
class AppCommand(Command):
    hub: ClassVar[str] = "app"


@dataclass(frozen=True)
class RegisterApp(AppCommand):
    """Aggregate id: the new app's id (a UUID); the command's tenant publishes it
    (the `platform` tenant for first-party apps)."""

    name: str
    kind: str
    channels: list[str]
    visibility: str = "private"


@dataclass(frozen=True)
class SubscribeApp(AppCommand):
    """Aggregate id: `subscription_id(tenant_id, app_id)`."""

    app_id: str


@dataclass(frozen=True)
class UnsubscribeApp(AppCommand):
    app_id: str


@dataclass(frozen=True)
class SetSubscriptionGuards(AppCommand):
    """Replaces the subscription's guards. Empty `channels`: every channel the app
    supports; empty `page_ids`: every page; `business_hours` None: any time,
    otherwise `{"timezone": "Europe/Paris", "windows": [{"day": "mon", "opens":
    "09:00", "closes": "17:00"}, …]}`."""

    app_id: str
    channels: list[str]
    page_ids: list[str]
    business_hours: dict[str, Any] | None = None


@dataclass(frozen=True)
class ConnectBot(AppCommand):
    """Aggregate id: `subscription_id(tenant_id, app_id)`. Sets (or rotates, by saving
    again) the bot connection the subscription's messages are asked with: the Botpress
    Chat integration's webhook id and its webhook secret, sealed for this tenant and
    app (`hubs.app.bot.webhook_secret_context`) — never a clear secret."""

    app_id: str
    webhook_id: str
    sealed_webhook_secret: str


def subscription_id(tenant_id: str, app_id: str) -> str:
    """The aggregate id of `tenant_id`'s subscription to `app_id`: readable in the
    log and as the Kafka key, and one per (tenant, app) by construction."""
    return f"{tenant_id}/{app_id}"


COMMANDS = (RegisterApp, SubscribeApp, UnsubscribeApp, SetSubscriptionGuards, ConnectBot)
