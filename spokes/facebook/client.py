"""The Graph API over httpx: the Send API (one POST per message) and the Facebook Login
calls of connecting a page (code → user token → long-lived token, the pages it
manages, the app's subscription to a page), every failure raised as an infra.spoke
exception (RetryableError / PermanentError / ReauthorizationRequired).
Access tokens travel in the Authorization header and the OAuth exchanges' code, app
secret and tokens in a POST form body (Graph takes them there as in the query), never
in a URL: httpx logs every request's URL. Nothing here logs tokens, message text or PSIDs."""

from __future__ import annotations

from dataclasses import dataclass, field
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
        return _sent(await self._post_as_page("messages", page_token, body))

    async def take_thread_control(self, page_token: str, psid: str, metadata: str = "") -> None:
        """Messenger's Handover Protocol: take the person's thread back from the app
        holding it (the Page Inbox), so this app's messages reach them again."""
        body = {"recipient": {"id": psid}, **({"metadata": metadata[:1000]} if metadata else {})}
        await self._post_as_page("take_thread_control", page_token, body)

    async def _post_as_page(self, edge: str, page_token: str, body: dict[str, Any]) -> httpx.Response:
        """POSTs `body` to /{version}/me/{edge} as the page; a refusal is raised as the spoke exception it means."""
        if not page_token:
            raise ReauthorizationRequired("no page access token for this channel", code="reauthorization_required")
        params = {"appsecret_proof": appsecret_proof(self.app_secret, page_token)} if self.app_secret else None
        response = await self.http.post(
            f"{self.base_url}/{self.api_version}/me/{edge}",
            params=params,
            json=body,
            headers={"Authorization": f"Bearer {page_token}"},
        )
        if response.status_code == 200:
            return response
        raise as_exception(
            classify_graph_error(
                response.status_code,
                response.content,
                response.headers,
                now=datetime.now(UTC),
                default_retry_after=self.rate_limit_wait_s,
            )
        )


@dataclass(frozen=True)
class ManagedPage:
    """One entry of `/me/accounts`: a page the user manages, its token and the user's tasks on it."""

    page_id: str
    name: str
    access_token: str = field(repr=False)
    tasks: tuple[str, ...] = ()


LOGIN_SCOPES = ("pages_show_list", "pages_messaging", "pages_manage_metadata")
"""What connecting a page asks the user for: list their pages, message as one, subscribe our app to it."""
WEBHOOK_FIELDS = ("messages", "messaging_postbacks", "messaging_handovers")
MAX_ACCOUNT_PAGES = 20
"""`/me/accounts` pages followed at most (25 entries each by default)."""


class FacebookLogin:
    """Facebook Login for Business, server side: what proves a tenant controls a page."""

    def __init__(self, http: httpx.AsyncClient, settings: Settings, *, api_version: str = GRAPH_API_VERSION):
        self.http = http
        self.base_url = settings.facebook_graph_url.rstrip("/")
        self.login_url = settings.facebook_login_url.rstrip("/")
        self.api_version = api_version
        self.app_id, self.app_secret = settings.facebook_app_id, settings.facebook_app_secret

    def dialog_url(self, redirect_uri: str, state: str) -> str:
        query = httpx.QueryParams(
            client_id=self.app_id, redirect_uri=redirect_uri, state=state, response_type="code", scope=",".join(LOGIN_SCOPES)
        )
        return f"{self.login_url}/{self.api_version}/dialog/oauth?{query}"

    async def exchange_code(self, code: str, redirect_uri: str) -> str:
        """The user access token (short-lived) for the code the dialog gave the browser."""
        form = {"client_id": self.app_id, "redirect_uri": redirect_uri, "client_secret": self.app_secret, "code": code}
        return (await self._exchange(form))["access_token"]

    async def long_lived(self, user_token: str) -> str:
        """A long-lived (about 60 days) user token for a short-lived one."""
        form = {
            "grant_type": "fb_exchange_token",
            "client_id": self.app_id,
            "client_secret": self.app_secret,
            "fb_exchange_token": user_token,
        }
        return (await self._exchange(form))["access_token"]

    async def managed_pages(self, user_token: str) -> list[ManagedPage]:
        """Every page the user manages (`/me/accounts`, following its pages), each with its page token."""
        pages: list[ManagedPage] = []
        url, params = f"{self.base_url}/{self.api_version}/me/accounts", self._proof(user_token)
        for _ in range(MAX_ACCOUNT_PAGES):
            body = await self._get_json("", params, user_token, url=url)
            for entry in body.get("data") or ():
                pages.append(
                    ManagedPage(str(entry.get("id", "")), str(entry.get("name", "")), str(entry.get("access_token", "")),
                                tuple(entry.get("tasks") or ()))
                )  # fmt: skip
            url = (body.get("paging") or {}).get("next")
            if not url:
                break
            params = None  # the next URL carries its own query
        return pages

    async def subscribe_app(self, page_id: str, page_token: str, fields: tuple[str, ...] = WEBHOOK_FIELDS) -> None:
        """Subscribes our app to the page's webhook fields (`POST /{page-id}/subscribed_apps`)."""
        params = {"subscribed_fields": ",".join(fields), **(self._proof(page_token) or {})}
        response = await self.http.post(
            f"{self.base_url}/{self.api_version}/{page_id}/subscribed_apps",
            params=params,
            headers={"Authorization": f"Bearer {page_token}"},
        )
        body = _answer(response)
        if not body.get("success"):
            raise PermanentError("Graph API did not confirm the subscription", code="not_subscribed")

    def _proof(self, token: str) -> dict[str, str] | None:
        return {"appsecret_proof": appsecret_proof(self.app_secret, token)} if self.app_secret else None

    async def _exchange(self, form: dict[str, str]) -> dict[str, Any]:
        return _answer(await self.http.post(f"{self.base_url}/{self.api_version}/oauth/access_token", data=form))

    async def _get_json(self, path: str, params: dict | None, token: str = "", *, url: str = "") -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        response = await self.http.get(url or f"{self.base_url}/{self.api_version}/{path}", params=params, headers=headers)
        return _answer(response)


def _answer(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 200:
        raise as_exception(classify_graph_error(response.status_code, response.content, response.headers, now=datetime.now(UTC)))
    try:
        body = response.json()
    except ValueError:
        raise RetryableError("Graph API answered 200 without JSON", code="graph_transient") from None
    if not isinstance(body, dict):
        raise RetryableError("Graph API answered 200 without a JSON object", code="graph_transient")
    return body


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
