"""The Graph API Send API over httpx: one POST per message, every failure raised as an
infra.spoke exception (RetryableError / PermanentError / ReauthorizationRequired).
The page token travels in the Authorization header, never in a URL (httpx logs URLs);
nothing here logs tokens, message text or PSIDs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from base.settings import Settings
from infra.spoke import PermanentError, ReauthorizationRequired, RetryableError, SpokeContext, SpokeError
from spokes.facebook.translate import (
    DEFAULT_RATE_LIMIT_WAIT_S,
    PERMANENT,
    REAUTHORIZE,
    RESPONSE,
    GraphFailure,
    InvalidOutbound,
    appsecret_proof,
    attachment_message,
    classify_graph_error,
    text_message,
)

GRAPH_API_VERSION = "v23.0"


@dataclass(frozen=True)
class SendResult:
    recipient_id: str
    message_id: str
    """The Send API's message id (mid): what delivery and read receipts will name."""


class FacebookClient:
    """Send API calls for any page: the page token is an argument of each call, so one
    client serves every tenant (their breakers are kept apart by SpokeContext.call)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        settings: Settings,
        *,
        api_version: str = GRAPH_API_VERSION,
        rate_limit_wait_s: float = DEFAULT_RATE_LIMIT_WAIT_S,
    ):
        self.http = http
        self.base_url = settings.facebook_graph_url.rstrip("/")
        self.api_version = api_version
        self.app_secret = settings.facebook_app_secret
        self.rate_limit_wait_s = rate_limit_wait_s

    @classmethod
    def for_context(cls, ctx: SpokeContext, **options: Any) -> FacebookClient:
        return cls(ctx.http, ctx.settings, **options)

    async def send_text(self, page_token: str, psid: str, text: str, messaging_type: str = RESPONSE, tag: str = "") -> str:
        """Sends `text` to `psid`; returns the Send API message id."""
        return (await self.send(page_token, _outbound(text_message, psid, text, messaging_type, tag))).message_id

    async def send_attachment(
        self,
        page_token: str,
        psid: str,
        attachment_type: str,
        url: str,
        messaging_type: str = RESPONSE,
        tag: str = "",
        *,
        reusable: bool = False,
    ) -> str:
        """Sends an image/audio/video/file that Facebook fetches from `url`; returns the message id."""
        body = _outbound(attachment_message, psid, attachment_type, url, messaging_type, tag, reusable=reusable)
        return (await self.send(page_token, body)).message_id

    async def send(self, page_token: str, body: dict[str, Any]) -> SendResult:
        """POSTs a Send API body (built by translate) to /{version}/me/messages."""
        if not page_token:
            raise ReauthorizationRequired("no page access token for this channel", code="reauthorization_required")
        params = {"appsecret_proof": appsecret_proof(self.app_secret, page_token)} if self.app_secret else None
        response = await self.http.post(
            f"{self.base_url}/{self.api_version}/me/messages",
            params=params,
            json=body,
            headers={"Authorization": f"Bearer {page_token}"},
        )
        if response.status_code == 200:
            return _sent(response)
        raise as_exception(
            classify_graph_error(
                response.status_code,
                response.content,
                response.headers,
                now=datetime.now(UTC),
                default_retry_after=self.rate_limit_wait_s,
            )
        )


def as_exception(failure: GraphFailure) -> SpokeError:
    """The infra.spoke exception for a classified Graph failure."""
    if failure.kind == REAUTHORIZE:
        return ReauthorizationRequired(failure.reason, code=failure.code)
    if failure.kind == PERMANENT:
        return PermanentError(failure.reason, code=failure.code)
    return RetryableError(failure.reason, code=failure.code, retry_after=failure.retry_after)


def _outbound(build, *args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        return build(*args, **kwargs)
    except InvalidOutbound as refused:
        raise PermanentError(refused.reason, code=refused.code) from None


def _sent(response: httpx.Response) -> SendResult:
    # A 200 means Facebook accepted the message: it is sent, even if the answer is odd
    # (reported without its message id; failing it would invite sending it again).
    try:
        body = response.json()
        return SendResult(recipient_id=str(body.get("recipient_id", "")), message_id=str(body.get("message_id") or ""))
    except (ValueError, AttributeError):
        return SendResult(recipient_id="", message_id="")
