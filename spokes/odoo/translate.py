"""Pure translation between our customers and Odoo's external API: the `res.partner` domains
and values, the XML-RPC envelope (stdlib marshalling only), and what every Odoo answer means
for us — a value, or a `Failure` to retry, to give up on, or to send the tenant back to
re-authorise. No I/O, and no personal data or message text in any reason it writes."""

from __future__ import annotations

import json
import re
import xmlrpc.client
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from xml.parsers.expat import ExpatError

PARTNER_MODEL = "res.partner"
CONTACT_ID_FIELDS: Mapping[str, str] = {"facebook": "x_facebook_psid"}
"""Channel → the `res.partner` field holding that channel's contact id (a custom field the tenant's Odoo defines)."""

# XML-RPC fault codes of /xmlrpc/2 (odoo/addons/base/controllers/rpc.py): UserError and its
# kin are 2, a bad login or API key 3, missing access rights 4, anything else 1 with the traceback.
FAULT_APPLICATION_ERROR = 1
FAULT_WARNING = 2
FAULT_ACCESS_DENIED = 3
FAULT_ACCESS_ERROR = 4

FailureKind = Literal["retryable", "permanent", "reauthorize"]


class InvalidCustomer(ValueError):
    """What we were asked to record cannot be recorded in Odoo at all (unknown channel, no contact id)."""


@dataclass(frozen=True)
class Failure:
    """What an Odoo answer means when it is not a result."""

    kind: FailureKind
    """`retryable` (try again later), `permanent` (will fail the same way) or `reauthorize` (the tenant's credentials)."""
    code: str
    """Stable error code for outcomes and metrics (`odoo_access_denied`, `odoo_user_error`…)."""
    reason: str
    """For operators: the call and Odoo's exception class, never the message (it may quote customer data)."""
    retry_after: float | None = None
    """Seconds the server asked us to wait (`Retry-After`), if it said."""


@dataclass(frozen=True)
class Reply:
    """One decoded answer: `value` when `failure` is None."""

    value: Any = None
    failure: Failure | None = None


# --- res.partner -----------------------------------------------------------------------------


def contact_id_field(channel: str) -> str:
    try:
        return CONTACT_ID_FIELDS[channel]
    except KeyError:
        raise InvalidCustomer(f"no res.partner field holds contact ids of channel {channel!r}") from None


def partner_domain(channel: str, contact_id: str) -> list[list[Any]]:
    """The search domain finding the partner of one channel contact."""
    if not contact_id:
        raise InvalidCustomer("a contact id is required to find the customer")
    return [[contact_id_field(channel), "=", contact_id]]


def partner_fields(channel: str) -> list[str]:
    """The fields we read back (Odoo adds `id` by itself)."""
    return ["name", "phone", contact_id_field(channel)]


def partner_name(channel: str, contact_id: str, display_name: str | None) -> str:
    # Odoo refuses a contact without a name ("Contacts require a name"): fall back on the channel id.
    name = (display_name or "").strip()
    return name or f"{channel.capitalize()} contact {contact_id}"


def new_partner_values(channel: str, contact_id: str, display_name: str | None, phone: str | None) -> dict[str, Any]:
    values: dict[str, Any] = {"name": partner_name(channel, contact_id, display_name), contact_id_field(channel): contact_id}
    if phone and phone.strip():
        values["phone"] = phone.strip()
    return values


def phone_change(partner: Mapping[str, Any], phone: str | None) -> dict[str, Any]:
    """The values to write so the partner holds `phone`: nothing when none is given or it is the same number."""
    if not phone or not phone.strip():
        return {}
    current = partner.get("phone") or None  # Odoo answers False for an empty field
    if isinstance(current, str) and same_phone(current, phone):
        return {}
    return {"phone": phone.strip()}


def same_phone(a: str, b: str) -> bool:
    """Equal numbers however they are spaced or punctuated ("+32 470 12-34-56" = "+32470123456")."""
    return _phone_key(a) == _phone_key(b)


def _phone_key(phone: str) -> str:
    phone = phone.strip()
    return ("+" if phone.startswith("+") else "") + re.sub(r"\D", "", phone)


# --- XML-RPC envelope ------------------------------------------------------------------------


def xmlrpc_request(method: str, params: tuple[Any, ...]) -> bytes:
    """A `methodCall` body. None is refused as Odoo's server refuses it (allow_none=False)."""
    return xmlrpc.client.dumps(params, methodname=method, encoding="utf-8", allow_none=False).encode("utf-8")


