"""Pure translation between the Messenger Platform's payloads and our terms: webhook
bodies → typed inbound items, delivery/read receipts → delivery statuses, Send API
bodies, the 24-hour messaging-window rule, and Graph error bodies → failure classes.
No I/O and no infra imports: the client turns a GraphFailure into infra.spoke exceptions."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from hubs.message.delivery import DELIVERED, READ
from schemas.contracts import OUTCOME_UNKNOWN

# Kinds of inbound item. An echo is a message the page sent (by us, another app or a
# human in the Page inbox) that Facebook reports back; receipts refer to outbound mids.
MESSAGE, POSTBACK, DELIVERY, READ_RECEIPT, ECHO, UNSUPPORTED = "message", "postback", "delivery", "read", "echo", "unsupported"
HANDOVER = "handover"
"""Thread control changed hands (Messenger's Handover Protocol, `messaging_handovers`)."""
THREAD_CONTROLS = ("pass_thread_control", "take_thread_control")
PAGE_INBOX_APP_ID = "263902037430900"
"""The Page Inbox's app id: where a page's people answer in Facebook's own inbox."""

RESPONSE, UPDATE, MESSAGE_TAG = "RESPONSE", "UPDATE", "MESSAGE_TAG"
MESSAGING_TYPES = (RESPONSE, UPDATE, MESSAGE_TAG)
HUMAN_AGENT = "HUMAN_AGENT"
ALLOWED_TAGS = ("ACCOUNT_UPDATE", "CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE", HUMAN_AGENT)
"""The message tags Facebook still accepts outside the standard window (the others were retired in 2020)."""
STANDARD_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
MAX_TEXT = 2000
"""Send API limit on message.text, in characters."""
SENDABLE_ATTACHMENT_TYPES = ("image", "audio", "video", "file")
# Send API limits of rich messages (Messenger Platform reference: quick replies, generic template, buttons).
MAX_QUICK_REPLIES = 13
MAX_QUICK_REPLY_TITLE = 20
MAX_PAYLOAD = 1000
"""A quick reply's or postback button's payload, in characters."""
MAX_ELEMENTS = 10
"""Generic template elements (a carousel)."""
MAX_ELEMENT_TITLE = 80
MAX_ELEMENT_SUBTITLE = 80
MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20
SENDER_ACTIONS = ("typing_on", "typing_off", "mark_seen")
DEFAULT_RATE_LIMIT_WAIT_S = 5.0
"""Back-off after a rate-limit answer that names no wait (Graph usually names none)."""

# Graph error codes (https://developers.facebook.com/docs/graph-api/guides/error-handling,
# Messenger Platform "Common Error Codes"), grouped by what to do about them.
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, *range(80001, 80015)})
"""App, user, page, API-specific and business-use-case (800xx) throttling."""
REAUTHORIZATION_CODES = frozenset({190, 102})
"""Invalid or expired access token (102: an old session key): only re-authorisation helps."""
TRANSIENT_CODES = frozenset({1, 2, 1200})
"""Unknown error, service downtime, Messenger's "temporary send message failure"."""
OUTSIDE_WINDOW_SUBCODES = frozenset({2018278, 2018065})
RECIPIENT_UNAVAILABLE_SUBCODE = 1545041
NO_MATCHING_USER_SUBCODE = 2018001

REAUTHORIZE, RATE_LIMITED, RETRY, PERMANENT = "reauthorize", "rate_limited", "retry", "permanent"


