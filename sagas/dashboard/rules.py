"""Pure rules of the dashboard: list filters → SQL, PII masking of payload
summaries, the session secrets (cookie names, what is derived from a session id,
the CSRF check), who counts as an operator and where it may listen. No I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlencode

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from base.pii import mask_text
from hubs.saga.definition import STATES
from hubs.tenant.aggregate import OPERATORS_TENANT

ACTIONS = ("retry", "reset", "compensate", "abort")
RESETTABLE_STATES = ("waiting", "running", "failed")
"""A saga may be reset to a step only while it runs its steps (not while it compensates, nor once finished)."""
OPERATOR_TENANT = OPERATORS_TENANT
"""The tenant whose admins and owners operate the platform (only the platform creates it)."""
OPERATOR_ROLES = ("admin", "owner")
MAX_PAGE_SIZE = 200
_DURATION = re.compile(r"^(\d{1,6})([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_IDENT = re.compile(r"^[A-Za-z0-9_.:@/-]{1,200}$")
MAX_FIND = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f\s]")


class BadFilter(ValueError):
    """A list filter that cannot be used; the message names the parameter."""


def parse_duration(name: str, raw: str) -> int | None:
    """`90s`, `15m`, `2h`, `7d` → seconds; empty → None."""
    raw = raw.strip()
    if not raw:
        return None
    match = _DURATION.match(raw)
    if not match:
        raise BadFilter(f"{name} must look like 30s, 15m, 2h or 7d, not {raw!r}")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


@dataclass(frozen=True)
class SagaFilter:
    state: str = ""
    saga_type: str = ""
    tenant_id: str = ""
    min_age_s: int | None = None
    """Started at least this long ago (stuck sagas)."""
    max_age_s: int | None = None
    """Started at most this long ago (recent sagas)."""
    find: str = ""
    """An id, matched exactly against saga id, correlation id, message id and contact id."""
    page: int = 1
    page_size: int = 50

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> SagaFilter:
        state = query.get("state", "").strip()
        if state and state not in STATES:
            raise BadFilter(f"state must be one of {', '.join(STATES)}, not {state!r}")
        saga_type, tenant_id = query.get("type", "").strip(), query.get("tenant", "").strip()
        for name, value in (("type", saga_type), ("tenant", tenant_id)):
            if value and not _IDENT.match(value):
                raise BadFilter(f"{name} has characters that no {name} has")
        try:
            page = int(query.get("page", "1") or 1)
            page_size = int(query.get("page_size", "50") or 50)
        except ValueError:
            raise BadFilter("page and page_size must be whole numbers") from None
        if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise BadFilter(f"page must be at least 1 and page_size between 1 and {MAX_PAGE_SIZE}")
        return cls(
            state=state,
            saga_type=saga_type,
            tenant_id=tenant_id,
            min_age_s=parse_duration("min_age", query.get("min_age", "")),
            max_age_s=parse_duration("max_age", query.get("max_age", "")),
            find=check_find(query.get("q", "")),
            page=page,
            page_size=page_size,
        )

    def where(self, *, with_state: bool = True) -> tuple[str, list]:
        """`WHERE …` with numbered parameters (empty string when unfiltered).
        Values are always parameters, never spliced into the SQL."""
        clauses: list[str] = []
        args: list = []

        def add(sql: str, value) -> None:
            args.append(value)
            clauses.append(sql.format(f"${len(args)}"))

        if with_state and self.state:
            add("state = {}", self.state)
        if self.saga_type:
            add("saga_type = {}", self.saga_type)
        if self.tenant_id:
            add("tenant_id = {}", self.tenant_id)
        if self.find:
            # One index per column (OR → bitmap scans); saga_id is a uuid column,
            # so only a UUID is compared with it (any other text would not cast).
            args.append(self.find)
            p = f"${len(args)}"
            match = [f"correlation_id = {p}", f"message_id = {p}", f"contact_id = {p}"]
            if is_uuid(self.find):
                args.append(str(uuid.UUID(self.find)))
                match.insert(0, f"saga_id = ${len(args)}::uuid")
            clauses.append(f"({' OR '.join(match)})")
        if self.min_age_s is not None:
            add("started_at <= now() - make_interval(secs => {})", float(self.min_age_s))
        if self.max_age_s is not None:
            add("started_at >= now() - make_interval(secs => {})", float(self.max_age_s))
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), args

    def limit_offset(self) -> tuple[int, int]:
        return self.page_size, (self.page - 1) * self.page_size

    def query_string(self, **changes) -> str:
        f = replace(self, **changes)
        pairs = {
            "state": f.state,
            "type": f.saga_type,
            "tenant": f.tenant_id,
            "min_age": duration_text(f.min_age_s),
            "max_age": duration_text(f.max_age_s),
            "q": f.find,
            "page": str(f.page) if f.page != 1 else "",
            "page_size": str(f.page_size) if f.page_size != 50 else "",
        }
        return urlencode({k: v for k, v in pairs.items() if v})


def check_find(raw: str) -> str:
    """The search box's id, trimmed; '' for none. Ids have no spaces or control
    characters and are at most 200 characters: anything else is refused by name."""
    raw = raw.strip()
    if len(raw) > MAX_FIND:
        raise BadFilter(f"q (the id to find) may have at most {MAX_FIND} characters")
    if _CONTROL.search(raw):
        raise BadFilter("q (the id to find) is one id: no spaces or control characters")
    return raw


TRACE_ID = re.compile(r"[0-9a-f]{32}")


def trace_link(template: str, trace_id: str) -> str:
    """The trace viewer's page of a saga's trace (POSEIDON_TRACE_URL_TEMPLATE with
    `{trace_id}` replaced), or "" without a template or a well-formed trace id."""
    if not template or not TRACE_ID.fullmatch(trace_id or ""):
        return ""
    return template.replace("{trace_id}", trace_id)


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def duration_text(seconds: int | None) -> str:
    if seconds is None:
        return ""
    for unit in ("d", "h", "m"):
        if seconds % _UNIT_S[unit] == 0:
            return f"{seconds // _UNIT_S[unit]}{unit}"
    return f"{seconds}s"


# --- per-type statistics ------------------------------------------------------
#
# Every statistic reads the sagas *started* within one window (the indexed,
# never-updated started_at), grouped by type: counts per state, durations of
# the finished ones (completed, compensated, aborted: last change − start) as
# percentiles computed in PostgreSQL, and the errors they carry now, grouped
# with UUIDs and long digit runs (PSIDs, phone numbers) folded so one cause is
# one group, masked for display and cut to the most frequent per type.

DEFAULT_STATS_WINDOW_S = 86400
MAX_STATS_WINDOW_S = 30 * 86400
STATS_ROW_LIMIT = 1000
"""Rows any one statistics query may return (types × states, or error groups)."""
TOP_REASONS = 5
FINISHED_STATES = ("completed", "compensated", "aborted")
FOLD_UUIDS = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
FOLD_DIGITS = r"[0-9]{5,}"

STATS_COUNTS = """SELECT saga_type, state, count(*) AS n FROM {sagas}
WHERE started_at >= now() - make_interval(secs => $1)
GROUP BY saga_type, state ORDER BY saga_type, state LIMIT $2"""
STATS_DURATIONS = """SELECT saga_type, state, count(*) AS n,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - started_at)) AS p50_s,
  percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - started_at)) AS p95_s
