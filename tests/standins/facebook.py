"""A stand-in for Facebook's side of Messenger: the Graph API Send API (paths, token
auth, appsecret_proof, body validation — quick replies, generic templates, buttons,
attachments and sender actions within Graph's limits, refused with its (#100) errors —
the 24-hour window, error bodies and codes, rate-limit answers), Facebook Login's side of connecting a page (the OAuth dialog's
redirect, the code and long-lived token exchanges, `/me/accounts`, the page's
`subscribed_apps`, with Graph's error answers), a tiny CDN for attachment URLs, and
signed webhook deliveries to our ingress. Builders of webhook bodies and their
signatures live here too. Not Facebook: state is in memory, PSIDs are any digit
strings, nothing is delivered."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from base.settings import Settings

MESSAGING_TYPES = ("RESPONSE", "UPDATE", "MESSAGE_TAG")
ALLOWED_TAGS = ("ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE", "HUMAN_AGENT")
RETIRED_TAGS = ("ISSUE_RESOLUTION", "APPLICATION_UPDATE", "PERSONAL_FINANCE_UPDATE", "SHIPPING_UPDATE", "RESERVATION_UPDATE")
SENDER_ACTIONS = ("typing_on", "typing_off", "mark_seen")
ATTACHMENT_TYPES = ("image", "audio", "video", "file", "template")
MAX_TEXT = 2000
# The Send API's limits on rich messages (quick replies, generic template, buttons), refused with (#100) as Graph does.
MAX_QUICK_REPLIES = 13
MAX_QUICK_REPLY_TITLE = 20
MAX_PAYLOAD = 1000
MAX_ELEMENTS = 10
MAX_ELEMENT_TEXT = 80
MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20
BUTTON_TYPES = ("postback", "web_url", "phone_number")
TEMPLATE_TYPES = ("generic", "button", "media")
WINDOW_MS = 24 * 3600 * 1000
HUMAN_AGENT_WINDOW_MS = 7 * 24 * 3600 * 1000
APP_ID = "1517776481860111"
"""The app id the stand-in puts in echoes of messages sent through the Send API."""
PAGE_INBOX_APP_ID = "263902037430900"
"""The Page Inbox's app id (the secondary receiver where a page's people answer)."""
_VERSION = re.compile(r"^v\d+\.\d+$")
LOGIN_PERMISSIONS = ("pages_show_list", "pages_messaging", "pages_manage_metadata")
"""What the connect flow asks for: list the pages, message as them, subscribe the app to them."""
SHORT_LIVED_S = 2 * 3600
LONG_LIVED_S = 60 * 24 * 3600
CODE_TTL_S = 600.0
_PSID = re.compile(r"^\d{1,30}$")

FAULT_MODES = (
    "invalid_token",
    "expired_token",
    "rate_limit",
    "429",
    "500",
    "transient",
    "permission",
    "unavailable",
    "invalid_parameter",
    "outside_window",
    "slow",
    "timeout",
    "missing_permission",
)


@dataclass
class Fault:
    """One told failure. `remaining` None: until cleared; `token` None: every token."""

    mode: str
    remaining: int | None = None
    token: str | None = None
    delay_s: float = 0.0
    retry_after: float | None = None
    status: int | None = None
    code: int | None = None
    sender_actions: bool = False
    """Whether sender actions (typing_on…) meet it too; by default only messages do, so a
    test's fault is not used up by the best-effort typing indicator sent before a reply."""


@dataclass
class SentMessage:
    """A message the Send API accepted."""

    message_id: str
    page_id: str
    psid: str
    messaging_type: str
    tag: str
    message: dict[str, Any]
    token: str
    at_ms: int


@dataclass
class RecordedRequest:
    """A request to the Graph API part (not the control API, not the CDN), with the answer."""

    method: str
    path: str
    token: str
    body: Any
    status: int = 0
    error_code: int | None = None
    at: float = field(default_factory=time.monotonic)


@dataclass
class LoginUser:
    """A Facebook user the Login dialog can log in: the pages they manage (id → name),
    the permissions they grant, and their tasks on each page."""

    user_id: str
    pages: dict[str, str]
    permissions: tuple[str, ...]
    tasks: tuple[str, ...]


@dataclass
class LoginCode:
    user_id: str
    redirect_uri: str
    issued_at: float
    used: bool = False


@dataclass
class UserToken:
    user_id: str
    expires_at: float
    long_lived: bool = False
    valid: bool = True


