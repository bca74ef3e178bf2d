"""Pure translation between the Botpress Chat API and the spoke: request bodies,
parsed answers, which of the bot's messages answer ours, their text for a chat
channel, pushed signals, and what each error answer means for us. No I/O here:
the client does the HTTP and turns an `ApiFailure` into the runtime's exceptions."""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any
from urllib.parse import quote

USER_KEY_HEADER = "x-user-key"
"""Every Chat API call but createUser authenticates the user with this header (a JWT the API issued)."""
PUSH_SECRET_HEADER = "x-bp-secret"
"""The Chat integration's webhook sends its configured webhook secret in this header, verbatim."""
METADATA_KEY = "poseidonMessageId"
"""Our message id, carried in the Chat message's metadata so a retried send can find what it already sent."""
DEFAULT_WEBHOOK_ID = "poseidon-dev"
"""The webhook id of the local stand-in's bot; each tenant's real bot has its own."""

CREATE_USER = "createUser"
GET_USER = "getUser"
CREATE_CONVERSATION = "createConversation"
CREATE_MESSAGE = "createMessage"
LIST_MESSAGES = "listMessages"
LISTEN_CONVERSATION = "listenConversation"
_CONVERSATION_SCOPED = {CREATE_MESSAGE, LIST_MESSAGES}


class MalformedAnswer(ValueError):
    """A 2xx answer that does not have the shape the Chat API documents."""


@dataclass(frozen=True)
class ChatMessage:
    """A Chat API Message, as listed or created."""

    id: str
    created_at: datetime
    user_id: str
    """The author: our Botpress user, or the bot."""
    conversation_id: str
    payload: Mapping[str, Any]
    metadata: Mapping[str, Any] = field(default_factory=dict)


def api_url(base_url: str, webhook_id: str) -> str:
    """The Chat API base for one bot: `https://chat.botpress.cloud/<webhook id>` in Botpress Cloud."""
    if not webhook_id:
        raise ValueError("a Botpress webhook id is required")
    return f"{base_url.rstrip('/')}/{quote(webhook_id, safe='')}"


def create_user_body() -> dict[str, Any]:
    # No name, picture or foreign id: the bot gets no personal data about the contact,
    # and a server-chosen id lets a retry after a lost answer create a fresh user.
    return {}


def create_conversation_body() -> dict[str, Any]:
    return {}


def create_message_body(conversation_id: str, text: str, *, message_id: str = "", choice: str = "") -> dict[str, Any]:
    """A contact's message; `choice`: the value of the option they picked (a quick reply's
    or button's payload), sent as Botpress's channels send a chosen option — a text
    message with the title shown as `text` and the option's `value` — so the bot's
    choice and capture cards match the value, and the history shows the title."""
    payload: dict[str, Any] = {"type": "text", "text": text}
    if choice:
        payload["value"] = choice
    body: dict[str, Any] = {"conversationId": conversation_id, "payload": payload}
    if message_id:
        body["metadata"] = {METADATA_KEY: message_id}
    return body


def list_messages_query(next_token: str | None) -> dict[str, str]:
    return {"nextToken": next_token} if next_token else {}


def parse_user_created(body: Any) -> tuple[str, str]:
    """`POST /users` → (Botpress user id, user key)."""
    user = _object(body, "user")
    key = _object_field(body, "key", str)
    return _object_field(user, "id", str), key


def parse_user(body: Any) -> str:
    """`GET /users/me` → the user id."""
    return _object_field(_object(body, "user"), "id", str)


def parse_conversation(body: Any) -> str:
    """`POST /conversations` → the conversation id."""
    return _object_field(_object(body, "conversation"), "id", str)


def parse_message_created(body: Any) -> ChatMessage:
    return parse_message(_object(body, "message"))


def parse_message_page(body: Any) -> tuple[list[ChatMessage], str | None]:
    """`GET /conversations/{id}/messages` → (messages in the order listed, next page token)."""
    raw = _object_field(body, "messages", list)
    meta = body.get("meta") or {}
    token = meta.get("nextToken") if isinstance(meta, Mapping) else None
    return [parse_message(m) for m in raw], token if isinstance(token, str) and token else None