FROM {sagas}
WHERE started_at >= now() - make_interval(secs => $1) AND state = ANY($3::text[])
GROUP BY saga_type, state ORDER BY saga_type, state LIMIT $2"""
STATS_FAILURES = """SELECT saga_type, reason, count(*) AS n FROM (
  SELECT saga_type, regexp_replace(regexp_replace(error, $3, '<uuid>', 'gi'), $4, '<n>', 'g') AS reason
  FROM {sagas} WHERE started_at >= now() - make_interval(secs => $1) AND error <> ''
) AS failed GROUP BY saga_type, reason ORDER BY n DESC, saga_type, reason LIMIT $2"""


@dataclass(frozen=True)
class StatsWindow:
    window_s: int = DEFAULT_STATS_WINDOW_S

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> StatsWindow:
        window = parse_duration("window", query.get("window", ""))
        if window is None:
            return cls()
        if not 1 <= window <= MAX_STATS_WINDOW_S:
            raise BadFilter(f"window must be between 1s and {duration_text(MAX_STATS_WINDOW_S)}")
        return cls(window)

    def queries(self, sagas_table: str) -> list[tuple[str, list]]:
        """(SQL, parameters) of the counts, the durations and the failure reasons:
        every one bounded by the window and by STATS_ROW_LIMIT."""
        bounds = [float(self.window_s), STATS_ROW_LIMIT]
        return [
            (STATS_COUNTS.format(sagas=sagas_table), bounds),
            (STATS_DURATIONS.format(sagas=sagas_table), [*bounds, list(FINISHED_STATES)]),
            (STATS_FAILURES.format(sagas=sagas_table), [*bounds, FOLD_UUIDS, FOLD_DIGITS]),
        ]


@dataclass(frozen=True)
class TypeStats:
    """One saga type's statistics over the window."""

    saga_type: str
    counts: dict[str, int]
    """Sagas started in the window, per state (every state present)."""
    durations: list[dict]
    """Per finished state: `state`, `n`, `p50_s`, `p95_s` (seconds)."""
    reasons: list[tuple[str, int]]
    """The most frequent errors (masked), with how many sagas carry each."""

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def type_stats(counts, durations, failures, top: int = TOP_REASONS) -> list[TypeStats]:
    """The three queries' rows folded per saga type (sorted by name). Reasons are
    masked (mask_summary) before they are merged again, so two errors that differ
    only in what masking hides count as one."""
    types: dict[str, dict] = {}

    def of(saga_type: str) -> dict:
        return types.setdefault(saga_type, {"counts": dict.fromkeys(STATES, 0), "durations": [], "reasons": {}})

    for r in counts:
        of(r["saga_type"])["counts"][r["state"]] = r["n"]
    for r in durations:
        of(r["saga_type"])["durations"].append({"state": r["state"], "n": r["n"], "p50_s": r["p50_s"], "p95_s": r["p95_s"]})
    for r in failures:
        reasons = of(r["saga_type"])["reasons"]
        masked = mask_summary(r["reason"])
        reasons[masked] = reasons.get(masked, 0) + r["n"]
    return [
        TypeStats(name, t["counts"], t["durations"], sorted(t["reasons"].items(), key=lambda kv: (-kv[1], kv[0]))[:top])
        for name, t in sorted(types.items())
    ]


