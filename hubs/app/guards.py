"""Subscription guards — which channels, which pages and which weekly hours an app
may receive a tenant's messages in: their validation (the aggregate's rules) and
the pure evaluation the Message Hub's router calls to decide and explain.
Pure: no I/O but zoneinfo's reads of the time-zone database."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

CHANNELS = frozenset({"messenger", "instagram", "whatsapp", "telegram", "webchat", "sms", "email"})
"""The chat channels the platform speaks; apps declare which of them they support."""
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Week days as windows name them, in `datetime.weekday()` order."""
MAX_PAGES = 500
MAX_WINDOWS = 50
MINUTES_PER_DAY = 24 * 60

# In the zone database but not zones: the host's own setting, and a placeholder.
_NOT_ZONES = frozenset({"localtime", "Factory"})
_PAGE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_CLOCK = re.compile(r"^([01][0-9]|2[0-4]):([0-5][0-9])$")

# Rules a GuardDecision names: the guard (or precondition) that decided.
GUARDS_PASSED = "GuardsPassed"
UNKNOWN_CHANNEL = "UnknownChannel"
CHANNEL_NOT_ALLOWED = "ChannelNotAllowed"
PAGE_NOT_ALLOWED = "PageNotAllowed"
OUTSIDE_BUSINESS_HOURS = "OutsideBusinessHours"
NOT_SUBSCRIBED = "NotSubscribed"
APP_UNAVAILABLE = "AppUnavailable"
CHANNEL_NOT_SUPPORTED_BY_APP = "ChannelNotSupportedByApp"

PUBLIC = "public"
PRIVATE = "private"


class GuardError(ValueError):
    """Guards that cannot be accepted; the message names the field and says why."""


@dataclass(frozen=True)
class Window:
    """One weekly opening: from `opens` on `day` to `closes`, in minutes of the
    local day. `closes <= opens` means the window runs past midnight into the next
    day (fri 22:00–02:00 ends on Saturday at 02:00)."""

    day: int
    opens: int
    closes: int

    @property
    def crosses_midnight(self) -> bool:
        return self.closes <= self.opens

    def covers(self, weekday: int, minute: int) -> bool:
        if not self.crosses_midnight:
            return weekday == self.day and self.opens <= minute < self.closes
        if weekday == self.day:
            return minute >= self.opens
        return weekday == (self.day + 1) % 7 and minute < self.closes

    def to_record(self) -> dict[str, str]:
        return {"day": DAYS[self.day], "opens": _clock(self.opens), "closes": _clock(self.closes)}

    def __str__(self) -> str:
        return f"{DAYS[self.day]} {_clock(self.opens)}-{_clock(self.closes)}"


@dataclass(frozen=True)
class BusinessHours:
    """A weekly schedule in one IANA time zone. Windows are wall-clock local time,
    so they follow daylight saving: 09:00 stays 09:00 in summer and winter."""

    timezone: str
    windows: tuple[Window, ...]

    def window_at(self, at: datetime) -> Window | None:
        local = at.astimezone(_zone(self.timezone))
        weekday, minute = local.weekday(), local.hour * 60 + local.minute
        return next((w for w in self.windows if w.covers(weekday, minute)), None)

    def to_record(self) -> dict[str, Any]:
        return {"timezone": self.timezone, "windows": [w.to_record() for w in self.windows]}


@dataclass(frozen=True)
class Guards:
    """What a subscription lets through. An empty `channels` means every channel
    the app supports, an empty `page_ids` every page, no `business_hours` any time."""

    channels: frozenset[str] = frozenset()
    page_ids: frozenset[str] = frozenset()
    business_hours: BusinessHours | None = None

    @classmethod
    def parse(
        cls, channels: Iterable[str] = (), page_ids: Iterable[str] = (), business_hours: Mapping[str, Any] | None = None
    ) -> Guards:
        """Validated guards from their record form (command, event or read-store row)."""
        return cls(
            channels=frozenset(parse_channels(channels, "channels", allow_empty=True)),
            page_ids=frozenset(_parse_page_ids(page_ids)),
            business_hours=None if business_hours is None else _parse_business_hours(business_hours),
        )

    def to_record(self) -> tuple[list[str], list[str], dict[str, Any] | None]:
        """(channels, page_ids, business_hours) in canonical order, as events carry them."""
        return (
            sorted(self.channels),
            sorted(self.page_ids),
            None if self.business_hours is None else self.business_hours.to_record(),
        )