def parse_message(raw: Any) -> ChatMessage:
    if not isinstance(raw, Mapping):
        raise MalformedAnswer("a message is not an object")
    payload = _object_field(raw, "payload", Mapping)
    metadata = raw.get("metadata") or {}
    return ChatMessage(
        id=_object_field(raw, "id", str),
        created_at=_timestamp(_object_field(raw, "createdAt", str)),
        user_id=_object_field(raw, "userId", str),
        conversation_id=_object_field(raw, "conversationId", str),
        payload=payload,
        metadata=metadata if isinstance(metadata, Mapping) else {},
    )


def bot_replies(messages: Iterable[ChatMessage], *, user_id: str, sent: ChatMessage) -> list[ChatMessage]:
    """The messages not written by our user since `sent`, oldest first.

    The Chat API links no reply to the message it answers; what the bot wrote in
    the conversation at or after our message's creation is its answer to it.
    `messages` oldest first: equal timestamps keep that order."""
    replies = [m for m in messages if m.user_id != user_id and m.id != sent.id and m.created_at >= sent.created_at]
    return sorted(replies, key=lambda m: m.created_at)


def find_sent(messages: Iterable[ChatMessage], *, user_id: str, message_id: str) -> ChatMessage | None:
    """Our own message carrying `message_id` in its metadata, if the API already has it."""
    if not message_id:
        return None
    for m in messages:
        if m.user_id == user_id and m.metadata.get(METADATA_KEY) == message_id:
            return m
    return None


def reply_text(payload: Mapping[str, Any]) -> str | None:
    """A bot message as text for a chat channel; None for payloads with nothing to say."""
    kind = payload.get("type")
    if kind == "text":
        return _str(payload.get("text")) or None
    if kind == "markdown":
        return _str(payload.get("markdown")) or None
    if kind in ("image", "audio", "video"):
        return _str(payload.get(f"{kind}Url")) or None
    if kind == "file":
        url, title = _str(payload.get("fileUrl")), _str(payload.get("title"))
        return (f"{title}: {url}" if title else url) or None
    if kind == "location":
        where = f"{payload.get('latitude')}, {payload.get('longitude')}"
        label = " - ".join(p for p in (_str(payload.get("title")), _str(payload.get("address"))) if p)
        return f"{label} ({where})" if label else where
    if kind in ("choice", "dropdown"):
        options = [f"- {_str(o.get('label'))}" for o in _list(payload.get("options")) if isinstance(o, Mapping)]
        return "\n".join(p for p in [_str(payload.get("text")), *options] if p) or None
    if kind == "card":
        return _card_text(payload)
    if kind == "carousel":
        cards = [_card_text(c) for c in _list(payload.get("items")) if isinstance(c, Mapping)]
        return "\n\n".join(c for c in cards if c) or None
    if kind == "bloc":
        items = [reply_text(i) for i in _list(payload.get("items")) if isinstance(i, Mapping)]
        return "\n".join(i for i in items if i) or None
    return None


@dataclass(frozen=True)
class BotReply:
    """One bot message for a chat channel: its text (always: what a channel that cannot
    show `content` says instead), and its rich content when it has one."""

    id: str
    """The Botpress message id."""
    text: str
    content: Mapping[str, Any] | None = None
    """Channel-neutral rich content (`reply_content`), None for plain text."""
    degraded: str = ""
    """Why a rich payload travels as text only; empty when nothing was lost."""


MEDIA_TYPES = ("image", "audio", "video", "file")
CARD_ACTIONS = ("postback", "url", "say")