def seconds_text(seconds: float | None) -> str:
    """A duration for people: 850 ms, 12.3 s, 4.5 min, 2.1 h."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# --- PII masking of payload summaries ---------------------------------------

MAX_SUMMARY = 300


def mask_summary(text: str, limit: int = MAX_SUMMARY) -> str:
    """A payload summary safe to show an operator (base.pii.mask_text: emails keep
    their first letter and domain, phone numbers their last two digits; secrets,
    tokens and quoted free text are replaced), masked whole before it is cut."""
    return mask_text(text, limit)


# --- sessions and CSRF -------------------------------------------------------
#
# The session cookie carries only a random session id; the server keeps the
# access token (sealed) in its session table. Everything else is derived from
# that id with HMAC under distinct labels, so the table, a page's HTML and a
# form hold nothing that yields another: the row's key is not the cookie, the
# CSRF token does not reveal the session id, and the sealed token opens only
# with the cookie. `__Host-` names make the browser insist on Secure, Path=/ and
# no Domain, so a sibling subdomain can neither plant nor overwrite them.

SESSION_COOKIE = "__Host-poseidon_session"
CSRF_COOKIE = "__Host-poseidon_csrf"
"""Only the login form's double-submit token: there is no session to bind to yet."""
CSRF_FIELD = "csrf_token"
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")


