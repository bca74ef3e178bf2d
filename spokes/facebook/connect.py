"""Proving that a tenant controls a Facebook page (Facebook Login for Business), for
the Tenant hub's connect flow (`hubs.tenant.proof.PageControl`): the OAuth code is
exchanged for a user token, made long-lived, the pages that token manages are listed,
and only a page on that list is proven — after our app is subscribed to its webhook
fields with the page's own token. Every Graph call goes through the spoke runtime's
one policy (`SpokeContext.call`: the breaker of (facebook-login, tenant), the shared
classification of Graph's answers) with a single attempt: a person waits on the other
end, and an OAuth code is single-use (a retried exchange after a lost answer would
only meet "code has been used"). Never logs a token or a code."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from base.settings import Settings
from hubs.tenant.proof import (
    APP_MISCONFIGURED,
    INVALID_CODE,
    LOGIN_EXPIRED,
    MISSING_PERMISSION,
    PAGE_NOT_MANAGED,
    RATE_LIMITED,
    UNAVAILABLE,
    ConnectRefused,
    ProvenPage,
)
from infra.spoke import PermanentError, ReauthorizationRequired, RetryableError, SpokeContext, SpokeError
from spokes.facebook.client import FacebookLogin
from spokes.facebook.spoke import SPOKE

log = structlog.get_logger(__name__)
T = TypeVar("T")

LOGIN_SYSTEM = "facebook-login"
"""Breakers and metrics of the connect flow's calls: apart from the Send API's, so an
admin's failed logins never hold up a tenant's replies."""
MESSAGING_TASKS = frozenset({"MESSAGING", "MANAGE", "MODERATE"})
"""A page task that lets the user (and so our app, with the page token) message as the page."""


class FacebookPageControl:
    """`PageControl` over the Graph API; one per Tenant gRPC server, for its lifetime."""

    def __init__(self, settings: Settings):
        # One attempt (see the module's docstring); the breaker and timeouts as every spoke's.
        self.ctx = SpokeContext(SPOKE, settings.with_(spoke_max_attempts=1), None, None)  # type: ignore[arg-type]
        self.login = FacebookLogin(self.ctx.http, settings)

    def dialog_url(self, redirect_uri: str, state: str) -> str:
        return self.login.dialog_url(redirect_uri, state)

    async def prove(self, tenant_id: str, code: str, redirect_uri: str, page_id: str) -> ProvenPage:
        short = await self._call(tenant_id, "exchange_code", lambda: self.login.exchange_code(code, redirect_uri), code=True)
        user_token = await self._call(tenant_id, "long_lived_token", lambda: self.login.long_lived(short))
        pages = await self._call(tenant_id, "managed_pages", lambda: self.login.managed_pages(user_token))
        page = next((p for p in pages if p.page_id == page_id), None)
        if page is None or not page.access_token:
            raise ConnectRefused(
                PAGE_NOT_MANAGED,
                f"page {page_id} is not among the {len(pages)} page(s) the Facebook user who logged in manages",
            )
        if page.tasks and not MESSAGING_TASKS & set(page.tasks):
            raise ConnectRefused(PAGE_NOT_MANAGED, f"the Facebook user who logged in may not message as page {page_id}")
        await self._call(tenant_id, "subscribe_app", lambda: self.login.subscribe_app(page_id, page.access_token))
        log.info("facebook page control proven", tenant_id=tenant_id, page_id=page_id, pages_listed=len(pages))
        return ProvenPage(page.page_id, page.name, page.access_token)

    async def close(self) -> None:
        await self.ctx.http.aclose()

    async def _call(self, tenant_id: str, operation: str, fn: Callable[[], Awaitable[T]], *, code: bool = False) -> T:
        async def login_call() -> T:
            try:
                return await fn()
            except ReauthorizationRequired as exc:
                # A user's login that expired says nothing of Facebook's health nor of the
                # tenant's stored page token: not a failure its breaker counts.
                raise PermanentError(exc.reason, code="login_expired") from None

        try:
            return await self.ctx.call(tenant_id, operation, login_call, LOGIN_SYSTEM, at_most_once=True)
        except SpokeError as exc:
            raise refusal(exc, code=code) from None


def refusal(exc: SpokeError, *, code: bool = False) -> ConnectRefused:
    """The connect flow's answer for a failed Graph call (its reason carries Graph's message and fbtrace_id)."""
    if isinstance(exc, RetryableError):
        if exc.code == "rate_limited":
            return ConnectRefused(RATE_LIMITED, exc.reason, retry_after=exc.retry_after)
        return ConnectRefused(UNAVAILABLE, exc.reason)
    if exc.code == "login_expired":
        return ConnectRefused(LOGIN_EXPIRED, f"{exc.reason}; log in with Facebook again")
    if exc.code == "permission_denied":
        return ConnectRefused(MISSING_PERMISSION, f"{exc.reason}; log in again and grant every permission asked")
    if code and exc.code == "invalid_parameter":
        return ConnectRefused(INVALID_CODE, f"{exc.reason}; start the connect flow again")
    if exc.code == "graph_error" and code:
        return ConnectRefused(APP_MISCONFIGURED, exc.reason)
    return ConnectRefused(UNAVAILABLE, exc.reason)