@dataclass(frozen=True)
class GuardDecision:
    """Whether a message may go to the app, the rule that decided, and why in words."""

    allowed: bool
    rule: str
    reason: str


def evaluate(guards: Guards, channel: str, page_id: str, at: datetime) -> GuardDecision:
    """Decide one message against one subscription's guards: channel first, then
    page, then business hours; the first guard that refuses names the rule."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("at must be a timezone-aware datetime")
    if channel not in CHANNELS:
        return GuardDecision(False, UNKNOWN_CHANNEL, f"channel {channel!r} is not a channel of the platform")
    if guards.channels and channel not in guards.channels:
        allowed = ", ".join(sorted(guards.channels))
        return GuardDecision(False, CHANNEL_NOT_ALLOWED, f"channel {channel} is not allowed (allowed: {allowed})")
    if guards.page_ids and page_id not in guards.page_ids:
        return GuardDecision(
            False, PAGE_NOT_ALLOWED, f"page {page_id!r} is not one of the {len(guards.page_ids)} pages the subscription allows"
        )
    hours = guards.business_hours
    if hours is None:
        return GuardDecision(True, GUARDS_PASSED, f"{_passed(guards, channel, page_id)}, at any time")
    window = hours.window_at(at)
    local = at.astimezone(_zone(hours.timezone))
    when = f"{DAYS[local.weekday()]} {local:%H:%M} {hours.timezone}"
    if window is None:
        return GuardDecision(False, OUTSIDE_BUSINESS_HOURS, f"{when} is outside the business hours")
    return GuardDecision(True, GUARDS_PASSED, f"{_passed(guards, channel, page_id)}, {when} within {window}")


@dataclass(frozen=True)
class AppFacts:
    """What the routing check needs to know of a registered app."""

    owner_tenant_id: str
    visibility: str
    channels: frozenset[str]

    def available_to(self, tenant_id: str) -> bool:
        return self.visibility == PUBLIC or self.owner_tenant_id == tenant_id


@dataclass(frozen=True)
class SubscriptionFacts:
    """What the routing check needs to know of a tenant's subscription to an app."""

    active: bool
    guards: Guards


def evaluate_subscription(
    tenant_id: str,
    app_id: str,
    app: AppFacts | None,
    subscription: SubscriptionFacts | None,
    channel: str,
    page_id: str,
    at: datetime,
) -> GuardDecision:
    """The whole routing check for one (tenant, app, message): subscribed, app
    available to the tenant and supporting the channel, then `evaluate`. The hub
    cannot refuse a subscription to an app it cannot see (another aggregate), so
    this is where such a subscription stops. Missing and another tenant's private
    app give the same answer."""
    if subscription is None:
        return GuardDecision(False, NOT_SUBSCRIBED, f"tenant is not subscribed to app {app_id}")
    if not subscription.active:
        return GuardDecision(False, NOT_SUBSCRIBED, f"tenant unsubscribed from app {app_id}")
    if app is None or not app.available_to(tenant_id):
        return GuardDecision(False, APP_UNAVAILABLE, f"app {app_id} is unknown or not available to this tenant")
    if channel in CHANNELS and channel not in app.channels:
        supported = ", ".join(sorted(app.channels))
        return GuardDecision(
            False, CHANNEL_NOT_SUPPORTED_BY_APP, f"app {app_id} does not support channel {channel} (supports: {supported})"
        )
    return evaluate(subscription.guards, channel, page_id, at)


# -- validation ---------------------------------------------------------------


def parse_channels(channels: Iterable[str], field: str, *, allow_empty: bool) -> list[str]:
    if isinstance(channels, str | bytes) or not isinstance(channels, Iterable):
        raise GuardError(f"{field} must be a list of channel names, not {channels!r}")
    found = list(channels)
    if not found and not allow_empty:
        raise GuardError(f"{field} must name at least one channel ({', '.join(sorted(CHANNELS))})")
    for channel in found:
        if channel not in CHANNELS:
            raise GuardError(f"{field}: unknown channel {channel!r} (known: {', '.join(sorted(CHANNELS))})")
    _no_duplicates(found, field)
    return found


