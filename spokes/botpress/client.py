"""HTTP calls to one bot's Botpress Chat API (`{botpress_url}/{webhook_id}`), each
raising the spoke runtime's exceptions as translate.classify_error decides. One
method per Chat API operation; no retries here (SpokeContext.call does them) and
no logging of user keys, message text or contact ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx

from infra.spoke import PermanentError, ReauthorizationRequired, RetryableError, SpokeError
from spokes.botpress import translate
from spokes.botpress.translate import ApiFailure, ChatMessage, FailureKind, MalformedAnswer

SYSTEM = "botpress"
LISTEN_TIMEOUT = httpx.Timeout(10.0, read=None)
"""Connecting to the listen stream is bounded; reading it is not (the caller waits with its own deadline)."""


class StaleMapping(PermanentError):
    """The stored Botpress user (`scope="user"`) or conversation (`scope="conversation"`)
    no longer works. Not the system's fault and not worth retrying as is: the caller
    makes a new one and tries once more."""

    code = "stale_mapping"

    def __init__(self, reason: str, *, code: str, scope: str):
        super().__init__(reason, code=code)
        self.scope = scope


def exception_for(failure: ApiFailure) -> SpokeError:
    if failure.kind is FailureKind.RETRYABLE:
        return RetryableError(failure.reason, code=failure.code, retry_after=failure.retry_after)
    if failure.kind is FailureKind.REAUTHORIZE:
        return ReauthorizationRequired(failure.reason, code=failure.code)
    if failure.kind is FailureKind.STALE_USER:
        return StaleMapping(failure.reason, code=failure.code, scope="user")
    if failure.kind is FailureKind.STALE_CONVERSATION:
        return StaleMapping(failure.reason, code=failure.code, scope="conversation")
    return PermanentError(failure.reason, code=failure.code)


class BotpressChat:
    """One bot's Chat API over the spoke's pooled httpx client (its timeouts apply)."""

    def __init__(self, http: httpx.AsyncClient, api_url: str):
        self.http, self.api_url = http, api_url.rstrip("/")

    async def create_user(self) -> tuple[str, str]:
        """A new Botpress user → (user id, user key). The key is a credential."""
        body = await self._request(translate.CREATE_USER, "POST", "/users", json=translate.create_user_body())
        return _parsed(translate.CREATE_USER, translate.parse_user_created, body)

    async def get_user(self, user_key: str) -> str:
        body = await self._request(translate.GET_USER, "GET", "/users/me", user_key=user_key)
        return _parsed(translate.GET_USER, translate.parse_user, body)

    async def create_conversation(self, user_key: str) -> str:
        body = await self._request(
            translate.CREATE_CONVERSATION, "POST", "/conversations", user_key=user_key, json=translate.create_conversation_body()
        )
        return _parsed(translate.CREATE_CONVERSATION, translate.parse_conversation, body)

    async def create_message(
        self, user_key: str, conversation_id: str, text: str, *, message_id: str = "", choice: str = ""
    ) -> ChatMessage:
        body = await self._request(
            translate.CREATE_MESSAGE,
            "POST",
            "/messages",
            user_key=user_key,
            json=translate.create_message_body(conversation_id, text, message_id=message_id, choice=choice),
        )
        return _parsed(translate.CREATE_MESSAGE, translate.parse_message_created, body)

    async def list_messages(
        self, user_key: str, conversation_id: str, *, next_token: str | None = None
    ) -> tuple[list[ChatMessage], str | None]:
        """One page of the conversation's messages, newest first, and the next page's token."""
        body = await self._request(
            translate.LIST_MESSAGES,
            "GET",
            f"/conversations/{quote(conversation_id, safe='')}/messages",
            user_key=user_key,
            params=translate.list_messages_query(next_token),
        )
        return _parsed(translate.LIST_MESSAGES, translate.parse_message_page, body)

    @asynccontextmanager
    async def listen(self, user_key: str, conversation_id: str) -> AsyncIterator[AsyncIterator[ChatMessage]]:
        """The conversation's listen stream (`GET /conversations/{id}/listen`, server-sent
        events), open once this is entered: the messages created from then on, as
        they are created. A refusal raises as any other call's would; a stream that
        breaks while read raises RetryableError."""
        operation = translate.LISTEN_CONVERSATION
        url = f"{self.api_url}/conversations/{quote(conversation_id, safe='')}/listen"
        headers = {translate.USER_KEY_HEADER: user_key, "accept": "text/event-stream"}
        try:
            async with self.http.stream("GET", url, headers=headers, timeout=LISTEN_TIMEOUT) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._failure(operation, response)
                yield _signals(response)
        except httpx.TimeoutException as exc:
            raise RetryableError(f"{operation}: {type(exc).__name__} waiting for Botpress", code="timeout") from None
        except httpx.TransportError as exc:
            raise RetryableError(f"{operation}: {type(exc).__name__} reading the stream", code="unreachable") from None

    async def _request(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        user_key: str | None = None,
        json: Any = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        headers = {translate.USER_KEY_HEADER: user_key} if user_key else {}
        try:
            response = await self.http.request(method, self.api_url + path, headers=headers, json=json, params=params)
        except httpx.TimeoutException as exc:
            raise RetryableError(f"{operation}: {type(exc).__name__} waiting for Botpress", code="timeout") from None
        except httpx.TransportError as exc:
            raise RetryableError(f"{operation}: {type(exc).__name__} reaching Botpress", code="unreachable") from None
        if response.status_code >= 400:
            raise self._failure(operation, response)
        try:
            return response.json()
        except ValueError:
            raise RetryableError(
                f"{operation}: Botpress answered {response.status_code} without JSON", code="malformed_answer"
            ) from None

    @staticmethod
    def _failure(operation: str, response: httpx.Response) -> SpokeError:
        try:
            body = response.json()
        except ValueError:
            body = None
        failure = translate.classify_error(
            response.status_code, body, operation=operation, retry_after=response.headers.get("retry-after")
        )
        return exception_for(failure)


async def _signals(response: httpx.Response) -> AsyncIterator[ChatMessage]:
    events = translate.EventStream()
    chunks = response.aiter_text()
    while True:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except httpx.TransportError as exc:  # the stream broke while read: the caller polls instead
            raise RetryableError(
                f"{translate.LISTEN_CONVERSATION}: {type(exc).__name__} reading the stream", code="stream_lost"
            ) from None
        for data in events.feed_text(chunk):
            message = _parsed(translate.LISTEN_CONVERSATION, translate.parse_signal, data)
            if message is not None:
                yield message


def _parsed(operation: str, parse, body: Any):
    try:
        return parse(body)
    except MalformedAnswer as exc:
        raise RetryableError(f"{operation}: unexpected answer shape ({exc})", code="malformed_answer") from None