def xmlrpc_reply(call: str, status: int, body: bytes, retry_after: str | None = None) -> Reply:
    """Odoo answers every fault with HTTP 200 and a `<fault>`; other statuses come from a proxy or a crash."""
    if status != 200:
        return Reply(failure=http_failure(call, status, retry_after))
    try:
        params, _ = xmlrpc.client.loads(body, use_builtin_types=True)
    except xmlrpc.client.Fault as fault:
        return Reply(failure=fault_failure(call, fault.faultCode, fault.faultString))
    except (ExpatError, xmlrpc.client.ResponseError, ValueError, TypeError):
        # A maintenance page answered with 200 is the usual cause: worth another try later.
        return Reply(failure=Failure("retryable", "odoo_bad_response", f"{call}: the answer is not an XML-RPC response"))
    if len(params) != 1:
        return Reply(
            failure=Failure("retryable", "odoo_bad_response", f"{call}: the XML-RPC response holds {len(params)} values")
        )
    return Reply(value=params[0])


def fault_failure(call: str, fault_code: int | str, fault_string: str) -> Failure:
    """An XML-RPC fault of /xmlrpc/2 (integer codes), or of the legacy /xmlrpc (string codes)."""
    if isinstance(fault_code, str):
        return _legacy_fault_failure(call, fault_code, fault_string)
    where = f"{call}: XML-RPC fault {fault_code}"
    if fault_code == FAULT_ACCESS_DENIED:
        return Failure("reauthorize", "odoo_access_denied", f"{where} (AccessDenied): the login or API key was refused")
    if fault_code == FAULT_ACCESS_ERROR:
        return Failure("permanent", "odoo_access_error", f"{where} (AccessError): the Odoo user lacks access rights")
    if fault_code == FAULT_WARNING:
        # UserError and its subclasses (ValidationError, MissingError…) all share code 2;
        # only MissingError's standard message tells it apart.
        if "does not exist or has been deleted" in fault_string:
            return Failure("permanent", "odoo_missing", f"{where} (MissingError): the record no longer exists")
        return Failure("permanent", "odoo_user_error", f"{where} (UserError): Odoo refused the operation")
    name, message = traceback_exception(fault_string)
    return exception_failure(call, name, message, where=where) or Failure(
        "retryable", "odoo_server_error", f"{where} ({name or 'unknown error'}): Odoo failed"
    )


def _legacy_fault_failure(call: str, fault_code: str, fault_string: str) -> Failure:
    where = f"{call}: XML-RPC fault"
    if fault_code == "AccessDenied":
        return Failure("reauthorize", "odoo_access_denied", f"{where} (AccessDenied): the login or API key was refused")
    if match := re.match(r"warning -- (\w+)", fault_code):
        found = exception_failure(call, match[1], "", where=where)
        return found or Failure("permanent", "odoo_user_error", f"{where} ({match[1]}): Odoo refused the operation")
    name, message = traceback_exception(fault_string)
    return exception_failure(call, name, message, where=where) or Failure(
        "retryable", "odoo_server_error", f"{where} ({name or 'unknown error'}): Odoo failed"
    )


def traceback_exception(text: str) -> tuple[str, str]:
    """(exception class, message) from a Python traceback's last exception line."""
    lines = text.rstrip("\n").splitlines()
    # The exception line follows the last frame (`  File "…", line N` and its indented source
    # lines); the message may go on below it, indented or not (psycopg2's are).
    start = 1 + max((i for i, line in enumerate(lines) if re.match(r'^\s+File ".*", line \d+', line)), default=-1)
    while start < len(lines) and lines[start].startswith("    "):
        start += 1
    for index in range(start, len(lines)):
        if match := re.match(r"^([A-Za-z_][\w.]*)(?::\s?(.*))?$", lines[index]):
            return match[1], "\n".join([match[2] or "", *lines[index + 1 :]]).strip()
    return "", ""


# --- JSON-2 ----------------------------------------------------------------------------------


