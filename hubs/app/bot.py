"""A subscription's bot connection, as a contract both sides import: the App gRPC
service seals the webhook secret for it, the Botpress spoke and ingress open it.
Pure."""

from __future__ import annotations

import re

WEBHOOK_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
"""A Botpress Chat integration's webhook id (Botpress Cloud: a UUID; the stand-in: a slug):
one path segment of `https://chat.botpress.cloud/<webhook id>`."""
MIN_SECRET, MAX_SECRET = 8, 512
"""Bounds of a clear webhook secret (Botpress lets the integration's owner choose it)."""


def webhook_secret_context(tenant_id: str, app_id: str) -> str:
    """What a bot's webhook secret is sealed for (authenticated data): it opens for this
    tenant's subscription to this app only, so a sealed secret copied elsewhere is useless."""
    return f"tenant/{tenant_id}/app/{app_id}/botpress-webhook-secret"