class InvalidWebhook(ValueError):
    """The webhook body is not what Facebook sends; `reason` names the bad field."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Refusal(Exception):
    """We will not ask Facebook to send this; `code` names why, `reason` says it in words."""

    code = "refused"

    def __init__(self, reason: str, *, code: str | None = None):
        super().__init__(reason)
        self.reason = reason
        if code:
            self.code = code


class OutsideMessagingWindow(Refusal):
    """More than 24 hours since the person last wrote, and no message tag allows it."""

    code = "outside_messaging_window"


class InvalidOutbound(Refusal):
    """A Send API body Facebook would refuse (empty or too long text, unknown tag...)."""

    code = "invalid_message"


@dataclass(frozen=True)
class Attachment:
    type: str
    """image, audio, video, file, template, fallback..."""
    url: str = ""
    """Where Facebook serves the bytes (short-lived CDN URL); empty for templates and fallbacks without one."""


@dataclass(frozen=True)
class InboundItem:
    """One item of a webhook's `entry[].messaging[]` (or `standby[]`), whatever its kind."""

    kind: str
    """message, postback, delivery, read, echo or unsupported."""
    page_id: str
    """The entry's id: the page the webhook is about (how a tenant's channel is found)."""
    sender_id: str
    """The person's PSID, except for echoes, whose sender is the page."""
    recipient_id: str
    timestamp_ms: int
    mid: str = ""
    text: str = ""
    attachments: tuple[Attachment, ...] = ()
    payload: str = ""
    """A postback's payload, or a quick reply's: the option the person chose (see `choice`)."""
    title: str = ""
    """A postback's button title."""
    reply_to: str = ""
    """The mid this message replies to, if the person used "reply"."""
    mids: tuple[str, ...] = ()
    """Delivery receipt: the mids delivered (Facebook may leave them out; the watermark still holds)."""
    watermark_ms: int = 0
    """Receipts: every message sent before this instant is delivered / read."""
    app_id: str = ""
    """Echo: the app that sent the message (empty when a human sent it from the Page inbox).
    Handover: the app that holds the thread now (`new_owner_app_id`)."""
    standby: bool = False
    """Came on the standby channel: another app holds the thread (handover protocol)."""
    event: str = ""
    """Unsupported items: the field Facebook used (reaction, optin, referral...)."""

    @property
    def psid(self) -> str:
        """The person's page-scoped id, whichever side of the item they are on."""
        return self.recipient_id if self.kind == ECHO else self.sender_id

    @property
    def choice(self) -> str:
        """The value of the option the person picked (a quick reply or a button), "" for typed text."""
        return self.payload if self.kind in (MESSAGE, POSTBACK) else ""

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)


@dataclass(frozen=True)
class StatusUpdate:
    """A delivery status an outbound message (by its Send API mid) reached."""

    mid: str
    status: str


@dataclass(frozen=True)
class GraphFailure:
    """What a Graph API error answer means for us. `kind` says what the client raises:
    reauthorize → ReauthorizationRequired, rate_limited / retry → RetryableError,
    permanent → PermanentError; `code` is our machine-readable name for it."""

    kind: str
    code: str
    reason: str
    retry_after: float | None = None
    graph_code: int | None = None
    subcode: int | None = None
    fbtrace_id: str = ""

    @property
    def retryable(self) -> bool:
        return self.kind in (RATE_LIMITED, RETRY)


# ---------------------------------------------------------------- webhooks in


def parse_webhook(body: Any) -> list[InboundItem]:
    """The items of a (decoded) Messenger webhook body, batched entries split, in order."""
    if not isinstance(body, Mapping):
        raise InvalidWebhook(f"the body must be a JSON object, not {_kind_of(body)}")
    if body.get("object") != "page":
        raise InvalidWebhook(f"object must be 'page', not {_show(body.get('object'))}")
    entries = body.get("entry")
    if not isinstance(entries, list):
        raise InvalidWebhook(f"entry must be a list, not {_kind_of(entries)}")
    items: list[InboundItem] = []
    for i, entry in enumerate(entries):
        where = f"entry[{i}]"
        if not isinstance(entry, Mapping):
            raise InvalidWebhook(f"{where} must be an object, not {_kind_of(entry)}")
        page_id = _id(entry.get("id"), f"{where}.id")
        entry_time = _optional_int(entry.get("time"), f"{where}.time")
        lists = [(key, key == "standby") for key in ("messaging", "standby") if key in entry]
        if not lists and "changes" not in entry:  # `changes` is a Page feed webhook: nothing for Messenger
            raise InvalidWebhook(f"{where} has neither messaging nor standby")
        for key, standby in lists:
            events = entry[key]
            if not isinstance(events, list):
                raise InvalidWebhook(f"{where}.{key} must be a list, not {_kind_of(events)}")
            for j, event in enumerate(events):
                items.append(_item(event, page_id, entry_time, standby, f"{where}.{key}[{j}]"))
    return items


