"""What billing answers, computed from an entitlement's terms and the clock:
whether the entitlement is in force, whether a feature is included, and how much
message quota is left. Pure: the gRPC service (projections/billing/service.py)
reads the row and the time; the Message Hub's router (hubs/message/facts.py)
folds the terms from the billing events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

# Reason names are those of the proto enum poseidon.billing.v1.Reason.
ENTITLED = "ENTITLED"
NO_ENTITLEMENT = "NO_ENTITLEMENT"
CANCELLED = "CANCELLED"
PERIOD_NOT_STARTED = "PERIOD_NOT_STARTED"
PERIOD_ENDED = "PERIOD_ENDED"
FEATURE_NOT_IN_PLAN = "FEATURE_NOT_IN_PLAN"
QUOTA_EXHAUSTED = "QUOTA_EXHAUSTED"


@dataclass(frozen=True)
class Terms:
    plan: str
    message_quota: int
    period_start: datetime
    period_end: datetime
    features: Sequence[str]
    status: str
    reported_used: int

    @classmethod
    def from_row(cls, row: Mapping) -> Terms:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Quota:
    quota: int
    used: int
    remaining: int
    """What the tenant may still use now: 0 unless the entitlement is in force."""
    reason: str


def standing(terms: Terms, now: datetime) -> str:
    """ENTITLED while active and `now` is inside [period_start, period_end)."""
    if terms.status != "active":
        return CANCELLED
    if now < terms.period_start:
        return PERIOD_NOT_STARTED
    if now >= terms.period_end:
        return PERIOD_ENDED
    return ENTITLED


def used(terms: Terms) -> int:
    # Issue 4: add the platform-observed message count of the period (from
    # message.events) here, once the projection reads that topic too.
    return terms.reported_used


def quota(terms: Terms, now: datetime) -> Quota:
    spent = used(terms)
    reason = standing(terms, now)
    remaining = max(terms.message_quota - spent, 0) if reason == ENTITLED else 0
    if reason == ENTITLED and remaining == 0:
        reason = QUOTA_EXHAUSTED
    return Quota(quota=terms.message_quota, used=spent, remaining=remaining, reason=reason)


def check(terms: Terms | None, feature: str, now: datetime) -> tuple[bool, str]:
    """Is the tenant entitled to `feature` now? Quota does not enter into it: a
    feature stays usable when the message quota is spent (GetQuota says that)."""
    if terms is None:
        return False, NO_ENTITLEMENT
    reason = standing(terms, now)
    if reason != ENTITLED:
        return False, reason
    if feature not in terms.features:
        return False, FEATURE_NOT_IN_PLAN
    return True, ENTITLED