@dataclass
class FacebookState:
    """Everything the stand-in knows; tests read and steer it (or use /_control/*)."""

    app_secret: str = Settings().facebook_app_secret
    require_appsecret_proof: bool = False
    """Like a Facebook app with "Require App Secret" on: calls without appsecret_proof fail."""
    base_url: str = ""
    pages: dict[str, str] = field(default_factory=dict)
    """token → page id. An unregistered token acts for a page of its own (a derived id)."""
    faults: list[Fault] = field(default_factory=list)
    sent: dict[str, list[SentMessage]] = field(default_factory=dict)
    """PSID → messages sent to them, in order."""
    sender_actions: list[tuple[str, str, int]] = field(default_factory=list)
    """(PSID, typing_on | typing_off | mark_seen, when in epoch ms) of every sender action accepted."""
    requests: list[RecordedRequest] = field(default_factory=list)
    last_inbound_ms: dict[str, int] = field(default_factory=dict)
    """PSID → when they last wrote. Known PSIDs get the 24-hour window enforced; unknown ones do not."""
    unavailable: set[str] = field(default_factory=set)
    """PSIDs that blocked the page or left Messenger: sends answer #551."""
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    webhook_url: str = ""
    """Where Facebook would POST webhooks (our ingress); empty: nothing is pushed."""
    delivery_receipts: bool = True
    """With a webhook: after each send, push a delivery receipt for it."""
    echoes: bool = False
    """With a webhook: after each send, push its echo (the page subscribed to message_echoes)."""
    webhook_deliveries: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    """(HTTP status our endpoint answered, or 0 if unreachable; the body pushed)."""
    app_id: str = APP_ID
    users: dict[str, LoginUser] = field(default_factory=dict)
    """Facebook users who may log in through the dialog, by user id."""
    logged_in: str = ""
    """The user whose browser follows the Login dialog (what `dialog_redirect` answers for)."""
    codes: dict[str, LoginCode] = field(default_factory=dict)
    user_tokens: dict[str, UserToken] = field(default_factory=dict)
    """User access tokens (short- and long-lived) → who and what they may do."""
    subscriptions: dict[str, list[str]] = field(default_factory=dict)
    """Page id → the webhook fields our app is subscribed to (POST /{page}/subscribed_apps)."""
    page_token_users: dict[str, str] = field(default_factory=dict)
    """Page token → the user whose login it was handed out for (their permissions apply to it)."""
    short_lived_s: float = SHORT_LIVED_S
    """Lifetime of the user tokens codes are exchanged for (≤ 0: born expired, as after a long wait)."""
    thread_owners: dict[str, str] = field(default_factory=dict)
    """PSID → the app holding their thread (Handover Protocol); absent: our app, the primary receiver."""
    handovers: list[tuple[str, str, str, str]] = field(default_factory=list)
    """(pass_thread_control | take_thread_control, PSID, new owner app id, metadata) our app asked for."""

    def thread_owner(self, psid: str) -> str:
        return self.thread_owners.get(psid, self.app_id)

    def add_page(self, page_id: str, token: str) -> None:
        self.pages[token] = page_id

    def add_user(
        self,
        user_id: str,
        pages: Mapping[str, str],
        *,
        permissions: Iterable[str] = LOGIN_PERMISSIONS,
        tasks: Iterable[str] = ("ADVERTISE", "ANALYZE", "CREATE_CONTENT", "MESSAGING", "MODERATE", "MANAGE"),
    ) -> LoginUser:
        """A Facebook user who manages `pages` (page id → name) and grants `permissions`
        when logging in. Each page gets a fresh page access token at every login."""
        user = LoginUser(user_id, dict(pages), tuple(permissions), tuple(tasks))
        self.users[user_id] = user
        return user

    def authorize(self, user_id: str, redirect_uri: str, *, age_s: float = 0.0) -> str:
        """The user finished the Login dialog for `redirect_uri`: the code Facebook hands
        the browser (single use, valid 10 minutes; `age_s` makes an old one)."""
        code = "AQ" + secrets.token_urlsafe(48)
        self.codes[code] = LoginCode(user_id, redirect_uri, time.time() - age_s)
        return code

    def page_token_of(self, page_id: str) -> str:
        """The page access token most recently handed out for `page_id` ("" if none)."""
        found = [token for token, page in self.pages.items() if page == page_id]
        return found[-1] if found else ""

    def expire_user_tokens(self, user_id: str) -> None:
        """The user changed their password or logged out everywhere: every token of theirs dies (190/460)."""
        for token in self.user_tokens.values():
            if token.user_id == user_id:
                token.valid = False

    def page_for(self, token: str) -> str:
        return self.pages.get(token) or str(int(hashlib.sha256(token.encode()).hexdigest()[:13], 16))

    def fail(
        self,
        mode: str,
        *,
        count: int | None = None,
        token: str | None = None,
        delay_s: float = 0.0,
        retry_after: float | None = None,
        status: int | None = None,
        code: int | None = None,
        sender_actions: bool = False,
    ) -> Fault:
        """From now on, answer Send API calls (with `token`, if given) with `mode`, `count`
        times (None: until clear_faults). Modes: see FAULT_MODES; slow/timeout delay the
        answer by `delay_s` (timeout: 30 s unless told) and then answer normally."""
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {', '.join(FAULT_MODES)}, not {mode!r}")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1 (or None: until cleared)")
        fault = Fault(mode, count, token, delay_s, retry_after, status, code, sender_actions)
        self.faults.append(fault)
        return fault

    def clear_faults(self, token: str | None = None) -> None:
        self.faults = [f for f in self.faults if token is not None and f.token != token]

    def user_wrote(self, psid: str, at_ms: int | None = None) -> None:
        self.last_inbound_ms[psid] = _now_ms() if at_ms is None else at_ms

    def put_file(self, name: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Serves `data` at /cdn/<name>; returns its URL (for attachment payloads)."""
        self.files[name] = (data, content_type)
        return self.cdn_url(name)

    def cdn_url(self, name: str) -> str:
        return f"{self.base_url}/cdn/{name}"

    def sent_to(self, psid: str) -> list[SentMessage]:
        return list(self.sent.get(psid, []))

    def all_sent(self) -> list[SentMessage]:
        return sorted((m for ms in self.sent.values() for m in ms), key=lambda m: m.at_ms)

    def message_requests(self, token: str | None = None) -> list[RecordedRequest]:
        """Send API requests received (with `token`, if given), answered or not."""
        return [r for r in self.requests if r.path.endswith("/messages") and (token is None or r.token == token)]

    def reset(self) -> None:
        for name in (
            "pages",
            "sent",
            "last_inbound_ms",
            "files",
            "users",
            "codes",
            "user_tokens",
            "subscriptions",
            "page_token_users",
            "sender_actions",
        ):
            getattr(self, name).clear()
        self.faults, self.requests, self.webhook_deliveries = [], [], []
        self.unavailable.clear()

    def _take_faults(self, token: str, *, sender_action: bool = False) -> tuple[float, Fault | None]:
        delay, error = 0.0, None
        for fault in list(self.faults):
            if (fault.token is not None and fault.token != token) or (sender_action and not fault.sender_actions):
                continue
            slow = fault.mode in ("slow", "timeout")
            if not slow and error is not None:
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
            if slow:
                delay += fault.delay_s or (30.0 if fault.mode == "timeout" else 1.0)
            else:
                error = fault
        return delay, error


STATE = web.AppKey("state", FacebookState)
TASKS = web.AppKey("tasks", set)
SESSION = web.AppKey("session", aiohttp.ClientSession)


# ---------------------------------------------------------------- the Graph API


class GraphError(Exception):
    """An error answer, shaped as Graph shapes them."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        subcode: int | None = None,
        type_: str = "OAuthException",
        transient: bool | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.subcode = status, code, message, subcode
        self.type, self.transient, self.headers = type_, transient, dict(headers or {})

    def response(self) -> web.Response:
        trace = secrets.token_urlsafe(8)[:11]
        error: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.transient is not None:
            error["is_transient"] = self.transient
        error["fbtrace_id"] = trace
        headers = {"x-fb-trace-id": trace, "x-fb-request-id": secrets.token_urlsafe(12), **self.headers}
        if self.code == 190:
            headers["WWW-Authenticate"] = f'OAuth "Facebook Platform" "invalid_token" "{self.message}"'
        return web.json_response({"error": error}, status=self.status, headers=headers, content_type="application/json")


RATE_LIMIT_MESSAGES = {
    4: "(#4) Application request limit reached",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80006: "(#80006) There have been too many messenger api calls to this Page account. Wait a while and try again.",
}


def _fault_error(fault: Fault) -> GraphError:
    mode = fault.mode
    if mode == "missing_permission":
        code = fault.code or 200
        return GraphError(fault.status or 403, code, f"(#{code}) Requires pages_messaging permission to manage the object")
    if mode == "invalid_token":
        return GraphError(fault.status or 400, 190, "Invalid OAuth access token - Cannot parse access token")
    if mode == "expired_token":
        return GraphError(fault.status or 400, 190, "Error validating access token: Session has expired.", subcode=463)
    if mode in ("rate_limit", "429"):
        code = fault.code or (4 if mode == "429" else 613)
        headers = {
            "X-Business-Use-Case-Usage": json.dumps(
                {
                    "0": [
                        {
                            "type": "messenger",
                            "call_count": 100,
                            "total_cputime": 1,
                            "total_time": 1,
                            "estimated_time_to_regain_access": 0,
                        }
                    ]
                }
            )
        }
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        message = RATE_LIMIT_MESSAGES.get(code, f"(#{code}) Rate limit reached")
        return GraphError(fault.status or (429 if mode == "429" else 400), code, message, headers=headers)
    if mode == "500":
        return GraphError(
            fault.status or 500, 2, "An unexpected error has occurred. Please retry your request later.", transient=True
        )
    if mode == "transient":
        return GraphError(fault.status or 400, 1200, "(#1200) Temporary send message failure. Please try again later")
    if mode == "permission":
        code = fault.code or 10
        message = "(#10) Application does not have permission for this action"
        if code != 10:
            message = f"(#{code}) Requires pages_messaging permission to manage the object"
        return GraphError(fault.status or 403, code, message)
    if mode == "unavailable":
        return GraphError(fault.status or 400, 551, "(#551) This person isn't available right now.", subcode=1545041)
    if mode == "outside_window":
        return _outside_window()
    return GraphError(fault.status or 400, fault.code or 100, f"(#{fault.code or 100}) Invalid parameter")


def _outside_window() -> GraphError:
    return GraphError(
        400,
        10,
        "(#10) This message is sent outside of allowed window. Learn more about the new policy here: "
        "https://developers.facebook.com/docs/messenger-platform/policy-overview",
        subcode=2018278,
    )


def _invalid(message: str, subcode: int | None = None) -> GraphError:
    return GraphError(400, 100, f"(#100) {message}", subcode=subcode)


async def _send_api(request: web.Request) -> web.Response:
    state: FacebookState = request.app[STATE]
    version = request.match_info.get("version")
    node = request.match_info["node"]
    token, params = _token_and_params(request, await _form_or_json(request))
    recorded = RecordedRequest(request.method, request.path, token, params)
    state.requests.append(recorded)
    try:
        if version is not None and not _VERSION.match(version):
            raise GraphError(400, 2500, f"Unknown path components: /{version}/{node}/messages", type_="OAuthException")
        if not token:
            raise GraphError(400, 2500, "An active access token must be used to query information about the current user.")
        _check_appsecret_proof(state, token, params.get("appsecret_proof"))
        delay, fault = state._take_faults(token, sender_action=params.get("sender_action") is not None)
        if delay:
            await asyncio.sleep(delay)
        if fault is not None:
            raise _fault_error(fault)
        page_id = state.page_for(token)
        if node not in ("me", page_id):
            raise _invalid(
                f"Unsupported post request. Object with ID '{node}' does not exist, cannot be loaded due to missing "
                "permissions, or does not support this operation.",
                subcode=33,
            )
        answer = _accept(state, page_id, token, params)
    except GraphError as error:
        recorded.status, recorded.error_code = error.status, error.code
        return error.response()
    recorded.status = 200
    if "message_id" in answer and state.webhook_url:
        _spawn(request.app, _after_send(request.app, state.sent[answer["recipient_id"]][-1]))
    return web.json_response(answer)


def _accept(state: FacebookState, page_id: str, token: str, params: Mapping[str, Any]) -> dict[str, str]:
    """Validates a Send API body as Facebook does and, if it passes, records the message."""
    recipient = _json_param(params, "recipient")
    if recipient is None:
        raise _invalid("The parameter recipient is required")
    if not isinstance(recipient, Mapping) or not isinstance(recipient.get("id"), str | int):
        raise _invalid("param recipient must be an object with an id")
    psid = str(recipient["id"])
    message, action = _json_param(params, "message"), params.get("sender_action")
    if message is not None and action is not None:
        raise _invalid("Cannot send both message and state at the same time.", subcode=2018015)
    if message is None and action is None:
        raise _invalid("Must send either message or state")
    if not _PSID.match(psid):
        raise _invalid("No matching user found", subcode=2018001)
    if psid in state.unavailable:
        raise GraphError(400, 551, "(#551) This person isn't available right now.", subcode=1545041)
    if action is not None:
        if action not in SENDER_ACTIONS:
            raise _invalid(f'Param sender_action must be one of {{{", ".join(SENDER_ACTIONS)}}} - got "{action}".')
        state.sender_actions.append((psid, action, _now_ms()))
        return {"recipient_id": psid}

    messaging_type, tag = params.get("messaging_type"), params.get("tag")
    if messaging_type is None:
        raise _invalid("The parameter messaging_type is required")
    if messaging_type not in MESSAGING_TYPES:
        raise _invalid(f'Param messaging_type must be one of {{{", ".join(MESSAGING_TYPES)}}} - got "{messaging_type}".')
    if messaging_type == "MESSAGE_TAG":
        if not tag:
            raise _invalid("Tag is required for MESSAGE_TAG messaging type.")
        if tag in RETIRED_TAGS:
            raise _invalid(f"The tag {tag} has been deprecated. Please use one of {', '.join(ALLOWED_TAGS)}.", subcode=2018335)
        if tag not in ALLOWED_TAGS:
            raise _invalid(f'Param tag must be one of {{{", ".join(ALLOWED_TAGS)}}} - got "{tag}".')
    _check_message(message)
    last = state.last_inbound_ms.get(psid)
    if last is not None:
        age = _now_ms() - last
        allowed = HUMAN_AGENT_WINDOW_MS if tag == "HUMAN_AGENT" and messaging_type == "MESSAGE_TAG" else WINDOW_MS
        if age > allowed and not (messaging_type == "MESSAGE_TAG" and tag != "HUMAN_AGENT"):
            raise _outside_window()
    mid = "m_" + secrets.token_urlsafe(40)
    sent = SentMessage(mid, page_id, psid, messaging_type, tag or "", dict(message), token, _now_ms())
    state.sent.setdefault(psid, []).append(sent)
    return {"recipient_id": psid, "message_id": mid}


def _check_message(message: Any) -> None:
    if not isinstance(message, Mapping):
        raise _invalid("param message must be an object")
    text, attachment = message.get("text"), message.get("attachment")
    if text is not None and attachment is not None:
        raise _invalid("Only one of message[text] or message[attachment] may be set")
    if text is None and attachment is None:
        raise _invalid("Must send either message[text] or message[attachment]")
    if text is not None:
        if not isinstance(text, str) or not text:
            raise _invalid("param message[text] must be a non-empty UTF-8 encoded string")
        if len(text) > MAX_TEXT:
            raise _invalid(f"Length of param message[text] must be less than or equal to {MAX_TEXT}")
        _check_quick_replies(message.get("quick_replies"))
        return
    if not isinstance(attachment, Mapping) or attachment.get("type") not in ATTACHMENT_TYPES:
        raise _invalid(f"param message[attachment][type] must be one of {{{', '.join(ATTACHMENT_TYPES)}}}")
    payload = attachment.get("payload")
    if not isinstance(payload, Mapping):
        raise _invalid("The parameter message[attachment][payload] is required")
    if attachment["type"] != "template" and not (payload.get("url") or payload.get("attachment_id")):
        raise _invalid("Param message[attachment][payload] must contain url or attachment_id")
    if attachment["type"] == "template":
        _check_template(payload)
    _check_quick_replies(message.get("quick_replies"))


def _check_quick_replies(replies: Any) -> None:
    if replies is None:
        return
    at = "message[quick_replies]"
    if not isinstance(replies, list) or not replies:
        raise _invalid(f"param {at} must be a non-empty array")
    if len(replies) > MAX_QUICK_REPLIES:
        raise _invalid(f"Length of param {at} must be less than or equal to {MAX_QUICK_REPLIES}")
    for i, reply in enumerate(replies):
        where = f"{at}[{i}]"
        if not isinstance(reply, Mapping) or reply.get("content_type") not in ("text", "user_phone_number", "user_email"):
            raise _invalid(f"param {where}[content_type] must be one of {{text, user_phone_number, user_email}}")
        if reply["content_type"] != "text":
            continue
        _check_length(reply.get("title"), f"{where}[title]", MAX_QUICK_REPLY_TITLE, required=not reply.get("image_url"))
        _check_length(reply.get("payload"), f"{where}[payload]", MAX_PAYLOAD, required=True)


def _check_template(payload: Mapping[str, Any]) -> None:
    at = "message[attachment][payload]"
    if payload.get("template_type") not in TEMPLATE_TYPES:
        raise _invalid(f"param {at}[template_type] must be one of {{{', '.join(TEMPLATE_TYPES)}}}")
    if payload["template_type"] != "generic":
        return
    elements = payload.get("elements")
    if not isinstance(elements, list) or not elements:
        raise _invalid(f"param {at}[elements] must be a non-empty array")
    if len(elements) > MAX_ELEMENTS:
        raise _invalid(f"Length of param {at}[elements] must be less than or equal to {MAX_ELEMENTS}")
    for i, element in enumerate(elements):
        where = f"{at}[elements][{i}]"
        if not isinstance(element, Mapping):
            raise _invalid(f"param {where} must be an object")
        _check_length(element.get("title"), f"{where}[title]", MAX_ELEMENT_TEXT, required=True)
        _check_length(element.get("subtitle"), f"{where}[subtitle]", MAX_ELEMENT_TEXT)
        buttons = element.get("buttons", [])
        if not isinstance(buttons, list) or len(buttons) > MAX_BUTTONS:
            raise _invalid(f"Length of param {where}[buttons] must be less than or equal to {MAX_BUTTONS}")
        for j, button in enumerate(buttons):
            _check_button(button, f"{where}[buttons][{j}]")


def _check_button(button: Any, where: str) -> None:
    if not isinstance(button, Mapping) or button.get("type") not in BUTTON_TYPES:
        raise _invalid(f"param {where}[type] must be one of {{{', '.join(BUTTON_TYPES)}}}")
    _check_length(button.get("title"), f"{where}[title]", MAX_BUTTON_TITLE, required=True)
    if button["type"] == "web_url":
        url = button.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise _invalid(f"param {where}[url] must be a valid URL")
    else:
        _check_length(button.get("payload"), f"{where}[payload]", MAX_PAYLOAD, required=True)


def _check_length(value: Any, where: str, limit: int, *, required: bool = False) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or (required and not value):
        raise _invalid(f"The parameter {where} is required" if value is None else f"param {where} must be a non-empty string")
    if len(value) > limit:
        raise _invalid(f"Length of param {where} must be less than or equal to {limit}")


def _check_appsecret_proof(state: FacebookState, token: str, proof: Any) -> None:
    if proof is None:
        if state.require_appsecret_proof:
            raise GraphError(
                400, 100, "API calls from the server require an appsecret_proof argument", type_="GraphMethodException"
            )
        return
    expected = hmac.new(state.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
    if not isinstance(proof, str) or not hmac.compare_digest(proof, expected):
        raise GraphError(400, 100, "Invalid appsecret_proof provided in the API argument", type_="GraphMethodException")


async def _form_or_json(request: web.Request) -> dict[str, Any]:
    # Graph takes parameters from the query string, a form body or a JSON body alike.
    raw = await request.read()
    if not raw:
        return {}
    if request.content_type == "application/json":
        try:
            body = json.loads(raw)
        except ValueError:
            return {}
        return dict(body) if isinstance(body, Mapping) else {}
    return dict(await request.post())


def _token_and_params(request: web.Request, body: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    params = {**request.query, **body}
    token = params.pop("access_token", "") or ""
    auth = request.headers.get("Authorization", "")
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and credentials.strip():
        token = credentials.strip()
    return str(token), params


def _json_param(params: Mapping[str, Any], name: str) -> Any:
    value = params.get(name)
    if isinstance(value, str):  # form-encoded objects are JSON strings
        try:
            return json.loads(value)
        except ValueError:
            raise _invalid(f"param {name} must be a JSON object") from None
    return value


# ---------------------------------------------------------------- Facebook Login (connecting a page)


def _login_error(status: int, code: int, message: str, subcode: int | None = None) -> GraphError:
    return GraphError(status, code, message, subcode=subcode)


def _check_version(version: str, path: str) -> None:
    if not _VERSION.match(version):
        raise GraphError(400, 2500, f"Unknown path components: /{version}/{path}")


def _take_login_fault(state: FacebookState, token: str) -> GraphError | None:
    _, fault = state._take_faults(token)
    return _fault_error(fault) if fault is not None else None


def _user_token(state: FacebookState, token: str) -> UserToken:
    found = state.user_tokens.get(token)
    if not token:
        raise GraphError(400, 2500, "An active access token must be used to query information about the current user.")
    if found is None:
        raise GraphError(400, 190, "Invalid OAuth access token - Cannot parse access token")
    if not found.valid:
        raise GraphError(
            400,
            190,
            "Error validating access token: The session has been invalidated because the user changed their password "
            "or Facebook has changed the session for security reasons.",
            subcode=460,
        )
    if found.expires_at <= time.time():
        raise GraphError(400, 190, "Error validating access token: Session has expired.", subcode=463)
    return found


def _new_user_token(state: FacebookState, user_id: str, *, long_lived: bool) -> dict[str, Any]:
    token = "EAAB" + secrets.token_urlsafe(64)
    lifetime = LONG_LIVED_S if long_lived else state.short_lived_s
    state.user_tokens[token] = UserToken(user_id, time.time() + lifetime, long_lived)
    return {"access_token": token, "token_type": "bearer", "expires_in": max(int(lifetime), 0)}


async def _oauth_access_token(request: web.Request) -> web.Response:
    """GET (or POST, form) /{version}/oauth/access_token: a code for a user token, or
    (grant_type=fb_exchange_token) a short-lived user token for a long-lived one."""
    state: FacebookState = request.app[STATE]
    params = {**request.query, **(await _form_or_json(request))}
    recorded = RecordedRequest(request.method, request.path, "", {k: v for k, v in params.items() if k == "grant_type"})
    state.requests.append(recorded)
    try:
        _check_version(request.match_info["version"], "oauth/access_token")
        if params.get("client_id") != state.app_id:
            raise _login_error(400, 101, "Error validating application. Invalid application ID.")
        if not hmac.compare_digest(str(params.get("client_secret", "")), state.app_secret):
            raise _login_error(400, 1, "Error validating client secret.")
        if params.get("grant_type") == "fb_exchange_token":
            short = str(params.get("fb_exchange_token", ""))
            if (fault := _take_login_fault(state, short)) is not None:
                raise fault
            answer = _new_user_token(state, _user_token(state, short).user_id, long_lived=True)
        else:
            code = str(params.get("code", ""))
            if (fault := _take_login_fault(state, code)) is not None:
                raise fault
            answer = _exchange_code(state, code, str(params.get("redirect_uri", "")))
    except GraphError as error:
        recorded.status, recorded.error_code = error.status, error.code
        return error.response()
    recorded.status = 200
    return web.json_response(answer)


def _exchange_code(state: FacebookState, code: str, redirect_uri: str) -> dict[str, Any]:
    if not code:
        raise _login_error(400, 100, "Missing authorization code")
    found = state.codes.get(code)
    if found is None:
        raise _login_error(400, 100, "Invalid verification code format.", 36007)
    if found.used:
        raise _login_error(400, 100, "This authorization code has been used.", 36009)
    if time.time() - found.issued_at > CODE_TTL_S:
        raise _login_error(400, 100, "This authorization code has expired.", 36007)
    if redirect_uri != found.redirect_uri:
        raise _login_error(
            400,
            100,
            "Error validating verification code. Please make sure your redirect_uri is identical to the one you used "
            "in the OAuth dialog request",
            36008,
        )
    found.used = True
    return _new_user_token(state, found.user_id, long_lived=False)


async def _me_accounts(request: web.Request) -> web.Response:
    """GET /{version}/me/accounts: the pages the user manages, each with a fresh page token."""
    state: FacebookState = request.app[STATE]
    token, params = _token_and_params(request, {})
    recorded = RecordedRequest(request.method, request.path, token, {})
    state.requests.append(recorded)
    try:
        _check_version(request.match_info["version"], "me/accounts")
        if (fault := _take_login_fault(state, token)) is not None:
            raise fault
        user = state.users[_user_token(state, token).user_id]
        if "pages_show_list" not in user.permissions:
            raise _login_error(403, 200, "(#200) Requires pages_show_list permission to manage the object")
        data = []
        for page_id, name in sorted(user.pages.items()):
            page_token = "EAAP" + secrets.token_urlsafe(64)
            state.add_page(page_id, page_token)
            state.page_token_users[page_token] = user.user_id
            data.append({"access_token": page_token, "category": "Shopping & retail", "name": name, "id": page_id,
                         "tasks": list(user.tasks)})  # fmt: skip
    except GraphError as error:
        recorded.status, recorded.error_code = error.status, error.code
        return error.response()
    recorded.status = 200
    cursors = {"before": secrets.token_urlsafe(8), "after": secrets.token_urlsafe(8)}
    return web.json_response({"data": data, "paging": {"cursors": cursors}})


async def _subscribed_apps(request: web.Request) -> web.Response:
    """POST /{version}/{page-id}/subscribed_apps?subscribed_fields=…: subscribes our app
    to the page's webhook fields; needs that page's token and pages_manage_metadata."""
    state: FacebookState = request.app[STATE]
    page_id = request.match_info["page"]
    token, params = _token_and_params(request, await _form_or_json(request))
    recorded = RecordedRequest(request.method, request.path, token, {"subscribed_fields": params.get("subscribed_fields")})
    state.requests.append(recorded)
    try:
        _check_version(request.match_info["version"], f"{page_id}/subscribed_apps")
        if not token:
            raise GraphError(400, 2500, "An active access token must be used to query information about the current user.")
        if (fault := _take_login_fault(state, token)) is not None:
            raise fault
        if state.pages.get(token) != page_id:
            raise GraphError(400, 190, "Invalid OAuth access token - Cannot parse access token")
        user = state.users.get(state.page_token_users.get(token, ""))
        if user is not None and "pages_manage_metadata" not in user.permissions:
            raise _login_error(403, 200, "(#200) Requires pages_manage_metadata permission to manage the object")
        # Graph takes a comma-separated list or a JSON array (what the Business SDK sends).
        given = params.get("subscribed_fields") or ""
        listed = _json_param(params, "subscribed_fields") if str(given).startswith("[") else str(given).split(",")
        fields = [str(f).strip() for f in (listed if isinstance(listed, list) else [listed]) if str(f).strip()]
        if not fields:
            raise _invalid("The parameter subscribed_fields is required")
        state.subscriptions[page_id] = fields
    except GraphError as error:
        recorded.status, recorded.error_code = error.status, error.code
        return error.response()
    recorded.status = 200
    return web.json_response({"success": True})


async def _thread_control(request: web.Request) -> web.Response:
    """POST /{version}/me/pass_thread_control (recipient, target_app_id, metadata) and
    /{version}/me/take_thread_control (recipient, metadata): the Handover Protocol
    calls of our app, the page's primary receiver, with Graph's answers and errors."""
    state: FacebookState = request.app[STATE]
    action, node, version = request.match_info["action"], request.match_info["node"], request.match_info["version"]
    token, params = _token_and_params(request, await _form_or_json(request))
    recorded = RecordedRequest(request.method, request.path, token, params)
    state.requests.append(recorded)
    try:
        _check_version(version, f"{node}/{action}")
        if not token:
            raise GraphError(400, 2500, "An active access token must be used to query information about the current user.")
        _check_appsecret_proof(state, token, params.get("appsecret_proof"))
        page_id = state.page_for(token)
        if node not in ("me", page_id):
            raise _invalid(f"Unsupported post request. Object with ID '{node}' does not exist", subcode=33)
        recipient = _json_param(params, "recipient")
        if not isinstance(recipient, Mapping) or not isinstance(recipient.get("id"), str | int):
            raise _invalid("The parameter recipient is required")
        psid = str(recipient["id"])
        if not _PSID.match(psid):
            raise _invalid("No matching user found", subcode=2018001)
        metadata = str(params.get("metadata") or "")
        if len(metadata) > 1000:
            raise _invalid("Param metadata must be at most 1000 characters long")
        if action == "pass_thread_control":
            target = str(params.get("target_app_id") or "")
            if not target.isdigit():
                raise _invalid("The parameter target_app_id is required")
            if state.thread_owner(psid) != state.app_id:
                raise _invalid("(#10) Only the thread owner can pass thread control", subcode=2018300)
            owner = target
        else:
            owner = state.app_id
        state.thread_owners[psid] = owner
        state.handovers.append((action, psid, owner, metadata))
    except GraphError as error:
        recorded.status, recorded.error_code = error.status, error.code
        return error.response()
    recorded.status = 200
    return web.json_response({"success": True})


async def _thread_owner(request: web.Request) -> web.Response:
    """GET /{version}/me/thread_owner?recipient=<PSID>: which app holds the person's thread."""
    state: FacebookState = request.app[STATE]
    node, version = request.match_info["node"], request.match_info["version"]
    token, params = _token_and_params(request, {})
    recorded = RecordedRequest(request.method, request.path, token, params)
    state.requests.append(recorded)
    try:
        _check_version(version, f"{node}/thread_owner")
        if not token:
            raise GraphError(400, 2500, "An active access token must be used to query information about the current user.")
        page_id = state.page_for(token)
        if node not in ("me", page_id):
            raise _invalid(f"Unsupported get request. Object with ID '{node}' does not exist", subcode=33)
        psid = str(params.get("recipient") or "")
        if not _PSID.match(psid):
            raise _invalid("The parameter recipient is required" if not psid else "No matching user found", subcode=2018001)
    except GraphError as error:
        recorded.status, recorded.error_code = error.status, error.code
        return error.response()
    recorded.status = 200
    return web.json_response({"data": [{"thread_owner": {"app_id": state.thread_owner(psid)}}]})


async def _dialog(request: web.Request) -> web.Response:
    """GET /{version}/dialog/oauth (www.facebook.com's, served here too): the logged-in
    user (`state.logged_in`) accepts at once; the browser is sent to redirect_uri with
    the code and our state, as Facebook does (an error redirect when nobody is logged in)."""
    state: FacebookState = request.app[STATE]
    q = request.query
    redirect_uri = q.get("redirect_uri", "")
    if q.get("client_id") != state.app_id or not redirect_uri:
        return web.Response(status=400, text="Invalid App ID or redirect_uri")
    if not state.logged_in:
        target = f"{redirect_uri}?error=access_denied&error_code=200&error_reason=user_denied&state={q.get('state', '')}"
    else:
        code = state.authorize(state.logged_in, redirect_uri)
        target = f"{redirect_uri}?code={code}&state={q.get('state', '')}"
    raise web.HTTPFound(target)


# ---------------------------------------------------------------- CDN, control API


async def _cdn(request: web.Request) -> web.Response:
    state: FacebookState = request.app[STATE]
    found = state.files.get(request.match_info["name"])
    if found is None:
        return web.Response(status=404, text="URL signature expired")
    data, content_type = found
    return web.Response(body=data, content_type=content_type)


async def _control(request: web.Request) -> web.Response:
    state: FacebookState = request.app[STATE]
    action = request.match_info["action"]
    try:
        body = await request.json() if request.method == "POST" and request.can_read_body else {}
        if action == "fail":
            fault = state.fail(
                body["mode"],
                count=body.get("count"),
                token=body.get("token"),
                delay_s=float(body.get("delay_s", 0.0)),
                retry_after=body.get("retry_after"),
                status=body.get("status"),
                code=body.get("code"),
            )
            return web.json_response(asdict(fault))
        if action == "clear":
            state.clear_faults(body.get("token"))
        elif action == "reset":
            state.reset()
        elif action == "pages":
            state.add_page(str(body["page_id"]), body["token"])
        elif action == "users":
            user = state.add_user(str(body["user_id"]), body["pages"], permissions=body.get("permissions", LOGIN_PERMISSIONS))
            if body.get("log_in", True):
                state.logged_in = user.user_id
        elif action == "user_wrote":
            state.user_wrote(str(body["psid"]), body.get("at_ms"))
        elif action == "unavailable":
            state.unavailable.add(str(body["psid"]))
        elif action == "subscribe":
            state.webhook_url = body["url"]
            state.delivery_receipts = bool(body.get("delivery_receipts", True))
            state.echoes = bool(body.get("echoes", False))
        elif action == "push":
            return web.json_response({"status": await push(request.app, *body["events"])})
        elif action == "inbox":
            # A page admin takes the thread in the Page Inbox (`takes`), or marks it done there.
            return web.json_response(
                {"status": await push_inbox(request.app, str(body["page_id"]), str(body["psid"]), body["takes"])}
            )
        elif action == "read":
            return web.json_response({"status": await push_read(request.app, str(body["page_id"]), str(body["psid"]))})
        elif action == "sent":
            psid = request.query.get("psid")
            messages = state.sent_to(psid) if psid else state.all_sent()
            return web.json_response([{k: v for k, v in asdict(m).items() if k != "token"} for m in messages])
        elif action == "requests":
            return web.json_response([{k: v for k, v in asdict(r).items() if k != "token"} for r in state.requests])
        else:
            return web.json_response({"error": f"no control action {action}"}, status=404)
    except (KeyError, TypeError, ValueError) as exc:
        return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=400)
    return web.json_response({"ok": True})


async def _put_file(request: web.Request) -> web.Response:
    state: FacebookState = request.app[STATE]
    url = state.put_file(request.match_info["name"], await request.read(), request.content_type)
    return web.json_response({"url": url})


# ---------------------------------------------------------------- webhooks to us


async def push(app: web.Application, *events: Mapping[str, Any]) -> int:
    """Delivers events to the subscribed webhook as Facebook does (signed, one entry
    per event); a message event also opens that person's 24-hour window. Returns the
    HTTP status our endpoint answered (0: unreachable)."""
    state: FacebookState = app[STATE]
    if not state.webhook_url:
        raise ValueError("no webhook subscribed (state.webhook_url)")
    for event in events:
        message = event.get("message")
        if isinstance(message, Mapping) and not message.get("is_echo"):
            state.user_wrote(str(event["sender"]["id"]), int(event.get("timestamp") or _now_ms()))
    body = webhook_body(*events)
    raw, headers = signed_webhook(body, state.app_secret)
    try:
        async with app[SESSION].post(state.webhook_url, data=raw, headers=headers) as response:
            status = response.status
    except (aiohttp.ClientError, TimeoutError):
        status = 0
    state.webhook_deliveries.append((status, body))
    return status


async def push_inbox(app: web.Application, page_id: str, psid: str, takes: bool) -> int:
    """The Page Inbox takes the person's thread from our app (`takes`: our app gets
    take_thread_control) or passes it back when the admin marks it done (pass_thread_control)."""
    state: FacebookState = app[STATE]
    if takes:
        state.thread_owners[psid] = PAGE_INBOX_APP_ID
        event = handover_event(page_id, psid, "take_thread_control", PAGE_INBOX_APP_ID, state.app_id)
    else:
        state.thread_owners.pop(psid, None)
        event = handover_event(page_id, psid, "pass_thread_control", state.app_id, PAGE_INBOX_APP_ID)
    return await push(app, event)


async def push_read(app: web.Application, page_id: str, psid: str) -> int:
    """The person opened the conversation: a read receipt up to now."""
    return await push(app, read_event(page_id, psid, _now_ms()))


async def _after_send(app: web.Application, sent: SentMessage) -> None:
    state: FacebookState = app[STATE]
    if state.echoes:
        echo = echo_event(sent.page_id, sent.psid, sent.message.get("text", ""), mid=sent.message_id, timestamp_ms=sent.at_ms)
        if "attachment" in sent.message:
            echo["message"]["attachments"] = [sent.message["attachment"]]
        await push(app, echo)
    if state.delivery_receipts:
        await push(app, delivery_event(sent.page_id, sent.psid, [sent.message_id], sent.at_ms))


def _spawn(app: web.Application, coro) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    app[TASKS].add(task)
    task.add_done_callback(app[TASKS].discard)


# ---------------------------------------------------------------- builders


def message_event(
    page_id: str,
    psid: str,
    text: str = "",
    *,
    mid: str | None = None,
    timestamp_ms: int | None = None,
    attachments: Iterable[Mapping[str, Any]] = (),
    quick_reply_payload: str | None = None,
    reply_to: str | None = None,
) -> dict[str, Any]:
    """A person wrote to the page (`messages` webhook field)."""
    message: dict[str, Any] = {"mid": mid or new_mid()}
    if text:
        message["text"] = text
    if attachments:
        message["attachments"] = [dict(a) for a in attachments]
    if quick_reply_payload is not None:
        message["quick_reply"] = {"payload": quick_reply_payload}
    if reply_to is not None:
        message["reply_to"] = {"mid": reply_to}
    return _event(psid, page_id, timestamp_ms, message=message)


def attachment(kind: str, url: str) -> dict[str, Any]:
    """An inbound attachment as webhooks carry it (`{"type", "payload": {"url"}}`)."""
    return {"type": kind, "payload": {"url": url}}


def postback_event(
    page_id: str, psid: str, payload: str, *, title: str = "", mid: str | None = None, timestamp_ms: int | None = None
) -> dict[str, Any]:
    """The person tapped a button (`messaging_postbacks` webhook field)."""
    return _event(psid, page_id, timestamp_ms, postback={"title": title, "payload": payload, "mid": mid or new_mid()})


def delivery_event(
    page_id: str, psid: str, mids: Iterable[str], watermark_ms: int, *, timestamp_ms: int | None = None
) -> dict[str, Any]:
    """Messages up to `watermark_ms` reached the person (`message_deliveries`); no
    timestamp of its own unless given, as Facebook sends them."""
    event: dict[str, Any] = {
        "sender": {"id": psid},
        "recipient": {"id": page_id},
        "delivery": {"mids": list(mids), "watermark": watermark_ms},
    }
    if timestamp_ms is not None:
        event["timestamp"] = timestamp_ms
    return event


def read_event(page_id: str, psid: str, watermark_ms: int, *, timestamp_ms: int | None = None) -> dict[str, Any]:
    """The person read everything sent up to `watermark_ms` (`message_reads`)."""
    return _event(psid, page_id, timestamp_ms, read={"watermark": watermark_ms})


def echo_event(
    page_id: str,
    psid: str,
    text: str = "",
    *,
    mid: str | None = None,
    app_id: str | None = APP_ID,
    timestamp_ms: int | None = None,
    metadata: str | None = None,
) -> dict[str, Any]:
    """The page sent a message (`message_echoes`): sender is the page. `app_id` None:
    a human sent it from the Page inbox."""
    message: dict[str, Any] = {"is_echo": True, "mid": mid or new_mid()}
    if app_id is not None:
        message["app_id"] = int(app_id)
    if metadata is not None:
        message["metadata"] = metadata
    if text:
        message["text"] = text
    return _event(page_id, psid, timestamp_ms, message=message)


def handover_event(
    page_id: str,
    psid: str,
    control: str,
    new_owner_app_id: str,
    previous_owner_app_id: str,
    *,
    metadata: str = "",
    timestamp_ms: int | None = None,
) -> dict[str, Any]:
    """Thread control changed hands (`messaging_handovers`): pass_thread_control reaches
    the app given the thread, take_thread_control the app it was taken from."""
    handover = {"previous_owner_app_id": previous_owner_app_id, "new_owner_app_id": new_owner_app_id, "metadata": metadata}
    return _event(psid, page_id, timestamp_ms, **{control: handover})


def webhook_body(*events: Mapping[str, Any], time_ms: int | None = None) -> dict[str, Any]:
    """The POST body Facebook sends: one entry per event (its `messaging` array holds
    exactly one), the entry id being the page's."""
    now = _now_ms() if time_ms is None else time_ms
    entries = []
    for event in events:
        echo = isinstance(event.get("message"), Mapping) and event["message"].get("is_echo")
        page_id = event["sender" if echo else "recipient"]["id"]
        entries.append({"id": page_id, "time": now, "messaging": [dict(event)]})
    return {"object": "page", "entry": entries}


def webhook_bytes(body: Mapping[str, Any]) -> bytes:
    """JSON as Facebook writes it: compact, non-ASCII escaped as \\uXXXX and "/" as "\\/".
    The signature covers exactly these bytes: a receiver that re-serialises fails it."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/").encode()


def signature_256(app_secret: str, raw: bytes) -> str:
    """`X-Hub-Signature-256`: sha256=<hex HMAC-SHA256 of the raw body with the app secret>."""
    return "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()


def signed_webhook(body: Mapping[str, Any], app_secret: str) -> tuple[bytes, dict[str, str]]:
    """The raw bytes and headers of a webhook POST as Facebook sends it."""
    raw = webhook_bytes(body)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "facebookexternalua",
        "X-Hub-Signature-256": signature_256(app_secret, raw),
        "X-Hub-Signature": "sha1=" + hmac.new(app_secret.encode(), raw, hashlib.sha1).hexdigest(),
    }
    return raw, headers


def verification_params(verify_token: str, challenge: str = "1158201444") -> dict[str, str]:
    """The query of Facebook's GET when a webhook is subscribed; the endpoint must echo the challenge."""
    return {"hub.mode": "subscribe", "hub.verify_token": verify_token, "hub.challenge": challenge}


def new_mid() -> str:
    return "m_" + secrets.token_urlsafe(40)


def _event(sender: str, recipient: str, timestamp_ms: int | None, **what: Any) -> dict[str, Any]:
    return {
        "sender": {"id": sender},
        "recipient": {"id": recipient},
        "timestamp": _now_ms() if timestamp_ms is None else timestamp_ms,
        **what,
    }


def _now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------- running it


def make_app(state: FacebookState) -> web.Application:
    """The aiohttp application; `running_facebook` is the usual way in."""
    app = web.Application(client_max_size=32 * 1024 * 1024)
    app[STATE] = state
    app[TASKS] = set()
    app.router.add_get("/{version}/oauth/access_token", _oauth_access_token)
    app.router.add_post("/{version}/oauth/access_token", _oauth_access_token)
    app.router.add_get("/{version}/dialog/oauth", _dialog)
    app.router.add_get("/{version}/me/accounts", _me_accounts)
    app.router.add_post("/{version}/{page}/subscribed_apps", _subscribed_apps)
    app.router.add_post("/{version}/{node}/{action:(pass|take)_thread_control}", _thread_control)
    app.router.add_get("/{version}/{node}/thread_owner", _thread_owner)
    app.router.add_post("/{version}/{node}/messages", _send_api)
    app.router.add_post("/{node}/messages", _send_api)
    app.router.add_get("/cdn/{name}", _cdn)
    app.router.add_put("/_control/files/{name}", _put_file)
    app.router.add_route("*", "/_control/{action}", _control)

    async def session(app: web.Application):
        app[SESSION] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        yield
        for task in list(app[TASKS]):
            task.cancel()
        await asyncio.gather(*app[TASKS], return_exceptions=True)
        await app[SESSION].close()

    app.cleanup_ctx.append(session)
    return app


@dataclass
class RunningFacebook:
    """A stand-in listening on `url` (use it as facebook_graph_url); `state` is live."""

    url: str
    state: FacebookState
    app: web.Application

    async def push(self, *events: Mapping[str, Any]) -> int:
        return await push(self.app, *events)

    async def push_read(self, page_id: str, psid: str) -> int:
        return await push_read(self.app, page_id, psid)

    async def settle(self, timeout: float = 5.0) -> None:
        """Waits until pushes started by sends (receipts, echoes) are done."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.app[TASKS] and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)


@asynccontextmanager
async def running_facebook(
    *, app_secret: str | None = None, port: int = 0, host: str = "127.0.0.1", webhook_url: str = ""
) -> AsyncIterator[RunningFacebook]:
    """Serves a fresh stand-in on the running event loop (a free port unless told)."""
    state = FacebookState(webhook_url=webhook_url)
    if app_secret is not None:
        state.app_secret = app_secret
    app = make_app(state)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    state.base_url = f"http://{host}:{runner.addresses[0][1]}"
    try:
        yield RunningFacebook(state.base_url, state, app)
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    settings = Settings.from_env()
    default_port = urlsplit(settings.facebook_graph_url).port or 18081
    parser = argparse.ArgumentParser(description="Facebook Graph API (Send API) + webhook stand-in")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--app-secret", default=settings.facebook_app_secret)
    parser.add_argument("--webhook-url", default="", help="our ingress endpoint, to push receipts and pushed events to")
    parser.add_argument("--page", action="append", default=[], metavar="PAGE_ID=TOKEN", help="register a page token")
    args = parser.parse_args(argv)

    async def serve() -> None:
        async with running_facebook(
            app_secret=args.app_secret, port=args.port, host=args.host, webhook_url=args.webhook_url
        ) as fb:
            for page in args.page:
                page_id, _, token = page.partition("=")
                fb.state.add_page(page_id, token)
            print(f"facebook stand-in on {fb.url}", flush=True)
            await asyncio.Event().wait()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