def _item(event: Any, page_id: str, entry_time: int | None, standby: bool, where: str) -> InboundItem:
    if not isinstance(event, Mapping):
        raise InvalidWebhook(f"{where} must be an object, not {_kind_of(event)}")
    sender = _id(_field(event, "sender", where).get("id"), f"{where}.sender.id")
    recipient = _id(_field(event, "recipient", where).get("id"), f"{where}.recipient.id")
    timestamp = _optional_int(event.get("timestamp"), f"{where}.timestamp")
    if timestamp is None:
        timestamp = entry_time  # delivery receipts may come without their own timestamp
    if timestamp is None:
        raise InvalidWebhook(f"{where}.timestamp is missing (and {where.split('.')[0]}.time too)")
    common = {"page_id": page_id, "sender_id": sender, "recipient_id": recipient, "timestamp_ms": timestamp, "standby": standby}

    if "message" in event:
        message = _field(event, "message", where)
        at = f"{where}.message"
        echo = message.get("is_echo") is True
        # One page per entry: an item about another page would be filed under the wrong tenant.
        _check_page(sender if echo else recipient, page_id, f"{where}.{'sender' if echo else 'recipient'}.id")
        quick_reply = message.get("quick_reply")
        reply_to = message.get("reply_to")
        return InboundItem(
            kind=ECHO if echo else MESSAGE,
            mid=_text(message.get("mid"), f"{at}.mid", required=True),
            text=_text(message.get("text"), f"{at}.text"),
            attachments=_attachments(message.get("attachments"), f"{at}.attachments"),
            payload=_text(_mapping(quick_reply, f"{at}.quick_reply").get("payload"), f"{at}.quick_reply.payload"),
            reply_to=_text(_mapping(reply_to, f"{at}.reply_to").get("mid"), f"{at}.reply_to.mid"),
            app_id=_optional_id(message.get("app_id"), f"{at}.app_id") if echo else "",
            **common,
        )
    _check_page(recipient, page_id, f"{where}.recipient.id")
    if "postback" in event:
        postback = _field(event, "postback", where)
        at = f"{where}.postback"
        return InboundItem(
            kind=POSTBACK,
            mid=_text(postback.get("mid"), f"{at}.mid"),
            payload=_text(postback.get("payload"), f"{at}.payload"),
            title=_text(postback.get("title"), f"{at}.title"),
            **common,
        )
    if "delivery" in event:
        delivery = _field(event, "delivery", where)
        at = f"{where}.delivery"
        mids = delivery.get("mids", [])
        if not isinstance(mids, list):
            raise InvalidWebhook(f"{at}.mids must be a list, not {_kind_of(mids)}")
        return InboundItem(
            kind=DELIVERY,
            mids=tuple(_text(mid, f"{at}.mids[{k}]", required=True) for k, mid in enumerate(mids)),
            watermark_ms=_int(delivery.get("watermark"), f"{at}.watermark"),
            **common,
        )
    if "read" in event:
        read = _field(event, "read", where)
        return InboundItem(kind=READ_RECEIPT, watermark_ms=_int(read.get("watermark"), f"{where}.read.watermark"), **common)
    for control in THREAD_CONTROLS:
        if control in event:
            # pass_thread_control reaches the app given the thread, take_thread_control the app it was taken from.
            handover = _field(event, control, where)
            owner = _id(handover.get("new_owner_app_id"), f"{where}.{control}.new_owner_app_id")
            return InboundItem(kind=HANDOVER, app_id=owner, **common)
    # Reactions, opt-ins, referrals...: well-formed, just not ours to act on yet.
    others = sorted(k for k in event if k not in ("sender", "recipient", "timestamp"))
    return InboundItem(kind=UNSUPPORTED, event=others[0] if others else "", **common)


