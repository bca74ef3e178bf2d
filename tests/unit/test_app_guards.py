"""Subscription guards as the Message Hub's router will use them: validation with
reasons that name the field, and the pure evaluation — channels, pages, weekly
business hours across midnight, in time zones, through daylight-saving changes —
plus the whole routing check for one (tenant, app, message). No broker, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given as for_all
from hypothesis import settings
from hypothesis import strategies as st

from hubs.app.guards import (
    APP_UNAVAILABLE,
    CHANNEL_NOT_ALLOWED,
    CHANNEL_NOT_SUPPORTED_BY_APP,
    CHANNELS,
    DAYS,
    GUARDS_PASSED,
    MAX_PAGES,
    MAX_WINDOWS,
    NOT_SUBSCRIBED,
    OUTSIDE_BUSINESS_HOURS,
    PAGE_NOT_ALLOWED,
    PRIVATE,
    PUBLIC,
    UNKNOWN_CHANNEL,
    AppFacts,
    GuardDecision,
    GuardError,
    Guards,
    SubscriptionFacts,
    evaluate,
    evaluate_subscription,
)

PARIS, NEW_YORK = "Europe/Paris", "America/New_York"
APP_ID = "0b7f0e0c-3f57-4d8f-9a44-3c1f0a6b2d11"


def hours(timezone: str, *windows: str) -> dict:
    """hours("Europe/Paris", "mon 09:00-17:00", "fri 22:00-02:00")"""
    parsed = []
    for window in windows:
        day, span = window.split()
        opens, closes = span.split("-")
        parsed.append({"day": day, "opens": opens, "closes": closes})
    return {"timezone": timezone, "windows": parsed}


def guarded_by_hours(timezone: str, *windows: str) -> Guards:
    return Guards.parse(business_hours=hours(timezone, *windows))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(timezone: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(timezone), fold=fold)


def allowed(guards: Guards, at: datetime, channel: str = "messenger", page_id: str = "page-1") -> bool:
    return evaluate(guards, channel, page_id, at).allowed


# -- parsing and validation --------------------------------------------------


def test_guards_without_any_restriction_allow_every_channel_page_and_time():
    guards = Guards.parse([], [], None)

    assert guards == Guards()
    decision = evaluate(guards, "whatsapp", "", utc(2026, 1, 4, 3, 0))
    assert decision == GuardDecision(True, GUARDS_PASSED, "channel whatsapp (any channel), any page, at any time")


def test_guards_come_back_in_canonical_form_sorted_and_parse_to_the_same_guards():
    guards = Guards.parse(
        ["webchat", "messenger"], ["p2", "p1"], hours(PARIS, "tue 09:00-12:00", "mon 14:00-18:00", "mon 09:00-12:00")
    )

    channels, page_ids, business_hours = guards.to_record()

    assert channels == ["messenger", "webchat"]
    assert page_ids == ["p1", "p2"]
    assert business_hours == hours(PARIS, "mon 09:00-12:00", "mon 14:00-18:00", "tue 09:00-12:00")
    assert Guards.parse(channels, page_ids, business_hours) == guards


@pytest.mark.parametrize(
    ("channels", "says"),
    [
        (["messenger", "carrier-pigeon"], "unknown channel 'carrier-pigeon'"),
        (["Messenger"], "unknown channel 'Messenger'"),
        (["sms", "sms"], "lists 'sms' twice"),
        ("messenger", "must be a list"),
    ],
)
def test_channels_outside_the_platform_vocabulary_or_repeated_are_refused_with_the_reason(channels, says):
    with pytest.raises(GuardError) as refused:
        Guards.parse(channels=channels)

    assert "channels" in str(refused.value) and says in str(refused.value)


@pytest.mark.parametrize(
    ("page_ids", "says"),
    [
        (["123", ""], "'' is not a page id"),
        (["has space"], "'has space' is not a page id"),
        (["x" * 129], "is not a page id"),
        (["42", "42"], "lists '42' twice"),
        ([str(i) for i in range(MAX_PAGES + 1)], f"at most {MAX_PAGES}"),
    ],
)
def test_page_ids_that_are_malformed_repeated_or_too_many_are_refused_with_the_reason(page_ids, says):
    with pytest.raises(GuardError) as refused:
        Guards.parse(page_ids=page_ids)

    assert "page_ids" in str(refused.value) and says in str(refused.value)


@pytest.mark.parametrize(
    "timezone", ["Mars/Olympus_Mons", "europe/paris", "", "../../etc/passwd", "/etc/localtime", "localtime", "Factory", None]
)
def test_a_time_zone_that_is_not_an_iana_zone_is_refused_naming_the_field(timezone):
    with pytest.raises(GuardError) as refused:
        Guards.parse(business_hours={"timezone": timezone, "windows": [{"day": "mon", "opens": "09:00", "closes": "17:00"}]})

    assert "business_hours.timezone" in str(refused.value)


@pytest.mark.parametrize("timezone", ["UTC", "Europe/Paris", "America/Argentina/Buenos_Aires", "Asia/Kathmandu"])
def test_iana_time_zones_are_accepted(timezone):
    assert Guards.parse(business_hours=hours(timezone, "mon 09:00-17:00")).business_hours.timezone == timezone


@pytest.mark.parametrize(
    ("window", "field", "says"),
    [
        ({"day": "monday", "opens": "09:00", "closes": "17:00"}, "windows[0].day", "must be one of mon, tue"),
        ({"day": "mon", "opens": "9:00", "closes": "17:00"}, "windows[0].opens", "HH:MM"),
        ({"day": "mon", "opens": "09:00", "closes": "25:00"}, "windows[0].closes", "HH:MM"),
        ({"day": "mon", "opens": "09:00", "closes": "24:01"}, "windows[0].closes", "between 00:00 and 24:00"),
        ({"day": "mon", "opens": "09:60", "closes": "17:00"}, "windows[0].opens", "HH:MM"),
        ({"day": "mon", "opens": "noon", "closes": "17:00"}, "windows[0].opens", "HH:MM"),
        ({"day": "mon", "opens": "24:00", "closes": "02:00"}, "windows[0].opens", "cannot be 24:00"),
        ({"day": "mon", "opens": "09:00", "closes": "09:00"}, "windows[0]", "same time"),
        ({"day": "mon", "opens": "09:00"}, "windows[0].closes", "HH:MM"),
        ("mon 09:00-17:00", "windows[0]", "must be a record"),
    ],
)
def test_bad_business_hours_are_refused_naming_the_window_and_what_is_wrong(window, field, says):
    with pytest.raises(GuardError) as refused:
        Guards.parse(business_hours={"timezone": PARIS, "windows": [window]})

    assert f"business_hours.{field}" in str(refused.value) and says in str(refused.value)


def test_business_hours_without_windows_are_refused_because_they_would_never_allow_a_message():
    with pytest.raises(GuardError, match="never allow a message"):
        Guards.parse(business_hours={"timezone": PARIS, "windows": []})


def test_business_hours_with_more_windows_than_the_limit_or_a_repeated_window_are_refused():
    too_many = [f"{DAYS[i % 7]} {i % 24:02d}:00-{i % 24:02d}:30" for i in range(MAX_WINDOWS + 1)]
    with pytest.raises(GuardError, match=f"at most {MAX_WINDOWS}"):
        Guards.parse(business_hours=hours(PARIS, *too_many))
    with pytest.raises(GuardError, match="twice"):
        Guards.parse(business_hours=hours(PARIS, "mon 09:00-17:00", "mon 09:00-17:00"))


# -- channels and pages ------------------------------------------------------


def test_a_channel_the_guards_do_not_list_is_refused_naming_the_allowed_ones():
    guards = Guards.parse(channels=["messenger", "instagram"])

    decision = evaluate(guards, "whatsapp", "page-1", utc(2026, 1, 5, 12, 0))

    assert decision == GuardDecision(
        False, CHANNEL_NOT_ALLOWED, "channel whatsapp is not allowed (allowed: instagram, messenger)"
    )
    assert allowed(guards, utc(2026, 1, 5, 12, 0), channel="instagram")


def test_a_channel_the_platform_does_not_know_is_refused_as_unknown_even_without_channel_guards():
    decision = evaluate(Guards(), "carrier-pigeon", "page-1", utc(2026, 1, 5, 12, 0))

    assert (decision.allowed, decision.rule) == (False, UNKNOWN_CHANNEL)


def test_a_page_the_guards_do_not_list_is_refused_and_a_listed_page_passes():
    guards = Guards.parse(page_ids=["1111", "2222"])

    refused = evaluate(guards, "messenger", "3333", utc(2026, 1, 5, 12, 0))

    assert (refused.allowed, refused.rule) == (False, PAGE_NOT_ALLOWED)
    assert "'3333'" in refused.reason and "2 pages" in refused.reason
    assert evaluate(guards, "messenger", "2222", utc(2026, 1, 5, 12, 0)) == GuardDecision(
        True, GUARDS_PASSED, "channel messenger (any channel), page 2222 allowed, at any time"
    )


def test_a_message_without_a_page_is_refused_when_the_guards_list_pages():
    assert evaluate(Guards.parse(page_ids=["1111"]), "webchat", "", utc(2026, 1, 5, 12, 0)).rule == PAGE_NOT_ALLOWED


def test_the_first_refusing_guard_names_the_rule_channel_then_page_then_hours():
    guards = Guards.parse(["messenger"], ["1111"], hours("UTC", "mon 09:00-17:00"))
    sunday_night = utc(2026, 1, 4, 23, 0)

    assert evaluate(guards, "sms", "9999", sunday_night).rule == CHANNEL_NOT_ALLOWED
    assert evaluate(guards, "messenger", "9999", sunday_night).rule == PAGE_NOT_ALLOWED
    assert evaluate(guards, "messenger", "1111", sunday_night).rule == OUTSIDE_BUSINESS_HOURS
    assert evaluate(guards, "messenger", "1111", utc(2026, 1, 5, 9, 0)).rule == GUARDS_PASSED


# -- business hours ----------------------------------------------------------


def test_a_window_opens_at_its_opening_minute_and_is_closed_at_its_closing_minute():
    guards = guarded_by_hours("UTC", "mon 09:00-17:00")  # 2026-01-05 is a Monday

    assert not allowed(guards, utc(2026, 1, 5, 8, 59, 59))
    assert allowed(guards, utc(2026, 1, 5, 9, 0))
    assert allowed(guards, utc(2026, 1, 5, 16, 59, 59))
    assert not allowed(guards, utc(2026, 1, 5, 17, 0))
    assert not allowed(guards, utc(2026, 1, 6, 10, 0))  # Tuesday


def test_the_decision_says_which_window_let_the_message_through_and_the_local_time():
    decision = evaluate(guarded_by_hours(PARIS, "mon 09:00-17:00"), "messenger", "p", utc(2026, 1, 5, 8, 30))

    assert decision == GuardDecision(
        True, GUARDS_PASSED, "channel messenger (any channel), any page, mon 09:30 Europe/Paris within mon 09:00-17:00"
    )


def test_outside_business_hours_the_decision_gives_the_local_day_and_time():
    decision = evaluate(guarded_by_hours(PARIS, "mon 09:00-17:00"), "messenger", "p", utc(2026, 1, 5, 17, 15))

    assert decision == GuardDecision(False, OUTSIDE_BUSINESS_HOURS, "mon 18:15 Europe/Paris is outside the business hours")


def test_a_window_closing_at_24_00_covers_the_last_minute_of_its_day_and_not_the_next():
    guards = guarded_by_hours("UTC", "mon 18:00-24:00")

    assert allowed(guards, utc(2026, 1, 5, 23, 59, 59))
    assert not allowed(guards, utc(2026, 1, 6, 0, 0))


def test_a_window_across_midnight_runs_from_its_day_into_the_next_morning():
    guards = guarded_by_hours("UTC", "fri 22:00-02:00")  # 2026-01-09 is a Friday

    assert not allowed(guards, utc(2026, 1, 9, 21, 59))
    assert allowed(guards, utc(2026, 1, 9, 22, 0))
    assert allowed(guards, utc(2026, 1, 9, 23, 59))
    assert allowed(guards, utc(2026, 1, 10, 0, 0))  # Saturday
    assert allowed(guards, utc(2026, 1, 10, 1, 59))
    assert not allowed(guards, utc(2026, 1, 10, 2, 0))
    assert not allowed(guards, utc(2026, 1, 8, 23, 0))  # Thursday night is not Friday night
    assert not allowed(guards, utc(2026, 1, 10, 23, 0))  # nor is Saturday night
    assert not allowed(guards, utc(2026, 1, 9, 1, 0))  # Friday early morning belongs to Thursday's window


def test_a_sunday_night_window_runs_into_monday_morning_across_the_week_boundary():
    guards = guarded_by_hours("UTC", "sun 20:00-06:00")  # 2026-01-04 is a Sunday

    assert allowed(guards, utc(2026, 1, 4, 21, 0))
    assert allowed(guards, utc(2026, 1, 5, 5, 59))
    assert not allowed(guards, utc(2026, 1, 5, 6, 0))
    assert not allowed(guards, utc(2026, 1, 4, 5, 0))  # Sunday morning is Saturday's night, not covered


def test_a_window_closing_at_midnight_ends_with_its_day():
    guards = guarded_by_hours("UTC", "fri 22:00-00:00")

    assert allowed(guards, utc(2026, 1, 9, 23, 59))
    assert not allowed(guards, utc(2026, 1, 10, 0, 0))


def test_the_same_instant_is_inside_business_hours_in_one_time_zone_and_outside_in_another():
    instant = utc(2026, 1, 5, 1, 30)  # Monday 10:30 in Tokyo, Sunday 17:30 in Los Angeles

    assert allowed(guarded_by_hours("Asia/Tokyo", "mon 09:00-17:00"), instant)
    assert not allowed(guarded_by_hours("America/Los_Angeles", "mon 09:00-17:00"), instant)
    assert allowed(guarded_by_hours("America/Los_Angeles", "sun 09:00-18:00"), instant)


def test_a_time_zone_with_a_non_hour_offset_is_evaluated_at_its_own_minutes():
    guards = guarded_by_hours("Asia/Kathmandu", "mon 09:00-10:00")  # UTC+05:45

    assert allowed(guards, utc(2026, 1, 5, 3, 15))  # 09:00 local
    assert not allowed(guards, utc(2026, 1, 5, 3, 14))  # 08:59 local


def test_windows_follow_wall_clock_time_across_the_spring_daylight_saving_change():
    guards = guarded_by_hours(PARIS, "sun 09:00-17:00")
    # Paris moves from UTC+1 to UTC+2 on Sunday 2026-03-29 at 02:00.
    the_week_before = utc(2026, 3, 22, 7, 30)  # 08:30 CET
    the_change_day = utc(2026, 3, 29, 7, 30)  # 09:30 CEST

    assert not allowed(guards, the_week_before)
    assert allowed(guards, the_change_day)
    assert allowed(guards, local(PARIS, 2026, 3, 29, 9, 0))
    assert not allowed(guards, utc(2026, 3, 29, 15, 0))  # 17:00 CEST


def test_windows_follow_wall_clock_time_across_the_autumn_daylight_saving_change():
    guards = guarded_by_hours(PARIS, "sun 09:00-17:00")
    # Paris moves from UTC+2 to UTC+1 on Sunday 2026-10-25 at 03:00.

    assert allowed(guards, utc(2026, 10, 25, 8, 0))  # 09:00 CET
    assert not allowed(guards, utc(2026, 10, 25, 7, 59))  # 08:59 CET
    assert allowed(guards, utc(2026, 10, 18, 7, 0))  # a week earlier, 09:00 CEST


def test_an_hour_that_occurs_twice_when_clocks_go_back_is_inside_its_window_both_times():
    guards = guarded_by_hours(NEW_YORK, "sun 01:00-02:00")
    # New York repeats 01:00-02:00 on Sunday 2026-11-01: first EDT (UTC-4), then EST (UTC-5).
    first, second = utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)

    # (astimezone: PEP 495 makes an ambiguous local time unequal to every instant)
    assert local(NEW_YORK, 2026, 11, 1, 1, 30).astimezone(UTC) == first
    assert local(NEW_YORK, 2026, 11, 1, 1, 30, fold=1).astimezone(UTC) == second
    assert allowed(guards, first) and allowed(guards, second)
    assert not allowed(guards, utc(2026, 11, 1, 7, 0))  # 02:00 EST


def test_a_window_inside_the_hour_skipped_when_clocks_go_forward_does_not_open_that_day():
    guards = guarded_by_hours(NEW_YORK, "sun 02:00-03:00")
    # New York jumps from 02:00 EST to 03:00 EDT on Sunday 2026-03-08: 02:xx never happens.
    instants = [utc(2026, 3, 8, 6, 0) + timedelta(minutes=m) for m in range(0, 121, 5)]

    assert not any(allowed(guards, at) for at in instants)
    assert allowed(guards, utc(2026, 3, 15, 6, 30))  # the next Sunday, 02:30 EDT


def test_evaluating_at_a_naive_datetime_is_a_programming_error():
    with pytest.raises(ValueError, match="timezone-aware"):
        evaluate(Guards(), "messenger", "p", datetime(2026, 1, 5, 12, 0))


WEEK = 7 * 24 * 60


def reference_open(windows: list[tuple[int, int, int]], timezone: str, at: datetime) -> bool:
    """The same rule stated differently: a window is a span of minutes of the week
    starting at day·1440 + opens, wrapping around the end of the week."""
    t = at.astimezone(ZoneInfo(timezone))
    minute_of_week = t.weekday() * 1440 + t.hour * 60 + t.minute
    for day, opens, closes in windows:
        length = closes - opens if closes > opens else closes + 1440 - opens
        if (minute_of_week - (day * 1440 + opens)) % WEEK < length:
            return True
    return False


@st.composite
def windows(draw) -> list[tuple[int, int, int]]:
    found = []
    for _ in range(draw(st.integers(1, 6))):
        day, opens = draw(st.integers(0, 6)), draw(st.integers(0, 1439))
        closes = draw(st.integers(0, 1440).filter(lambda c, o=opens: c != o))
        if (day, opens, closes) not in found:
            found.append((day, opens, closes))
    return found


def clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@settings(max_examples=300, deadline=None)
@for_all(
    windows(),
    st.sampled_from(["UTC", PARIS, NEW_YORK, "Asia/Kathmandu", "Australia/Lord_Howe", "Pacific/Chatham"]),
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)),
)
def test_business_hours_agree_with_a_minute_of_the_week_model_for_any_windows_zone_and_instant(spans, timezone, at):
    guards = Guards.parse(
        business_hours={
            "timezone": timezone,
            "windows": [{"day": DAYS[d], "opens": clock(o), "closes": clock(c)} for d, o, c in spans],
        }
    )

    decision = evaluate(guards, "messenger", "p", at)

    assert decision.allowed == reference_open(spans, timezone, at)
    assert decision.rule == (GUARDS_PASSED if decision.allowed else OUTSIDE_BUSINESS_HOURS)


# -- the whole routing check -------------------------------------------------

TENANT, OTHER = "tenant-a", "tenant-b"
NOON_MONDAY = utc(2026, 1, 5, 12, 0)


def app_facts(owner: str = "platform", visibility: str = PUBLIC, channels=("messenger", "webchat")) -> AppFacts:
    return AppFacts(owner, visibility, frozenset(channels))


def subscribed(guards: Guards = Guards(), active: bool = True) -> SubscriptionFacts:
    return SubscriptionFacts(active, guards)


def check(app: AppFacts | None, subscription: SubscriptionFacts | None, channel: str = "messenger", at=NOON_MONDAY):
    return evaluate_subscription(TENANT, APP_ID, app, subscription, channel, "page-1", at)


def test_a_tenant_that_never_subscribed_or_unsubscribed_is_refused_as_not_subscribed():
    never = check(app_facts(), None)
    gone = check(app_facts(), subscribed(active=False))

    assert (never.allowed, never.rule) == (False, NOT_SUBSCRIBED)
    assert (gone.allowed, gone.rule) == (False, NOT_SUBSCRIBED)
    assert "unsubscribed" in gone.reason


def test_a_missing_app_and_another_tenants_private_app_are_refused_with_the_same_words():
    missing = check(None, subscribed())
    private_elsewhere = check(app_facts(owner=OTHER, visibility=PRIVATE), subscribed())

    assert missing == private_elsewhere
    assert (missing.allowed, missing.rule) == (False, APP_UNAVAILABLE)
    assert OTHER not in missing.reason


def test_the_tenants_own_private_app_and_any_public_app_are_available():
    assert check(app_facts(owner=TENANT, visibility=PRIVATE), subscribed()).allowed
    assert check(app_facts(owner=OTHER, visibility=PUBLIC), subscribed()).allowed


def test_a_channel_the_app_does_not_support_is_refused_even_when_the_guards_allow_every_channel():
    decision = check(app_facts(channels=["webchat"]), subscribed(), channel="messenger")

    assert (decision.allowed, decision.rule) == (False, CHANNEL_NOT_SUPPORTED_BY_APP)
    assert "supports: webchat" in decision.reason


def test_once_subscribed_and_available_the_subscriptions_guards_decide():
    guards = Guards.parse(business_hours=hours("UTC", "mon 09:00-17:00"))

    assert check(app_facts(), subscribed(guards), at=NOON_MONDAY).rule == GUARDS_PASSED
    assert check(app_facts(), subscribed(guards), at=NOON_MONDAY + timedelta(hours=6)).rule == OUTSIDE_BUSINESS_HOURS


def test_every_platform_channel_passes_unrestricted_guards_of_an_app_supporting_all_channels():
    app = app_facts(channels=CHANNELS)

    assert all(check(app, subscribed(), channel=c).allowed for c in CHANNELS)