def reply_content(payload: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """(channel-neutral content, why not) for a bot payload. The content is data the
    Message hub records with the outbound message and a channel spoke maps to its own
    shapes (spokes/facebook/translate.rich_message):

    * `{"type": "choice", "text", "options": [{"label", "value"}]}` — choice and dropdown;
    * `{"type": "cards", "cards": [{"title", "subtitle", "image_url", "buttons":
      [{"action": postback|url|say, "label", "value"}]}]}` — card (one) and carousel;
    * `{"type": "media", "media": image|audio|video|file, "url", "title"}`.

    Text and markdown need none (None, ""); other types (location, bloc, unknown) and
    malformed rich payloads get None with the reason they stay text."""
    kind = payload.get("type")
    if kind in ("text", "markdown"):
        return None, ""
    if kind in ("choice", "dropdown"):
        options = [
            {"label": _str(o.get("label")), "value": _str(o.get("value"))}
            for o in _list(payload.get("options"))
            if isinstance(o, Mapping)
        ]
        if not options or any(not o["label"] or not o["value"] for o in options):
            return None, f"{kind} without options that each have a label and a value: sent as text"
        return {"type": "choice", "text": _str(payload.get("text")), "options": options}, ""
    if kind in ("card", "carousel"):
        raw = [payload] if kind == "card" else [c for c in _list(payload.get("items")) if isinstance(c, Mapping)]
        cards = [_card(c) for c in raw]
        if not cards or any(c is None for c in cards):
            return None, f"{kind} with a card without a title or with an unknown action: sent as text"
        return {"type": "cards", "cards": cards}, ""
    if kind in MEDIA_TYPES:
        url = _str(payload.get(f"{kind}Url"))
        if not url.startswith(("https://", "http://")):
            return None, f"{kind} without an http(s) URL: sent as text"
        content = {"type": "media", "media": kind, "url": url}
        if _str(payload.get("title")):
            content["title"] = _str(payload["title"])
        return content, ""
    return None, f"{str(kind)[:40]} has no rich form on chat channels: sent as text"


def bot_reply(message: ChatMessage) -> BotReply | None:
    """A bot message as a reply for a chat channel; None when it says nothing."""
    text = reply_text(message.payload)
    if not text:
        return None
    content, degraded = reply_content(message.payload)
    return BotReply(message.id, text, content, degraded)


def spoken_replies(replies: Sequence[ChatMessage]) -> list[tuple[str, str]]:
    """(Botpress message id, text) of the replies that say something, in order."""
    return [(m.id, text) for m, text in ((m, reply_text(m.payload)) for m in replies) if text]


def push_is_authentic(header_value: str | None, secret: str) -> bool:
    """Whether a pushed signal carries our webhook secret. An empty secret accepts nothing."""
    if not secret or not header_value:
        return False
    return hmac.compare_digest(header_value.encode(), secret.encode())


def parse_push(body: Any) -> ChatMessage | None:
    """A pushed `message_created` signal written by the bot; None for any other signal
    (our own user's messages, events, participants)."""
    if not isinstance(body, Mapping) or body.get("type") != "message_created":
        return None
    data = body.get("data")
    if not isinstance(data, Mapping) or data.get("isBot") is not True:
        return None
    return parse_message(data)


class EventStream:
    """Server-sent events (text/event-stream): `feed_text` takes the stream's text as it
    arrives and returns the data of the events it completed (their `data:` lines
    joined by newlines); `feed` does one line without its line end. Comments
    (`: ping`) and other fields are ignored. Lines end at CR, LF or CRLF only, as
    the format says: a U+2028 inside a bot's text (JSON may carry it unescaped)
    does not cut its line, as `str.splitlines` would."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._partial = ""

    def feed_text(self, chunk: str) -> list[str]:
        text = self._partial + chunk
        # A CR at the end may be the first half of a CRLF: keep it for the next chunk.
        held = text.endswith("\r")
        if held:
            text = text[:-1]
        *lines, rest = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        self._partial = rest + ("\r" if held else "")
        return [data for line in lines if (data := self.feed(line)) is not None]

    def feed(self, line: str) -> str | None:
        if not line:
            data, self._data = self._data, []
            return "\n".join(data) if data else None
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None


def parse_signal(data: str) -> ChatMessage | None:
    """One listen-stream event's data: the message a `message_created` signal
    announces (ours echoed or the bot's: `bot_replies` tells them apart, as for a
    listed page), None for any other signal."""
    try:
        body = json.loads(data)
    except ValueError:
        raise MalformedAnswer("a signal is not JSON") from None
    if not isinstance(body, Mapping) or body.get("type") != "message_created":
        return None
    return parse_message(body.get("data"))


class FailureKind(Enum):
    RETRYABLE = "retryable"
    """Try the same call again later (rate limit, server error)."""
    PERMANENT = "permanent"
    """The same call fails the same way again."""
    REAUTHORIZE = "reauthorize"
    """The tenant's Chat integration refuses us: its configuration must change."""
    STALE_USER = "stale_user"
    """The stored user key no longer opens anything: make a new user and conversation."""
    STALE_CONVERSATION = "stale_conversation"
    """The stored conversation is gone or not ours: make a new one for the same user."""


@dataclass(frozen=True)
class ApiFailure:
    kind: FailureKind
    code: str
    reason: str
    """For logs and outcome events: status, Botpress error type and id, never the API's message (it may echo content)."""
    retry_after: float | None = None


def classify_error(
    status: int, body: Any, *, operation: str, retry_after: str | None = None, now: datetime | None = None
) -> ApiFailure:
    """What an error answer of the Chat API means, from its status, its Botpress error
    type (`{"id", "code", "type", "message"}`) and the operation that got it."""
    error_type = body.get("type") if isinstance(body, Mapping) and isinstance(body.get("type"), str) else ""
    error_id = body.get("id") if isinstance(body, Mapping) and isinstance(body.get("id"), str) else ""
    reason = f"{operation}: Botpress answered {status}" + (f" {error_type}" if error_type else "")
    reason += f" (error id {error_id})" if error_id else ""

    def failure(kind: FailureKind, code: str, after: float | None = None) -> ApiFailure:
        return ApiFailure(kind, code, reason, after)

    if status == 429:
        return failure(FailureKind.RETRYABLE, "rate_limited", parse_retry_after(retry_after, now=now))
    if status >= 500 or status == 408:
        return failure(
            FailureKind.RETRYABLE, "server_error" if status == 500 else "unavailable", parse_retry_after(retry_after, now=now)
        )
    if status == 402 or error_type == "PaymentRequired":
        return failure(FailureKind.PERMANENT, "payment_required")
    if error_type == "QuotaExceeded":
        return failure(FailureKind.PERMANENT, "quota_exceeded")
    if operation == CREATE_USER:
        # createUser is the one call without a user key: a refusal or an unknown
        # webhook id is the tenant's Chat integration (manual authentication set,
        # integration disabled or reinstalled), which no retry of ours can mend.
        if status in (401, 403):
            return failure(FailureKind.REAUTHORIZE, "user_creation_refused")
        if status == 404:
            return failure(FailureKind.REAUTHORIZE, "webhook_not_found")
    else:
        if status == 401:
            return failure(FailureKind.STALE_USER, "user_key_rejected")
        if status in (403, 404) and operation in _CONVERSATION_SCOPED:
            code = "conversation_forbidden" if status == 403 else "conversation_not_found"
            return failure(FailureKind.STALE_CONVERSATION, code)
        if status in (403, 404):
            return failure(FailureKind.STALE_USER, "user_not_found" if status == 404 else "user_forbidden")
    return failure(FailureKind.PERMANENT, _snake(error_type) if error_type else f"http_{status}")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds (a number of seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _card(card: Mapping[str, Any]) -> dict[str, Any] | None:
    title = _str(card.get("title"))
    buttons = []
    for action in _list(card.get("actions")):
        if not isinstance(action, Mapping) or action.get("action") not in CARD_ACTIONS:
            return None
        buttons.append({"action": action["action"], "label": _str(action.get("label")), "value": _str(action.get("value"))})
    if not title:
        return None
    found = {"title": title, "buttons": buttons}
    for name, key in (("subtitle", "subtitle"), ("image_url", "imageUrl")):
        if _str(card.get(key)):
            found[name] = _str(card[key])
    return found


def _card_text(card: Mapping[str, Any]) -> str | None:
    lines = [_str(card.get("title")), _str(card.get("subtitle"))]
    for action in _list(card.get("actions")):
        if isinstance(action, Mapping):
            label, value = _str(action.get("label")), _str(action.get("value"))
            lines.append(f"- {label}: {value}" if action.get("action") == "url" else f"- {label}")
    return "\n".join(line for line in lines if line) or None


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _list(value: Any) -> list:
    """A list field of a bot payload; anything else (a bot's bug, a forged push) reads as empty."""
    return value if isinstance(value, list) else []


def _object(body: Any, name: str) -> Mapping[str, Any]:
    return _object_field(body, name, Mapping)


def _object_field(body: Any, name: str, kind: type) -> Any:
    if not isinstance(body, Mapping):
        raise MalformedAnswer(f"expected an object holding {name!r}")
    value = body.get(name)
    if not isinstance(value, kind) or (kind is str and not value):
        raise MalformedAnswer(f"{name!r} missing or not a {kind.__name__}")
    return value


def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedAnswer("createdAt is not an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