def _attachments(value: Any, where: str) -> tuple[Attachment, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidWebhook(f"{where} must be a list, not {_kind_of(value)}")
    found = []
    for k, attachment in enumerate(value):
        at = f"{where}[{k}]"
        if not isinstance(attachment, Mapping):
            raise InvalidWebhook(f"{at} must be an object, not {_kind_of(attachment)}")
        kind = _text(attachment.get("type"), f"{at}.type", required=True)
        payload = _mapping(attachment.get("payload"), f"{at}.payload")  # fallbacks may carry "payload": null
        found.append(Attachment(type=kind, url=_text(payload.get("url"), f"{at}.payload.url")))
    return tuple(found)


def signature_header(app_secret: str, raw_body: bytes) -> str:
    """The `X-Hub-Signature-256` value Facebook sends with `raw_body`: sha256=<hex HMAC>."""
    return "sha256=" + hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()


def signature_matches(app_secret: str, raw_body: bytes, header: str | None) -> bool:
    """True if `header` (X-Hub-Signature-256) signs exactly `raw_body` with the app secret."""
    if not header or not header.startswith("sha256="):
        return False
    return hmac.compare_digest(header.encode(), signature_header(app_secret, raw_body).encode())


def receipt_updates(item: InboundItem, sent_at_ms: Mapping[str, int] | None = None) -> list[StatusUpdate]:
    """The delivery statuses a receipt implies. A delivery receipt names its mids (when
    Facebook includes them); both receipts also cover every message sent at or before
    the watermark, which only the caller knows (`sent_at_ms`: mid → Send API time)."""
    if item.kind == DELIVERY:
        status, mids = DELIVERED, set(item.mids)
    elif item.kind == READ_RECEIPT:
        status, mids = READ, set()
    else:
        return []
    mids.update(mid for mid, sent in (sent_at_ms or {}).items() if sent <= item.watermark_ms)
    return [StatusUpdate(mid, status) for mid in sorted(mids)]


# ---------------------------------------------------------------- Send API out


def messaging_type_for(last_inbound_at: datetime | None, now: datetime, tag: str = "") -> tuple[str, str]:
    """(messaging_type, tag) for a reply to someone who last wrote at `last_inbound_at`:
    RESPONSE within 24 hours, MESSAGE_TAG with an allowed tag after that (HUMAN_AGENT
    within 7 days only); anything else is refused with OutsideMessagingWindow.
    Naive datetimes are taken as UTC."""
    if tag and tag not in ALLOWED_TAGS:
        raise InvalidOutbound(f"tag must be one of {', '.join(ALLOWED_TAGS)}, not {tag[:40]!r}", code="tag_not_allowed")
    if last_inbound_at is None:
        raise OutsideMessagingWindow("the person never wrote to the page: Messenger allows no message to them")
    age = _utc(now) - _utc(last_inbound_at)
    if age < STANDARD_WINDOW:
        return RESPONSE, ""
    hours = age.total_seconds() / 3600
    if not tag:
        raise OutsideMessagingWindow(
            f"the person last wrote {hours:.1f} h ago, outside the 24 h window, and no message tag allows it"
        )
    if tag == HUMAN_AGENT and age >= HUMAN_AGENT_WINDOW:
        raise OutsideMessagingWindow(
            f"the person last wrote {hours:.1f} h ago: the HUMAN_AGENT tag allows replies within 7 days only"
        )
    return MESSAGE_TAG, tag


def text_message(psid: str, text: str, messaging_type: str = RESPONSE, tag: str = "") -> dict[str, Any]:
    """The Send API body for a text message; refuses what Facebook would refuse."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidOutbound("text must not be empty", code="empty_text")
    if len(text) > MAX_TEXT:
        raise InvalidOutbound(f"text must be at most {MAX_TEXT} characters for Messenger, not {len(text)}", code="text_too_long")
    return {**_envelope(psid, messaging_type, tag), "message": {"text": text}}


def attachment_message(
    psid: str, attachment_type: str, url: str, messaging_type: str = RESPONSE, tag: str = "", *, reusable: bool = False
) -> dict[str, Any]:
    """The Send API body for an attachment Facebook fetches from `url`."""
    if attachment_type not in SENDABLE_ATTACHMENT_TYPES:
        raise InvalidOutbound(
            f"attachment type must be one of {', '.join(SENDABLE_ATTACHMENT_TYPES)}, not {str(attachment_type)[:40]!r}",
            code="invalid_attachment",
        )
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise InvalidOutbound("attachment url must be an http(s) URL", code="invalid_attachment")
    payload: dict[str, Any] = {"url": url}
    if reusable:
        payload["is_reusable"] = True
    return {**_envelope(psid, messaging_type, tag), "message": {"attachment": {"type": attachment_type, "payload": payload}}}


class Unsupported(Exception):
    """Rich content Messenger cannot show as such (a limit exceeded, a shape it lacks): sent as text."""


def rich_message(
    psid: str, text: str, content: Mapping[str, Any] | None, messaging_type: str = RESPONSE, tag: str = ""
) -> tuple[dict[str, Any], str]:
    """(Send API body, why it degraded) for a reply with channel-neutral `content`
    (spokes/botpress/translate.reply_content): choice → text with quick replies, cards →
    generic template, media → attachment by URL. Content Messenger cannot take within
    its limits is sent as `text` instead, and the reason returned (never silently);
    a reply Facebook would refuse either way raises InvalidOutbound."""
    if not content:
        return text_message(psid, text, messaging_type, tag), ""
    try:
        message = rich_content(content)
    except Unsupported as exc:
        return text_message(psid, text, messaging_type, tag), f"{exc}: sent as text"
    except (KeyError, TypeError, AttributeError, ValueError) as exc:  # content that is an object but not of its shape
        return text_message(psid, text, messaging_type, tag), f"malformed content ({type(exc).__name__}): sent as text"
    return {**_envelope(psid, messaging_type, tag), "message": message}, ""


def rich_content(content: Mapping[str, Any]) -> dict[str, Any]:
    """The Send API `message` for channel-neutral content; Unsupported when Messenger cannot show it."""
    kind = content.get("type")
    if kind == "choice":
        return _quick_replies(content)
    if kind == "cards":
        return _generic_template(content)
    if kind == "media":
        media, url = content.get("media"), content.get("url")
        if media not in SENDABLE_ATTACHMENT_TYPES or not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise Unsupported(f"a {str(media)[:20]} attachment without an http(s) URL")
        return {"attachment": {"type": media, "payload": {"url": url, "is_reusable": True}}}
    raise Unsupported(f"content of type {str(kind)[:40]} has no Messenger shape")


def _quick_replies(content: Mapping[str, Any]) -> dict[str, Any]:
    options = list(content.get("options") or ())
    text = content.get("text") or ""
    if not text.strip() or len(text) > MAX_TEXT:
        raise Unsupported(f"quick replies need a text of 1 to {MAX_TEXT} characters")
    if not 1 <= len(options) <= MAX_QUICK_REPLIES:
        raise Unsupported(f"{len(options)} options: Messenger shows 1 to {MAX_QUICK_REPLIES} quick replies")
    for option in options:
        if len(option["label"]) > MAX_QUICK_REPLY_TITLE:
            raise Unsupported(
                f"an option's label has {len(option['label'])} characters: a quick reply's title {MAX_QUICK_REPLY_TITLE} at most"
            )
        if not option["value"] or len(option["value"]) > MAX_PAYLOAD:
            raise Unsupported(f"an option's value must have 1 to {MAX_PAYLOAD} characters")
    replies = [{"content_type": "text", "title": o["label"], "payload": o["value"]} for o in options]
    return {"text": text, "quick_replies": replies}


def _generic_template(content: Mapping[str, Any]) -> dict[str, Any]:
    cards = list(content.get("cards") or ())
    if not 1 <= len(cards) <= MAX_ELEMENTS:
        raise Unsupported(f"{len(cards)} cards: a generic template holds 1 to {MAX_ELEMENTS}")
    elements = []
    for card in cards:
        title, subtitle = card.get("title") or "", card.get("subtitle") or ""
        if not title or len(title) > MAX_ELEMENT_TITLE:
            raise Unsupported(f"a card title has {len(title)} characters: 1 to {MAX_ELEMENT_TITLE} allowed")
        if len(subtitle) > MAX_ELEMENT_SUBTITLE:
            raise Unsupported(f"a card subtitle has {len(subtitle)} characters: {MAX_ELEMENT_SUBTITLE} at most")
        buttons = list(card.get("buttons") or ())
        if len(buttons) > MAX_BUTTONS:
            raise Unsupported(f"a card has {len(buttons)} buttons: {MAX_BUTTONS} at most")
        element: dict[str, Any] = {"title": title}
        if subtitle:
            element["subtitle"] = subtitle
        if card.get("image_url"):
            element["image_url"] = card["image_url"]
        if buttons:
            element["buttons"] = [_button(b) for b in buttons]
        elements.append(element)
    return {"attachment": {"type": "template", "payload": {"template_type": "generic", "elements": elements}}}


def _button(button: Mapping[str, Any]) -> dict[str, Any]:
    label, value = button.get("label") or "", button.get("value") or ""
    if not label or len(label) > MAX_BUTTON_TITLE:
        raise Unsupported(f"a button title has {len(label)} characters: 1 to {MAX_BUTTON_TITLE} allowed")
    if button.get("action") == "url":
        if not value.startswith(("https://", "http://")):
            raise Unsupported("a link button without an http(s) URL")
        return {"type": "web_url", "title": label, "url": value}
    # postback, and "say" (the contact says the value): both come back as the button's payload.
    if not value or len(value) > MAX_PAYLOAD:
        raise Unsupported(f"a button's value must have 1 to {MAX_PAYLOAD} characters")
    return {"type": "postback", "title": label, "payload": value}


def sender_action_message(psid: str, action: str) -> dict[str, Any]:
    """The Send API body of a sender action (typing_on…): no message, no messaging_type."""
    if action not in SENDER_ACTIONS:
        raise InvalidOutbound(f"sender_action must be one of {', '.join(SENDER_ACTIONS)}", code="invalid_sender_action")
    if not isinstance(psid, str) or not psid.strip() or len(psid) > 200:
        raise InvalidOutbound("recipient PSID must be a non-empty id", code="invalid_recipient")
    return {"recipient": {"id": psid}, "sender_action": action}


def _envelope(psid: str, messaging_type: str, tag: str) -> dict[str, Any]:
    if not isinstance(psid, str) or not psid.strip() or len(psid) > 200:
        raise InvalidOutbound("recipient PSID must be a non-empty id", code="invalid_recipient")
    if messaging_type not in MESSAGING_TYPES:
        raise InvalidOutbound(
            f"messaging_type must be one of {', '.join(MESSAGING_TYPES)}, not {str(messaging_type)[:40]!r}",
            code="invalid_messaging_type",
        )
    body: dict[str, Any] = {"recipient": {"id": psid}, "messaging_type": messaging_type}
    if messaging_type == MESSAGE_TAG:
        if tag not in ALLOWED_TAGS:
            raise InvalidOutbound(
                f"MESSAGE_TAG needs a tag of {', '.join(ALLOWED_TAGS)}, not {tag[:40]!r}", code="tag_not_allowed"
            )
        body["tag"] = tag
    elif tag:
        raise InvalidOutbound(f"a tag goes with messaging_type MESSAGE_TAG only, not {messaging_type}", code="tag_not_allowed")
    return body


def appsecret_proof(app_secret: str, access_token: str) -> str:
    """Graph's `appsecret_proof`: the hex HMAC-SHA256 of the access token keyed by the app secret."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------- Graph errors


def classify_graph_error(
    status: int,
    body: bytes | str | Mapping[str, Any] | None,
    headers: Mapping[str, str] | None = None,
    *,
    now: datetime | None = None,
    default_retry_after: float = DEFAULT_RATE_LIMIT_WAIT_S,
) -> GraphFailure:
    """What an unsuccessful Graph answer (HTTP `status`, error `body`, `headers`) means."""
    error = _graph_error(body)
    code, subcode = _as_int(error.get("code")), _as_int(error.get("error_subcode"))
    trace = str(error.get("fbtrace_id") or _header(headers, "x-fb-trace-id") or "")[:40]
    message = " ".join(str(error.get("message") or "").split())[:200] or "no error message"
    reason = f"Graph API HTTP {status}, error {code if code is not None else '-'}" + (f"/{subcode}" if subcode else "")
    reason += f": {message}" + (f" (fbtrace_id {trace})" if trace else "")

    def failure(kind: str, name: str, retry_after: float | None = None) -> GraphFailure:
        return GraphFailure(kind, name, reason, retry_after, code, subcode, trace)

    if status == 429 or code in RATE_LIMIT_CODES:
        return failure(RATE_LIMITED, "rate_limited", _retry_after(headers, now) or default_retry_after)
    if code in REAUTHORIZATION_CODES:
        return failure(REAUTHORIZE, "reauthorization_required")
    if code in TRANSIENT_CODES or error.get("is_transient") is True:
        return failure(RETRY, "graph_transient")
    if code == 10 and subcode in OUTSIDE_WINDOW_SUBCODES:
        return failure(PERMANENT, "outside_messaging_window")
    if code == 551 or (code == 200 and subcode == RECIPIENT_UNAVAILABLE_SUBCODE):
        return failure(PERMANENT, "recipient_unavailable")
    if code == 100 and subcode == NO_MATCHING_USER_SUBCODE:
        return failure(PERMANENT, "recipient_not_found")
    if code == 100:
        return failure(PERMANENT, "invalid_parameter")
    if code == 10 or (code is not None and 200 <= code <= 299):
        return failure(PERMANENT, "permission_denied")
    if code == 368:
        return failure(PERMANENT, "policy_blocked")
    if status >= 500:
        # Not one of Graph's "temporary, retry" answers (above): a gateway error after
        # the request was forwarded may hide a message that went out.
        return failure(RETRY, OUTCOME_UNKNOWN)
    return failure(PERMANENT, "graph_error")


def _graph_error(body: bytes | str | Mapping[str, Any] | None) -> Mapping[str, Any]:
    if isinstance(body, bytes | str):
        try:
            body = json.loads(body or b"null")
        except ValueError:
            return {}
    error = body.get("error") if isinstance(body, Mapping) else None
    return error if isinstance(error, Mapping) else {}


def _retry_after(headers: Mapping[str, str] | None, now: datetime | None) -> float | None:
    value = _header(headers, "retry-after")
    if value:
        try:
            return max(float(value), 0.0) or None
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None and now is not None:
            return max((_utc(when) - _utc(now)).total_seconds(), 0.0) or None
    # Business-use-case throttling says how long instead, in minutes, per business object.
    usage = _header(headers, "x-business-use-case-usage")
    try:
        minutes = [
            float(entry.get("estimated_time_to_regain_access") or 0)
            for entries in json.loads(usage).values()
            for entry in entries
            if isinstance(entry, Mapping)
        ]
    except (TypeError, ValueError, AttributeError):
        return None
    return max(minutes, default=0.0) * 60 or None


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name:
            return value
    return None


# ---------------------------------------------------------------- field checks


def _field(event: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = event.get(key)
    if not isinstance(value, Mapping):
        raise InvalidWebhook(f"{where}.{key} must be an object, not {_kind_of(value)}")
    return value


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidWebhook(f"{where} must be an object, not {_kind_of(value)}")
    return value


def _id(value: Any, where: str) -> str:
    # Facebook sends ids as strings; numbers are accepted since JSON tools sometimes turn them into ones.
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if not isinstance(value, str) or not value or len(value) > 200 or not value.isprintable() or " " in value:
        raise InvalidWebhook(f"{where} must be a non-empty id string, not {_show(value)}")
    return value


def _optional_id(value: Any, where: str) -> str:
    return "" if value is None else _id(value, where)


def _text(value: Any, where: str, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise InvalidWebhook(f"{where} must be a {'non-empty ' if required else ''}string, not {_show(value)}")
    return value


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidWebhook(f"{where} must be a non-negative integer (epoch milliseconds), not {_show(value)}")
    return value


def _optional_int(value: Any, where: str) -> int | None:
    return None if value is None else _int(value, where)


def _check_page(actual: str, page_id: str, where: str) -> None:
    if actual != page_id:
        raise InvalidWebhook(f"{where} is {actual}, not the entry's page {page_id}")


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _kind_of(value: Any) -> str:
    return "missing" if value is None else type(value).__name__


def _show(value: Any) -> str:
    # Field values may be personal data: repeat only short ones (a wrong `object`, an id), never long text.
    if value is None:
        return "missing"
    if isinstance(value, str):
        return repr(value) if len(value) <= 24 else f"a string of {len(value)} characters"
    return type(value).__name__