class SessionRefused(ValueError):
    """A cookie value that is not a session id, or a sealed token that does not open with it."""


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def check_session_id(session_id: str) -> str:
    if not _SESSION_ID.match(session_id or ""):
        raise SessionRefused("not a session id")
    return session_id


def _derived(session_id: str, label: bytes) -> bytes:
    return hmac.new(session_id.encode(), b"poseidon-dashboard:" + label, hashlib.sha256).digest()


def session_key(session_id: str) -> bytes:
    """The session table's key for a session id (the id itself is never stored)."""
    return _derived(check_session_id(session_id), b"row")


def csrf_token_for(session_id: str) -> str:
    """The CSRF token of one session: a form built for session A fails with B's cookie."""
    return base64.urlsafe_b64encode(_derived(check_session_id(session_id), b"csrf")).rstrip(b"=").decode()


def seal_token(session_id: str, token: str) -> bytes:
    """The token encrypted (AES-GCM) under a key derived from the session id, bound to its row."""
    nonce = os.urandom(12)
    sealer = AESGCM(_derived(check_session_id(session_id), b"seal"))
    return nonce + sealer.encrypt(nonce, token.encode(), session_key(session_id))


def open_token(session_id: str, sealed: bytes) -> str:
    sealer = AESGCM(_derived(check_session_id(session_id), b"seal"))
    try:
        return sealer.decrypt(sealed[:12], sealed[12:], session_key(session_id)).decode()
    except InvalidTag:
        raise SessionRefused("the sealed token does not open with this session id") from None


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(expected: str | None, submitted: str | None) -> bool:
    """The form's token must equal the expected one (the session's, or the login
    form's cookie): a page on another origin can make the browser send cookies
    but cannot read the token to fill the form."""
    if not expected or not submitted or len(expected) < 32:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode())


# --- where it may listen -----------------------------------------------------


class InsecureListen(ValueError):
    """The dashboard would serve plain HTTP beyond this machine."""


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


def check_served_securely(host: str, dev_mode: bool) -> None:
    """Its cookies are Secure and `__Host-`: a browser keeps them from https:// or
    from a loopback address (a secure context) only. On any other host over plain
    HTTP every login would silently fail, and the traffic would be readable, so
    refuse unless development mode says a TLS-terminating proxy (or a tunnel to
    localhost) is in front."""
    if not is_loopback(host) and not dev_mode:
        raise InsecureListen(
            f"the dashboard serves plain HTTP and its cookies are Secure: listen on a loopback address, not {host!r} "
            "(POSEIDON_OPS_HOST), or set POSEIDON_DEV_MODE=1 when TLS is terminated in front of it"
        )


# --- operator role -----------------------------------------------------------


def is_operator(scopes: frozenset[str], platform_role: str | None, platform_scope: str = "platform") -> bool:
    """An operator holds a platform-scope token, or is admin/owner of the
    operator team tenant `operators` (membership read live from the Tenant hub)."""
    return platform_scope in scopes or platform_role in OPERATOR_ROLES


def reset_choices(step_names: Sequence[str], state: str, current_step: str) -> tuple[str, ...]:
    """The steps a reset may be asked for, in order: the definition's steps up to the
    current one, while the saga runs its steps (the Saga hub refuses a step that
    was skipped, naming the ones it accepts)."""
    if state not in RESETTABLE_STATES or current_step not in step_names:
        return ()
    return tuple(step_names[: list(step_names).index(current_step) + 1])


def check_step(step: str) -> str:
    step = step.strip()
    if not _IDENT.match(step):
        raise BadFilter("choose the step to reset to")
    return step


def check_reason(reason: str) -> str:
    reason = " ".join(reason.split())
    if len(reason) < 3:
        raise BadFilter("a reason of at least 3 characters is required")
    if len(reason) > 500:
        raise BadFilter("the reason may have at most 500 characters")
    return reason