def _parse_page_ids(page_ids: Iterable[str]) -> list[str]:
    if isinstance(page_ids, str | bytes) or not isinstance(page_ids, Iterable):
        raise GuardError(f"page_ids must be a list of page ids, not {page_ids!r}")
    found = list(page_ids)
    if len(found) > MAX_PAGES:
        raise GuardError(f"page_ids lists {len(found)} pages; at most {MAX_PAGES}")
    for page_id in found:
        if not isinstance(page_id, str) or not _PAGE_ID.match(page_id):
            raise GuardError(f"page_ids: {page_id!r} is not a page id (1 to 128 of A-Z a-z 0-9 _ . : -)")
    _no_duplicates(found, "page_ids")
    return found


def _parse_business_hours(value: Mapping[str, Any]) -> BusinessHours:
    if not isinstance(value, Mapping):
        raise GuardError(f"business_hours must be a record with timezone and windows, not {value!r}")
    timezone = value.get("timezone")
    check_timezone(timezone)
    raw_windows = value.get("windows")
    if isinstance(raw_windows, str | bytes | Mapping) or not isinstance(raw_windows, Iterable):
        raise GuardError("business_hours.windows must be a list of windows")
    raw_windows = list(raw_windows)
    if not raw_windows:
        raise GuardError(
            "business_hours.windows is empty, which would never allow a message; omit business_hours to allow any time"
        )
    if len(raw_windows) > MAX_WINDOWS:
        raise GuardError(f"business_hours has {len(raw_windows)} windows; at most {MAX_WINDOWS}")
    windows = [_parse_window(w, i) for i, w in enumerate(raw_windows)]
    _no_duplicates([str(w) for w in windows], "business_hours.windows")
    return BusinessHours(timezone, tuple(sorted(windows, key=lambda w: (w.day, w.opens, w.closes))))


def _parse_window(raw: Any, index: int) -> Window:
    field = f"business_hours.windows[{index}]"
    if not isinstance(raw, Mapping):
        raise GuardError(f"{field} must be a record with day, opens and closes")
    day = raw.get("day")
    if day not in DAYS:
        raise GuardError(f"{field}.day must be one of {', '.join(DAYS)}, not {day!r}")
    opens = _minutes(raw.get("opens"), f"{field}.opens")
    closes = _minutes(raw.get("closes"), f"{field}.closes")
    if opens == MINUTES_PER_DAY:
        raise GuardError(f"{field}.opens cannot be 24:00")
    if opens == closes:
        raise GuardError(f"{field} opens and closes at the same time; a whole day is 00:00-24:00")
    return Window(DAYS.index(day), opens, closes)


def _minutes(value: Any, field: str) -> int:
    match = _CLOCK.match(value) if isinstance(value, str) else None
    minutes = int(match[1]) * 60 + int(match[2]) if match else -1
    if not 0 <= minutes <= MINUTES_PER_DAY:
        raise GuardError(f"{field} must be a 24-hour time HH:MM between 00:00 and 24:00, not {value!r}")
    return minutes


def check_timezone(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise GuardError("business_hours.timezone is required (an IANA zone such as Europe/Paris)")
    if name in _NOT_ZONES or name not in _known_zones():
        raise GuardError(f"business_hours.timezone: {name!r} is not an IANA time zone (such as Europe/Paris)")
    _zone(name)


def _no_duplicates(values: list[str], field: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise GuardError(f"{field} lists {value!r} twice")
        seen.add(value)


def _passed(guards: Guards, channel: str, page_id: str) -> str:
    channel_part = f"channel {channel} allowed" if guards.channels else f"channel {channel} (any channel)"
    page_part = f"page {page_id} allowed" if guards.page_ids else "any page"
    return f"{channel_part}, {page_part}"


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise GuardError(f"business_hours.timezone: {name!r} cannot be loaded: {exc}") from None
