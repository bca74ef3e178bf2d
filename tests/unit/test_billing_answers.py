"""What the billing read side answers from a stored entitlement and the clock:
whether it is in force, feature checks, and quota arithmetic at the edges of the
period. Pure: no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hubs.billing import answers
from hubs.billing.answers import Terms, check, quota, standing
from schemas.protos import billing_pb2

JAN = datetime(2026, 1, 1, tzinfo=UTC)
FEB = datetime(2026, 2, 1, tzinfo=UTC)
MID_JAN = datetime(2026, 1, 15, tzinfo=UTC)
MS = timedelta(milliseconds=1)


def stored(**changes) -> Terms:
    row = dict(
        plan="pro",
        message_quota=1000,
        period_start=JAN,
        period_end=FEB,
        features=["botpress", "webhooks"],
        status="active",
        reported_used=0,
    )
    row.update(changes)
    return Terms.from_row(row)


def test_every_reason_the_read_side_gives_is_a_value_of_the_proto_enum():
    names = {v for k, v in vars(answers).items() if k.isupper() and isinstance(v, str)}

    assert names == {n for n in billing_pb2.Reason.keys() if n != "REASON_UNSPECIFIED"}


@pytest.mark.parametrize(
    ("now", "reason"),
    [
        (JAN - MS, answers.PERIOD_NOT_STARTED),
        (JAN, answers.ENTITLED),
        (MID_JAN, answers.ENTITLED),
        (FEB - MS, answers.ENTITLED),
        (FEB, answers.PERIOD_ENDED),
        (FEB + timedelta(days=40), answers.PERIOD_ENDED),
    ],
)
def test_an_active_entitlement_is_in_force_from_period_start_inclusive_to_period_end_exclusive(now, reason):
    assert standing(stored(), now) == reason


def test_a_cancelled_entitlement_is_not_in_force_even_inside_its_period():
    assert standing(stored(status="cancelled"), MID_JAN) == answers.CANCELLED


def test_a_feature_of_the_plan_is_entitled_while_the_entitlement_is_in_force():
    assert check(stored(), "webhooks", MID_JAN) == (True, answers.ENTITLED)


def test_a_feature_outside_the_plan_is_not_entitled_and_says_so():
    assert check(stored(), "sso", MID_JAN) == (False, answers.FEATURE_NOT_IN_PLAN)


def test_a_tenant_the_provider_never_entitled_is_entitled_to_nothing():
    assert check(None, "webhooks", MID_JAN) == (False, answers.NO_ENTITLEMENT)


@pytest.mark.parametrize(
    ("terms", "now", "reason"),
    [
        (stored(status="cancelled"), MID_JAN, answers.CANCELLED),
        (stored(), JAN - MS, answers.PERIOD_NOT_STARTED),
        (stored(), FEB, answers.PERIOD_ENDED),
    ],
)
def test_a_feature_of_the_plan_is_not_entitled_outside_the_entitlements_force(terms, now, reason):
    assert check(terms, "webhooks", now) == (False, reason)


def test_a_feature_stays_entitled_when_the_message_quota_is_spent():
    assert check(stored(reported_used=5000), "webhooks", MID_JAN) == (True, answers.ENTITLED)


@pytest.mark.parametrize(
    ("message_quota", "used", "remaining", "reason"),
    [
        (1000, 0, 1000, answers.ENTITLED),
        (1000, 999, 1, answers.ENTITLED),
        (1000, 1000, 0, answers.QUOTA_EXHAUSTED),
        (1000, 1500, 0, answers.QUOTA_EXHAUSTED),
        (0, 0, 0, answers.QUOTA_EXHAUSTED),
    ],
)
def test_remaining_quota_is_quota_minus_used_never_below_zero(message_quota, used, remaining, reason):
    answer = quota(stored(message_quota=message_quota, reported_used=used), MID_JAN)

    assert (answer.quota, answer.used, answer.remaining, answer.reason) == (message_quota, used, remaining, reason)


@pytest.mark.parametrize(
    ("terms", "now", "reason"),
    [
        (stored(status="cancelled", reported_used=10), MID_JAN, answers.CANCELLED),
        (stored(reported_used=10), JAN - MS, answers.PERIOD_NOT_STARTED),
        (stored(reported_used=10), FEB, answers.PERIOD_ENDED),
    ],
)
def test_nothing_remains_outside_the_entitlements_force_but_quota_and_usage_are_still_told(terms, now, reason):
    answer = quota(terms, now)

    assert (answer.quota, answer.used, answer.remaining, answer.reason) == (1000, 10, 0, reason)