def json2_body(params: Mapping[str, Any]) -> bytes:
    return json.dumps(params, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def json2_reply(call: str, status: int, body: bytes, retry_after: str | None = None) -> Reply:
    """200 with the JSON result, or 4xx/5xx with `{"name", "message", "arguments", "context", "debug"}`
    (odoo.http.serialize_exception) — or a proxy's page, which only its status explains."""
    if status == 200:
        try:
            return Reply(value=json.loads(body))
        except ValueError:
            return Reply(failure=Failure("retryable", "odoo_bad_response", f"{call}: the answer is not JSON"))
    error = _json_error(body)
    if error is None:
        return Reply(failure=http_failure(call, status, retry_after))
    name = str(error.get("name") or "")
    found = exception_failure(call, name, str(error.get("message") or ""), where=f"{call}: HTTP {status}")
    if found is not None:
        return Reply(failure=_with_retry_after(found, retry_after))
    # An exception class we do not know (a module's own): its status says what kind it is.
    return Reply(failure=http_failure(f"{call} ({name})", status, retry_after))


def _json_error(body: bytes) -> Mapping[str, Any] | None:
    try:
        error = json.loads(body)
    except ValueError:
        return None
    return error if isinstance(error, Mapping) and "name" in error else None


# --- what an exception or a status means ----------------------------------------------------

_REAUTHORIZE = {"AccessDenied", "Unauthorized"}
_ACCESS = {"AccessError", "Forbidden"}
_MISSING = {"MissingError"}
_USER = {"UserError", "ValidationError", "RedirectWarning", "Warning"}
_BUSY = {
    "LockError",
    "ConcurrencyError",
    "SerializationFailure",
    "LockNotAvailable",
    "DeadlockDetected",
    "TransactionRollbackError",
}
_NOT_FOUND = {"NotFound", "MethodNotAllowed"}
# Odoo refusing the shape of our call (unknown field or method, wrong arguments): our bug, not a passing fault.
_BAD_CALL = {"BadRequest", "UnprocessableEntity", "UnsupportedMediaType", "ValueError", "TypeError", "KeyError", "AttributeError"}
_RATE_LIMITED = {"TooManyRequests"}


def exception_failure(call: str, name: str, message: str, *, where: str) -> Failure | None:
    """The meaning of an Odoo exception class, or None when the class says nothing we know."""
    short = name.rsplit(".", 1)[-1]
    label = f"{where} ({name})"
    if short in _REAUTHORIZE:
        return Failure("reauthorize", "odoo_access_denied", f"{label}: the API key or login was refused")
    if short in _ACCESS:
        return Failure("permanent", "odoo_access_error", f"{label}: the Odoo user lacks access rights")
    if short in _MISSING:
        return Failure("permanent", "odoo_missing", f"{label}: the record no longer exists")
    if short in _USER:
        return Failure("permanent", "odoo_user_error", f"{label}: Odoo refused the operation")
    if short in _BUSY:
        return Failure("retryable", "odoo_busy", f"{label}: records locked by another transaction")
    if short in _RATE_LIMITED:
        return Failure("retryable", "odoo_rate_limited", f"{label}: too many requests")
    if short == "OperationalError" and re.search(r'database ".*" does not exist', message):
        return Failure("permanent", "odoo_unknown_database", f"{label}: the configured database does not exist")
    if short in _NOT_FOUND:
        return Failure("permanent", "odoo_not_found", f"{label}: no such model, method or endpoint")
    if short in _BAD_CALL:
        return Failure("permanent", "odoo_bad_request", f"{label}: Odoo refused the call's shape")
    return None


def http_failure(call: str, status: int, retry_after: str | None = None) -> Failure:
    """A status without an Odoo error body (a proxy, a crash, an older Odoo without the endpoint)."""
    where = f"{call}: HTTP {status}"
    wait = parse_retry_after(retry_after)
    if status == 401:
        return Failure("reauthorize", "odoo_access_denied", f"{where}: the API key was refused")
    if status == 403:
        return Failure("permanent", "odoo_access_error", f"{where}: forbidden")
    if status == 404:
        # Also what a database name unknown to the server gets on /json/2, or an Odoo older than 19.
        return Failure("permanent", "odoo_not_found", f"{where}: no such endpoint for this server and database")
    if status in (408, 504):
        return Failure("retryable", "odoo_timeout", f"{where}: Odoo did not answer in time", wait)
    if status == 409:
        return Failure("retryable", "odoo_busy", f"{where}: conflicting transaction", wait)
    if status in (425, 429):
        return Failure("retryable", "odoo_rate_limited", f"{where}: too many requests", wait)
    if status == 500:
        return Failure("retryable", "odoo_server_error", f"{where}: Odoo failed", wait)
    if status >= 500:
        return Failure("retryable", "odoo_unavailable", f"{where}: Odoo is unavailable", wait)
    return Failure("permanent", f"odoo_http_{status}", f"{where}: refused")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header; an HTTP date is left to the backoff."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _with_retry_after(failure: Failure, retry_after: str | None) -> Failure:
    if failure.kind != "retryable" or failure.retry_after is not None:
        return failure
    return Failure(failure.kind, failure.code, failure.reason, parse_retry_after(retry_after))


_PHONE_IN_TEXT = re.compile(r"(?<![\w+])(\+?\d[\d ().-]{6,18}\d)(?!\w)")


def phone_in_text(text: str) -> str | None:
    """The first phone number a customer typed (8 to 15 digits, optional +), normalised
    to `+digits` or `digits`; None when the text holds none. Capturing the number is
    what the CRM wants from a chat ("call me on +33 6 12 34 56 78")."""
    for match in _PHONE_IN_TEXT.finditer(text or ""):
        raw = match.group(1)
        digits = re.sub(r"\D", "", raw)
        if 8 <= len(digits) <= 15:
            return ("+" if raw.startswith("+") else "") + digits
    return None
