"""What the Tenant hub's connect flow needs from a chat platform to accept a proof of
control of an account (a Facebook page), as a contract both sides import: the Tenant
gRPC service (which holds it) and the spoke that implements it with the platform's
calls (spokes/facebook/connect.py), wired together by the composition root. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

FACEBOOK_PAGE_CONTROL = "facebook_page_control"
"""The name under which the composition root hands the Tenant service its PageControl."""

# The rules a refused connect flow names (the gRPC answer starts with one of them).
INVALID_CODE = "InvalidCode"
"""The OAuth code is malformed, expired, already used, or for another redirect_uri: log in again."""
LOGIN_EXPIRED = "LoginExpired"
"""The user token Facebook gave is invalid or expired (Graph 190): log in again."""
MISSING_PERMISSION = "MissingPermission"
"""The user did not grant what the flow needs (pages_show_list, pages_messaging, pages_manage_metadata)."""
PAGE_NOT_MANAGED = "PageNotManaged"
"""The page is not among those the logged-in user manages (or they may not message as it): no proof."""
RATE_LIMITED = "RateLimited"
"""Facebook throttles the app, user or page: try again after `retry_after` seconds."""
UNAVAILABLE = "FacebookUnavailable"
"""Facebook did not answer usefully (5xx, timeout, breaker open): try again later."""
APP_MISCONFIGURED = "AppMisconfigured"
"""Facebook refused the platform's app id or secret: an operator must fix the settings."""


@dataclass(frozen=True)
class ProvenPage:
    """A page the logged-in user manages, with the page access token Facebook gave for it."""

    page_id: str
    name: str
    page_token: str = field(repr=False)
    """Clear: seal it at once (infra/sealing.py); never log, store or send it as it is."""


class ConnectRefused(Exception):
    """The connect flow cannot prove control; `rule` names why (the constants above),
    `message` says it to the tenant admin (Graph's own message, never a token)."""

    def __init__(self, rule: str, message: str, *, retry_after: float | None = None):
        super().__init__(f"{rule}: {message}")
        self.rule, self.message, self.retry_after = rule, message, retry_after


class PageControl(Protocol):
    def dialog_url(self, redirect_uri: str, state: str) -> str:
        """The Login dialog the admin's browser opens; it comes back to `redirect_uri` with a code and `state`."""
        ...

    async def prove(self, tenant_id: str, code: str, redirect_uri: str, page_id: str) -> ProvenPage:
        """Exchanges `code`, lists the pages the user manages, and subscribes the app to
        `page_id` if it is one of them; raises ConnectRefused otherwise."""
        ...


def page_token_context(tenant_id: str, page_id: str) -> str:
    """What a page token is sealed for (authenticated data): it opens for this tenant and
    page only, so a sealed token copied to another tenant's or page's row is useless."""
    return f"tenant/{tenant_id}/facebook/{page_id}/page-token"
