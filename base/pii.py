"""Masking of personal data and secrets for logs, reports, pages, rejection
reasons and read models that must not hold them in clear: one mechanism for all
of them. Fields are masked by an allow-list (`mask_fields`), free text by shape
(`mask_text`), always before anything is cut short. Pure: no I/O, total on any input."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
_PHONE_MASK = "******"
_ASCII_DIGITS = frozenset("0123456789")


def mask_email(email: str) -> str:
    """`alice@example.com` → `a***@example.com`: the first character of the local
    part and the domain stay, so a person recognises their own address; anything
    that is not shaped like an address becomes `***` whole."""
    if not email:
        return ""
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in email):
        return MASK
    return f"{local[0]}{MASK}@{domain}"


def mask_phone(phone: str) -> str:
    """`+33612345678` → `+33******78`: two leading and two trailing digits stay and
    a fixed run of stars hides the rest and the length. Fewer than eight digits
    would show half the number, so those become `***` whole."""
    if not phone:
        return ""
    digits = [c for c in phone if c in _ASCII_DIGITS]
    if len(digits) < 8:
        return MASK
    return f"+{''.join(digits[:2])}{_PHONE_MASK}{''.join(digits[-2:])}"


def mask_name(name: str) -> str:
    """`Alice Martin` → `A*** M***`: the initial of each word."""
    return " ".join(f"{word[0]}{MASK}" for word in name.split())


# -- free text -----------------------------------------------------------------

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,})")
_PHONE = re.compile(r"(?<![\w])\+?\d[\d ().-]{6,}\d(?![\w])")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_SECRET_FIELD = re.compile(
    r"""(?i)(["']?\b(?:password|passwd|secret|token|api_key|apikey|access_token|refresh_token|totp[_a-z]*)\b["']?\s*[:=]\s*)(["']?)[^"',;}\s]+"""
)
_TEXT_FIELD = re.compile(
    r"""(?i)(["']?\b(?:text|body|message_text|first_name|last_name|full_name|name|address)\b["']?\s*[:=]\s*)(["'])(.*?)\2"""
)


def _phone_in_text(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "•••" + digits[-2:] if len(digits) >= 7 else match.group(0)


def mask_text(text: str, limit: int | None = None) -> str:
    """Free text (a reason, an error, a payload summary) as an operator may read it:
    emails keep their first letter and domain, phone numbers their last two digits;
    tokens, secrets and quoted free-text fields (message bodies, names, addresses)
    are replaced whole. Masks first and cuts to `limit` after, so a value cut in
    half can never slip past a pattern that needs it whole."""
    if not text:
        return ""
    text = _JWT.sub("[token]", text)
    text = _BEARER.sub(r"\1[token]", text)
    text = _SECRET_FIELD.sub(r"\1\2[secret]", text)
    text = _TEXT_FIELD.sub(lambda m: f"{m.group(1)}{m.group(2)}[{len(m.group(3))} chars]{m.group(2)}", text)
    text = _EMAIL.sub(lambda m: f"{m.group(1)}•••@{m.group(2)}", text)
    text = _PHONE.sub(_phone_in_text, text)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


# -- structured records ----------------------------------------------------------

_CLEAR_NAMES = frozenset(
    {
        "id", "status", "outcome", "kind", "currency", "channel", "platform", "step", "state", "mode", "policy",
        "protocol", "scope", "scopes", "role", "roles", "hub", "spoke", "system", "direction", "rule",
        "rejection", "duplicate", "version", "generation", "action", "attempt", "type",
    }
)  # fmt: skip
_CLEAR_SUFFIXES = ("_id", "_ids", "_type", "_types", "_at", "_status", "_kind", "_step", "_count")
_TEXT_NAMES = frozenset({"reason", "error", "detail", "summary", "reference", "url", "description", "key"})
_PERSONAL = {"email": mask_email, "login": mask_email, "phone": mask_phone, "display_name": mask_name, "name": mask_name}


def _shown_in_clear(name: str) -> bool:
    return name in _CLEAR_NAMES or name.endswith(_CLEAR_SUFFIXES)


def mask_fields(value: Any, name: str = "") -> Any:
    """A record (decoded Avro, parsed JSON) as a report, a log line or a page may
    show it, by an allow-list: values of identifier, type and status fields are
    shown as they are; reasons, errors and references as `mask_text` leaves them;
    emails, phones and names masked by their shape; every other string — message
    text, raw bodies, credentials, anything not named above — replaced whole.
    A string holding a JSON object or array (a raw webhook body, saga inputs) is
    parsed and masked field by field, so a name inside it is masked like the same
    name outside. Numbers, booleans and nulls are shown. Pure and total."""
    lowered = name.lower()
    if isinstance(value, Mapping):
        return {k: mask_fields(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_fields(v, name) for v in value]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if not isinstance(value, str) or not value:
        return value
    nested = _json_container(value)
    if nested is not None:
        return json.dumps(mask_fields(nested, name), ensure_ascii=False, separators=(",", ":"), default=str)
    if lowered in _PERSONAL:
        return _PERSONAL[lowered](value)
    if _shown_in_clear(lowered):
        return value
    if lowered in _TEXT_NAMES:
        return mask_text(value)
    return MASK


def _json_container(text: str) -> Any:
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return None
    try:
        parsed = json.loads(stripped)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict | list) else None
